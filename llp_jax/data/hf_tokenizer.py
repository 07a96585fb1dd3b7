"""A Hugging Face tokenizer (its `tokenizer.json`) as a run's tokenizer: the paper's own.

The paper tokenises WikiText-103 and PG-19 with bert-base-cased's WordPiece (28,996 ids), and
the authors' checkpoints (`experiments.convert`) hold those ids; GPT-2's byte-level BPE and
Llama's pieces are how many users' data is tokenised elsewhere. Every tokenizer on the Hugging
Face hub ships a `tokenizer.json` (`save_pretrained` writes one), which the `tokenizers` library
reads: `--config.data.tokenizer=path/to/tokenizer.json`, or the folder holding it (a hub
snapshot). Its bytes are kept in the workdir like a SentencePiece model's.

A text is given the library's own ids for it, as `tokenizer.encode(text)` gives them, where the
tokenizer has a token for '\\n' (GPT-2's 'Ċ', Llama's '<0x0A>'). For speed and memory a long
text is encoded in pieces of about 4,000 characters, cut where a line starts with a character
that is not a space, which is where the pre-tokeniser cuts (GPT-2's, Llama 3's) or where no
token reaches across (Llama 2's '<0x0A>' is never merged; Gemma's newline runs are tokens of
their own). A piece is encoded between the characters around it (the '\\n' before it, the one
after it), and keeps the tokens from its first character's to the next one's (by their offsets).
A tokenizer that cannot be cut so encodes a text whole. Encoding each line on its own would not
be the library's ids: Llama 2 and Mistral prepend '▁' to a text, so every line would open with
an extra token, and GPT-2 and Llama 3 have tokens for runs of newlines ('ĊĊ'). BERT's normaliser
drops newlines; the paper's code puts `[SEP]` at every line end (`line.replace('\\n',
'[SEP]')`), which lines encoded on their own and joined by `[SEP]` reproduce (and WikiText-103's
`<unk>` is written as the tokenizer's unknown token, as there: tfds_data.py). Decoding splits at
the newline id, so a sample keeps its lines (text_stream.py). Specials decode to nothing; ids
out of range are dropped.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from collections.abc import Sequence

import numpy as np

from llp_jax import paths
from llp_jax.data import slow_files
from llp_jax.data.corpus import DataError
from llp_jax.errors import first_line

FILE = "tokenizer.json"
BERT_VOCAB = "vocab.txt"  # a WordPiece vocabulary, one token a line (with tokenizer_config.json)
# The end-of-text token of the common families, first found wins: GPT-2 / RoBERTa-style BPE,
# Llama 3, SentencePiece-converted (Llama 2, T5, Mistral), BERT's separator, Gemma.
_END = ("<|endoftext|>", "<|end_of_text|>", "</s>", "[SEP]", "<eos>")
_BEGIN = ("<|begin_of_text|>", "<s>", "[CLS]", "<bos>")
_PAD = ("[PAD]", "<pad>", "<|pad|>", "<|finetune_right_pad_id|>")
_SEPARATOR = ("[SEP]",)  # (T5's </s> ends a text, not a line)
IDS_VERSION = 2  # of the ids a text is given (token folders are kept by it: tfds_data.py)
LINES_PER_BATCH = 4096
PIECE_CHARS = 1 << 12  # a piece of text encoded on its own (then cut at the next line start)
PIECES_PER_BATCH = 1024  # pieces encoded at once (in parallel by the library): ~4 MB
_CUT = re.compile(r"\n(?=[^\s\x00-\x1f\x7f])")
_BYTE_PIECE = re.compile(r"<0x[0-9A-F]{2}>")
_LINE_STARTS = ("b", "B", "1", '"', ".", "_", "\u4e2d", "\U0001f600")  # after a cut


def is_spec(kind: str) -> bool:
    """A `data.tokenizer` naming a tokenizer.json (or a .json file) or a folder holding one
    (a URL of a folder is taken to hold one: it is read when the tokenizer is built), or a
    BERT vocab.txt (what `BertTokenizer.from_pretrained` keeps: the authors' code uses it)."""
    if kind.endswith((".json", BERT_VOCAB)) or paths.is_url(kind) and not kind.endswith(".model"):
        return True
    folder = os.path.expanduser(kind)
    return os.path.isfile(os.path.join(folder, FILE)) or slow_files.is_bpe_vocab(
        os.path.join(folder, slow_files.BPE_VOCAB))  # fmt: skip


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
        # a file saved with truncation or padding on (sentence-transformers' hold max_length
        # 128 or 512) would cut every text, and every piece of one, to it
        self._tok.no_truncation()
        self._tok.no_padding()
        self.file_bytes = raw
        self.name = name
        self.vocab_size = int(self._tok.get_vocab_size(with_added_tokens=True))
        self.eos_id = self.eod_id = self._first(_END)
        self.bos_id = self._first(_BEGIN)
        self.pad_id = self._first(_PAD)
        self.unk_token = getattr(self._tok.model, "unk_token", None)  # BERT's '[UNK]'
        # byte pieces: the decoder of a byte-fallback model (Llama 2) writes a run of them that
        # is not UTF-8 as U+FFFD, every byte, so a streamed sample holds them (text_stream.py)
        vocab = self._tok.get_vocab()  # piece -> id, added tokens too
        self.pending_ids = frozenset(
            i for piece, i in vocab.items() if _BYTE_PIECE.fullmatch(piece)
        ) if getattr(self._tok.model, "byte_fallback", False) else frozenset()  # fmt: skip
        newline = self._tok.encode("\n", add_special_tokens=False).ids
        if len(newline) != 1 or self._tok.decode(newline) != "\n":  # (T5 folds it to a space)
            # '\n' as GPT-2 and SentencePiece's byte fallback name it, else BERT's [SEP]
            newline = [self._first(("\n", "\u010a", "<0x0A>", *_SEPARATOR))]
        self.newline_id = newline[0] if newline[0] >= 0 else None  # None: as the tokenizer has it
        if self.newline_id == self.eod_id:  # BERT: one [SEP] for both, a line end in the paper
            self.eod_id = -1  # (tokenizers.document_end says to join documents by a newline)
        # whether '\n' in a text is the newline token (not a separator put at line ends: BERT)
        self._own_newline = self.newline_id in self._tok.encode("\n", add_special_tokens=False).ids
        self._in_pieces = self._own_newline and _cut_at_line_starts(
            self._tok, vocab, self.newline_id
        )

    @classmethod
    def from_file(cls, spec: str | os.PathLike) -> HFTokenizer:
        """Loads a tokenizer.json (a local path or a URL), or the one in a folder."""
        spec = os.path.expanduser(os.fspath(spec))
        path = spec if spec.endswith((".json", BERT_VOCAB)) else os.path.join(spec, FILE)
        try:
            raw = paths.resolve(path).read_bytes()
            if path.endswith(BERT_VOCAB):
                raw = slow_files.bert_from_vocab(path, raw, _library())
            elif slow_files.is_bpe_vocab(path):
                raw = slow_files.bpe_from_vocab(path, raw, _library())
        except (OSError, ValueError) as e:
            why = first_line(e) or type(e).__name__
            raise DataError(f"Tokenizer {path} cannot be read ({why}).") from None
        folder = os.path.basename(os.path.dirname(os.path.normpath(path)))
        named = os.path.basename(path) in (FILE, BERT_VOCAB, slow_files.BPE_VOCAB)
        label = folder if named and folder else os.path.basename(path)
        return cls(raw, f"hf:{label}", source=f"Tokenizer {path}")

    def _first(self, names: Sequence[str]) -> int:
        for name in names:
            found = self._tok.token_to_id(name)
            if found is not None:
                return int(found)
        return -1

    def encode(self, text: str) -> np.ndarray:
        """Text -> int32 ids [num_tokens]: the library's ids for the text, or (BERT) each line's
        joined by the separator."""
        return self.encode_batch([text])[0]

    def encode_batch(self, texts: Sequence[str]) -> list[np.ndarray]:
        """`encode` of each text, the library working on all of them at once (in parallel)."""
        texts = [t.encode("utf-8", errors="replace").decode("utf-8") for t in texts]  # surrogates
        whole = lambda batch: [np.asarray(e.ids, np.int32)  # noqa: E731
                               for e in self._tok.encode_batch(batch, add_special_tokens=False)]  # fmt: skip
        if self._in_pieces:
            out = _encode_in_pieces(self._tok, texts)
            crossed = [k for k, ids in enumerate(out) if ids is None]
            for k, ids in zip(crossed, whole([texts[k] for k in crossed])):
                out[k] = ids
            return out
        if self.newline_id is None or self._own_newline:
            return whole(texts)
        return encode_by_line(texts, self._lines, self.newline_id)

    def _lines(self, lines: list[str]) -> list[list[int]]:
        return [e.ids for start in range(0, len(lines), LINES_PER_BATCH)
                for e in self._tok.encode_batch(lines[start : start + LINES_PER_BATCH],
                                                add_special_tokens=False)]  # fmt: skip

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """Ids -> text; out-of-range ids dropped, specials decode to nothing, never raises.
        Line by line: a line after the first is decoded after its newline token, so a decoder
        that strips the space opening a text (Llama 2's) strips it from the text's start only."""
        ids_N = np.asarray(ids, dtype=np.int64).reshape(-1)
        ids_N = ids_N[(ids_N >= 0) & (ids_N < self.vocab_size)]
        if self.newline_id is None:
            return self._tok.decode(ids_N.tolist(), skip_special_tokens=True)
        lines = np.split(ids_N, np.flatnonzero(ids_N == self.newline_id))
        return "\n".join(self._line(seg.tolist(), i > 0) for i, seg in enumerate(lines))

    def _line(self, ids: list[int], after_newline: bool) -> str:
        if not after_newline:
            return self._tok.decode(ids, skip_special_tokens=True)
        if not self._own_newline:
            return self._tok.decode(ids[1:], skip_special_tokens=True)
        text = self._tok.decode(ids, skip_special_tokens=True)  # ids[0] is the newline
        return (
            text[1:]
            if text.startswith("\n")
            else self._tok.decode(ids[1:], skip_special_tokens=True)
        )


def _cut_at_line_starts(tok, vocab: dict, newline_id: int) -> bool:
    """Whether a text cut after a newline, before a character that is not a space, gives the
    same tokens as the text whole: the pre-tokeniser cuts there (GPT-2's, Llama 3's), or no
    token holds a newline and a character after it that is not one (Llama 2's '<0x0A>' is never
    merged; Gemma has '\\n\\n' but no '\\nA'): then no merge reaches across. Else (a BPE
    without a pre-tokeniser that learnt '\\n"') a text is encoded whole."""
    if tok.pre_tokenizer is not None and all(
        any(start == 2 for _, (start, _) in tok.pre_tokenizer.pre_tokenize_str(f"a\n{first}"))
        for first in _LINE_STARTS
    ):
        return True
    newline = tok.id_to_token(newline_id)
    return not any(newline in token.rstrip(newline) for token in vocab)


def _cuts(text: str) -> list[int]:
    """Where pieces of about PIECE_CHARS start: after a newline, at a non-space character."""
    cuts, at = [0], PIECE_CHARS
    while at < len(text) and (found := _CUT.search(text, at)):
        cuts.append(found.end())
        at = found.end() + PIECE_CHARS
    return [*cuts, len(text)]


def _encode_in_pieces(tok, texts: Sequence[str]) -> list[np.ndarray | None]:
    """The library's ids for each text, encoded in pieces (see the module's docstring): a piece
    is encoded with the '\\n' before it and the character after it, and keeps the tokens from
    its first character's to the next character's. None for a text where a token crosses a cut
    (`_cut_at_line_starts` says none can)."""
    pieces = [(k, start, end) for k, text in enumerate(texts)
              for start, end in itertools.pairwise(_cuts(text))]  # fmt: skip
    parts: list[list[np.ndarray] | None] = [[] for _ in texts]
    for first in range(0, len(pieces), PIECES_PER_BATCH):
        batch = pieces[first : first + PIECES_PER_BATCH]
        contexts = [texts[k][max(start - 1, 0) : end + 1] for k, start, end in batch]
        encodings = tok.encode_batch(contexts, add_special_tokens=False)
        for (k, start, end), context, encoding in zip(batch, contexts, encodings):
            if parts[k] is None:
                continue
            ids = encoding.ids
            begin = _token_at(encoding, 1) if start else 0  # (the piece's first character)
            stop = _token_at(encoding, len(context) - 1) if end < len(texts[k]) else len(ids)
            if begin is None or stop is None:
                parts[k] = None
            else:
                parts[k].append(np.asarray(ids[begin:stop], np.int32))
    return [None if p is None else np.concatenate(p) for p in parts]


def encode_by_line(texts: Sequence[str], encode_lines, separator: int) -> list[np.ndarray]:
    """Each text's lines encoded on their own (the lines of all texts in one `encode_lines`
    call: list of lines -> list of id lists), joined by `separator`: int32 [n] per text."""
    split = [text.split("\n") for text in texts]
    ids = encode_lines([line for lines in split for line in lines])
    ends = np.cumsum([len(lines) for lines in split])
    return [_joined(ids[end - len(lines) : end], separator) for lines, end in zip(split, ends)]


def _joined(parts: Sequence[Sequence[int]], separator: int) -> np.ndarray:
    """int32 [n]: the lists of ids in `parts`, `separator` between each two."""
    total = sum(map(len, parts)) + max(len(parts) - 1, 0)
    joined = itertools.chain(*(itertools.chain((separator,) if i else (), part)
                               for i, part in enumerate(parts)))  # fmt: skip
    return np.fromiter(joined, np.int32, count=total)


def _token_at(encoding, char: int) -> int | None:
    """The index of the first token of an encoded string's character `char`; None if a token
    holds it and characters before it (or none holds it)."""
    token = encoding.char_to_token(char)
    return token if token is not None and encoding.token_to_chars(token)[0] == char else None


def _other_json(raw: bytes) -> bool:
    """JSON, but no tokenizer (a config.json, tokenizer_config.json named as one): asked only
    once the library has refused the bytes, so a good file is parsed once."""
    try:
        whole = json.loads(raw)
    except ValueError:
        return False
    return isinstance(whole, dict) and "model" not in whole
