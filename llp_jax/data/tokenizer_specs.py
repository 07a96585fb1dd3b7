"""What a `data.tokenizer` names, checked before any text is read: a file (a SentencePiece
.model, a Hugging Face tokenizer.json, a BERT vocab.txt, a GPT-2 vocab.json beside its
merges.txt) or the folder holding one."""

from __future__ import annotations

import os

from llp_jax import paths
from llp_jax.data import hf_tokenizer, slow_files, txl_bytes
from llp_jax.data.corpus import DataError

_FIX = ("give 'byte', 'sentencepiece', 'txl_bytes', a SentencePiece .model file or a Hugging "
        "Face tokenizer.json (or the folder holding it)")  # fmt: skip
# Built from the corpus itself: SentencePiece trained on its train split, Transformer-XL's byte
# numbering counted over all its splits (`txl_bytes`).
FROM_CORPUS = ("sentencepiece", txl_bytes.KIND)


# The vocabularies of the authors' training script (`NUM_UNIQUE_TOKENS`) and the data settings
# that give their ids.
THEIR_VOCABULARIES = {
    204: ("Transformer-XL's enwik8 numbering (their character-level runs)",
          "--config=llp_jax/configs/paper_enwik8.py:llp24_txl (data.tokenizer='txl_bytes')"),
    28996: ("bert-base-cased's ids (their WikiText-103 and PG-19 runs)",
            "--config.data.tokenizer=bert-base-cased/ (its tokenizer.json folder) "
            "--config.data.document_boundaries=none"),
}  # fmt: skip


def their_vocabulary(vocab_size: int) -> tuple[str, str]:
    """(what an authors' checkpoint's `vocab_size` ids are, or '' where its size does not say,
    and the settings that give them)."""
    return THEIR_VOCABULARIES.get(
        vocab_size, ("", "the --config whose data.tokenizer gives its ids")
    )


def check_spec(kind: str) -> None:
    """Before any text is read: a `data.tokenizer` naming a file or folder names one there is
    (a URL is read, or refused, when the tokenizer is built).

    Raises:
      DataError: a path that does not exist, a folder without a tokenizer.json, one .model
        file or a vocab.txt, or a file that is none of them.
    """
    if kind == "byte" or kind in FROM_CORPUS or paths.is_url(kind):
        return
    path = os.path.expanduser(kind)
    if os.path.isdir(path):
        in_folder(kind)
    elif not os.path.exists(path):
        if os.sep not in kind and not kind.endswith((".model", ".json")):  # a name, not a path
            raise DataError(f"Unknown tokenizer {kind!r}; {_FIX}")
        raise DataError(f"data.tokenizer={kind!r} {paths.missing(path)}; {_FIX}")
    elif not kind.endswith((".model", ".json", hf_tokenizer.BERT_VOCAB)):
        raise DataError(f"data.tokenizer={kind!r} is neither a .model nor a .json file; {_FIX}")


def in_folder(kind: str) -> str:
    """The file a folder given as `data.tokenizer` holds: its tokenizer.json (a hub snapshot),
    else its one SentencePiece .model (Meta's Llama 2 download: `llama-2-7b/tokenizer.model`),
    else its BERT vocab.txt (what `BertTokenizer.from_pretrained('bert-base-cased')`, the
    authors' code, keeps in the hub cache: no tokenizer.json), else a GPT-2-style vocab.json
    with its merges.txt (`slow_files`)."""
    path = os.path.expanduser(kind)
    if os.path.isfile(os.path.join(path, hf_tokenizer.FILE)):
        return os.path.join(kind, hf_tokenizer.FILE)
    models = sorted(name for name in os.listdir(path) if name.endswith(".model"))
    if len(models) == 1:
        return os.path.join(kind, models[0])
    if not models and os.path.isfile(os.path.join(path, hf_tokenizer.BERT_VOCAB)):
        return os.path.join(kind, hf_tokenizer.BERT_VOCAB)
    if not models and slow_files.is_bpe_vocab(os.path.join(path, slow_files.BPE_VOCAB)):
        return os.path.join(kind, slow_files.BPE_VOCAB)
    if models:
        raise DataError(f"data.tokenizer={kind!r} is a folder of {len(models)} .model files "
                        f"({', '.join(models)}); give the one to use")  # fmt: skip
    raise DataError(f"data.tokenizer={kind!r} is a folder without a tokenizer.json, a .model, "
                    f"a vocab.txt or a vocab.json with its merges.txt; {_FIX}")  # fmt: skip
