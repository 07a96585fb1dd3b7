"""A Hugging Face tokenizer (its `tokenizer.json`) as a run's tokenizer: the paper's own.

The paper tokenises WikiText-103 and PG-19 with bert-base-cased's WordPiece (28,996 ids), and
the authors' checkpoints (`experiments.convert`) hold those ids; GPT-2's byte-level BPE and
Llama's pieces are how many users' data is tokenised elsewhere. Every tokenizer on the Hugging
Face hub ships a `tokenizer.json` (`save_pretrained` writes one), which the `tokenizers` library
reads: `--config.data.tokenizer=path/to/tokenizer.json`, or the folder holding it (a hub
snapshot). Its bytes are kept in the workdir like a SentencePiece model's.

Text is encoded line by line, the lines joined by the tokenizer's newline id, as the
SentencePiece tokenizer does: its own id for '\\n' where '\\n' is one token (GPT-2's 'Ċ'), else
its separator: BERT's normaliser drops newlines, and the paper's code puts `[SEP]` at every line
end (`line.replace('\\n', '[SEP]')`), which this reproduces (and WikiText-103's `<unk>` is
written as the tokenizer's unknown token, as there: tfds_data.py). Decoding splits at that id,
so a sample keeps its lines. Specials decode to nothing; ids out of range are dropped.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import numpy as np

from llp_jax import paths
from llp_jax.data.corpus import DataError
from llp_jax.errors import first_line

FILE = "tokenizer.json"
# The end-of-text token of the common families, first found wins: GPT-2 / RoBERTa-style BPE,
# Llama 3, SentencePiece-converted (Llama 2, T5, Mistral), BERT's separator, Gemma.
_END = ("<|endoftext|>", "<|end_of_text|>", "</s>", "[SEP]", "<eos>")
_BEGIN = ("<|begin_of_text|>", "<s>", "[CLS]", "<bos>")
_PAD = ("[PAD]", "<pad>", "<|pad|>", "<|finetune_right_pad_id|>")
_SEPARATOR = ("[SEP]",)  # (T5's </s> ends a text, not a line)
LINES_PER_BATCH = 4096


def is_spec(kind: str) -> bool:
    """A `data.tokenizer` naming a tokenizer.json (or a .json file) or a folder holding one
    (a URL of a folder is taken to hold one: it is read when the tokenizer is built)."""
    if kind.endswith(".json") or paths.is_url(kind) and not kind.endswith(".model"):
        return True
    return os.path.isfile(os.path.join(os.path.expanduser(kind), FILE))


def _library():
    try:
        import tokenizers  # noqa: PLC0415  (only Hugging Face tokenizers need it)
    except ImportError:
        raise DataError("a tokenizer.json needs the tokenizers package: pip install tokenizers "
                        "(or 'llp_jax[hf]')") from None  # fmt: skip
    return tokenizers


class HFTokenizer:
    """A `tokenizers.Tokenizer` with the `Tokenizer` protocol of this project (tokenizers.py)."""

    file_name = FILE

    def __init__(self, raw: bytes, name: str, *, source: str, fix: str = "download it again"):
        """Wraps the bytes of a tokenizer.json; `source` and `fix` word the one-line DataError
        for bytes that are not one."""
        library = _library()
        try:
            self._tok = library.Tokenizer.from_str(raw.decode("utf-8"))
        except Exception as e:  # noqa: BLE001  the library raises Exception for any bad file
            if _other_json(raw):
                raise DataError(f"{source} is a JSON file but not a tokenizer.json (it has no "
                                "'model'); give the tokenizer.json beside it, or its folder") from None  # fmt: skip
            why = first_line(e) or type(e).__name__
            raise DataError(f"{source} is damaged or not a Hugging Face tokenizer.json ({why}); "
                            f"{fix}") from None  # fmt: skip
        self.file_bytes = raw
        self.name = name
        self.vocab_size = int(self._tok.get_vocab_size(with_added_tokens=True))
        self.eos_id = self.eod_id = self._first(_END)
        self.bos_id = self._first(_BEGIN)
        self.pad_id = self._first(_PAD)
        self.unk_token = getattr(self._tok.model, "unk_token", None)  # BERT's '[UNK]'
        newline = self._tok.encode("\n", add_special_tokens=False).ids
        if len(newline) != 1 or self._tok.decode(newline) != "\n":  # (T5 folds it to a space)
            # '\n' as GPT-2 and SentencePiece's byte fallback name it, else BERT's [SEP]
            newline = [self._first(("\n", "\u010a", "<0x0A>", *_SEPARATOR))]
        self.newline_id = newline[0] if newline[0] >= 0 else None  # None: as the tokenizer has it
        if self.newline_id == self.eod_id:  # BERT: one [SEP] for both, a line end in the paper
            self.eod_id = -1  # (tokenizers.document_end says to join documents by a newline)

    @classmethod
    def from_file(cls, spec: str | os.PathLike) -> HFTokenizer:
        """Loads a tokenizer.json (a local path or a URL), or the one in a folder."""
        spec = os.path.expanduser(os.fspath(spec))
        path = spec if spec.endswith(".json") else os.path.join(spec, FILE)
        try:
            raw = paths.resolve(path).read_bytes()
        except (OSError, ValueError) as e:
            why = first_line(e) or type(e).__name__
            raise DataError(f"Tokenizer {path} cannot be read ({why}).") from None
        folder = os.path.basename(os.path.dirname(os.path.normpath(path)))
        label = folder if os.path.basename(path) == FILE and folder else os.path.basename(path)
        return cls(raw, f"hf:{label}", source=f"Tokenizer {path}")

    def _first(self, names: Sequence[str]) -> int:
        for name in names:
            found = self._tok.token_to_id(name)
            if found is not None:
                return int(found)
        return -1

    def encode(self, text: str) -> np.ndarray:
        """Text -> int32 ids [num_tokens]: each line on its own, joined by `newline_id`."""
        text = text.encode("utf-8", errors="replace").decode("utf-8")  # lone surrogates
        if self.newline_id is None:
            return np.asarray(self._tok.encode(text, add_special_tokens=False).ids, np.int32)
        lines = text.split("\n")
        out: list[int] = []
        for start in range(0, len(lines), LINES_PER_BATCH):
            batch = lines[start : start + LINES_PER_BATCH]
            for i, encoding in enumerate(self._tok.encode_batch(batch, add_special_tokens=False)):
                if start + i:
                    out.append(self.newline_id)
                out.extend(encoding.ids)
        return np.asarray(out, np.int32)

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """Ids -> text; out-of-range ids dropped, specials decode to nothing, never raises."""
        ids_N = np.asarray(ids, dtype=np.int64).reshape(-1)
        ids_N = ids_N[(ids_N >= 0) & (ids_N < self.vocab_size)]
        if self.newline_id is None:
            return self._tok.decode(ids_N.tolist(), skip_special_tokens=True)
        lines = np.split(ids_N, np.flatnonzero(ids_N == self.newline_id))
        return "\n".join(self._tok.decode(seg[1 if i else 0 :].tolist(), skip_special_tokens=True)
                         for i, seg in enumerate(lines))  # fmt: skip


def _other_json(raw: bytes) -> bool:
    """JSON, but no tokenizer (a config.json, tokenizer_config.json named as one): asked only
    once the library has refused the bytes, so a good file is parsed once."""
    try:
        whole = json.loads(raw)
    except ValueError:
        return False
    return isinstance(whole, dict) and "model" not in whole
