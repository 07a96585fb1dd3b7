"""What a workdir keeps of its data, so that it is self-contained: `<workdir>/data/` holds the data
config, the tokenizer (a SentencePiece model's bytes), a fingerprint of the training tokens, and
the evaluation splits' token streams and counts.

With it, `experiments.evaluate` and `experiments.sample` need nothing but the workdir (the corpus
and the tokenizer cache may be gone, the workdir moved), a resumed run keeps its token ids, and a
run resumed (or evaluated) on data other than its own is caught: `differences` names what
changed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
from typing import Any

import numpy as np

from llp_jax import paths
from llp_jax.data import hf_tokenizer, tokenizers, txl_bytes
from llp_jax.data.config import DataConfig
from llp_jax.data.corpus import Corpus, DataError
from llp_jax.data.datasets import Datasets
from llp_jax.data.tokenizer_specs import FROM_CORPUS
from llp_jax.errors import first_line

FOLDER = "data"
EVAL_SPLITS = ("validation", "test")
# Where the data is looked for, not what it is: these may differ between runs of one workdir.
LOCATION_FIELDS = ("cache_dir", "data_dir", "manual_dir", "token_dir")


def _path(workdir: str, name: str) -> str:
    return paths.join(workdir, FOLDER, name)


def fingerprint(datasets: Datasets) -> str:
    """sha256 of the training token stream (of its on-disk metadata for a tfds corpus)."""
    h = hashlib.sha256(datasets.tokenizer.name.encode())
    train = datasets.train_tokens if datasets.train_tokens is not None else datasets.tokens["train"]
    if isinstance(train, np.ndarray):
        h.update(memoryview(np.ascontiguousarray(train, np.int32)))  # no copy of int32 tokens
    else:  # token_cache.TokenChunks: its counts and format identify the prepared split
        h.update(json.dumps(train.meta, sort_keys=True).encode())
    return h.hexdigest()[:16]


def save(workdir: str, datasets: Datasets) -> None:
    """Writes the workdir's data record (call once, on process 0)."""
    tok = datasets.tokenizer
    record = {
        "data": dataclasses.asdict(datasets.data_config),
        "tokenizer": tok.name,
        "fingerprint": fingerprint(datasets),
        "corpus": datasets.corpus.name,
        "splits": {},
    }
    if getattr(tok, "file_name", None):  # SentencePiece's .model, a tokenizer.json
        paths.write_bytes(_path(workdir, tok.file_name), tok.file_bytes)
    dtype = np.uint16 if tok.vocab_size <= 1 << 16 else np.int32
    num_tokens = datasets.num_tokens or {s: len(t) for s, t in datasets.tokens.items()}
    for split in EVAL_SPLITS:
        if split not in datasets.tokens:
            continue
        buf = io.BytesIO()
        np.save(buf, np.asarray(datasets.tokens[split]).astype(dtype))
        paths.write_bytes(_path(workdir, f"{split}.npy"), buf.getvalue())
        text = datasets.corpus.splits[split] if split in datasets.corpus.splits else None
        record["splits"][split] = {
            "tokens": int(len(datasets.tokens[split])),
            "split_tokens": int(num_tokens[split]),
            "words": int(datasets.words[split]),
            "bytes": int(datasets.num_bytes[split]),
            "chars": None if text is None else len(text),
        }
    paths.write_text(_path(workdir, "record.json"), json.dumps(record, indent=1))


def exists(workdir: str) -> bool:
    return paths.exists(_path(workdir, "record.json"))


_RECORD = {"data": dict, "tokenizer": str, "corpus": str, "splits": dict}
_COUNTS = ("tokens", "split_tokens", "words", "bytes", "chars")


def _damaged(workdir: str, name: str, why: str | None) -> DataError:
    """`why` None: the file is missing."""
    state = "missing" if why is None else f"damaged ({why})"
    fix = ("rerun the run's training command (it rebuilds the splits from its corpus)"
           if name.endswith(".npy") else "delete that folder to rebuild it from the run's data "
           "config (the corpus and its tokenizer unchanged)")  # fmt: skip
    return DataError(
        f"{_path(workdir, name)} is {state}; restore {_path(workdir, '')} from a copy "
        f"of the workdir, or {fix}"
    )


def read_record(workdir: str) -> dict | None:
    """The workdir's data record, None if it has none; one-line DataError if it is damaged."""
    if not exists(workdir):
        return None
    try:
        record = json.loads(paths.read_text(_path(workdir, "record.json")))
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
        raise _damaged(workdir, "record.json", first_line(e)) from None
    record = record if isinstance(record, dict) else {}
    missing = [key for key, kind in _RECORD.items() if not isinstance(record.get(key), kind)]
    bad = [s for s, c in (record["splits"] if not missing else {}).items()
           if not isinstance(c, dict) or any(k not in c for k in _COUNTS)]  # fmt: skip
    if missing or bad:
        why = f"no {', '.join(missing)}" if missing else f"split(s) {bad} without their counts"
        raise _damaged(workdir, "record.json", why)
    return record


def tokenizer(workdir: str, record: dict | None = None):
    """The workdir's own tokenizer."""
    record = record or read_record(workdir)
    if record["tokenizer"] == tokenizers.ByteTokenizer.name:
        return tokenizers.ByteTokenizer()
    name = record["tokenizer"]
    kind = hf_tokenizer.HFTokenizer if name.startswith("hf:") else None
    kind = kind or (txl_bytes.TxlByteTokenizer if name.startswith(f"{txl_bytes.KIND}:") else None)
    kind = kind or tokenizers.SentencePieceTokenizer
    path = _path(workdir, kind.file_name)
    fix = "restore it from a copy of the workdir: its checkpoints need the tokenizer they were "
    fix += "trained with"
    try:
        proto = paths.resolve(path).read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path} (the run's tokenizer) is missing; {fix}") from None
    source = f"{path} (the run's tokenizer)"
    if kind is txl_bytes.TxlByteTokenizer:
        return kind.from_json(proto, source=source, fix=fix)
    return kind(proto, name=name, source=source, fix=fix)


def _read_split(workdir: str, split: str, length: int) -> np.ndarray:
    """A kept evaluation split's tokens; one-line DataError if missing or damaged."""
    try:
        raw = paths.resolve(_path(workdir, f"{split}.npy")).read_bytes()
    except FileNotFoundError:  # (a folder in its place: the launchers' line says move it)
        raise _damaged(workdir, f"{split}.npy", None) from None
    try:
        tokens = np.load(io.BytesIO(raw), allow_pickle=False).astype(np.int32)
    except (ValueError, EOFError, OSError) as e:
        raise _damaged(workdir, f"{split}.npy", first_line(e) or type(e).__name__) from None
    if tokens.shape != (length,):
        raise _damaged(workdir, f"{split}.npy", f"{tokens.shape} tokens, the record says {length}")
    return tokens


def repair(workdir: str, record: dict, datasets: Datasets) -> list[str]:
    """Rewrites the kept evaluation splits that are missing or damaged from `datasets`, the same
    data built again from the corpus (the caller checked `differences`: the same config and
    training fingerprint, so the same splits); returns their file names (call on process 0)."""
    broken = []
    for split, counts in record["splits"].items():
        try:
            _read_split(workdir, split, counts["tokens"])
        except DataError:
            broken.append(f"{split}.npy")
    fits = all(len(datasets.tokens.get(n[:-4], ())) == record["splits"][n[:-4]]["tokens"]
               for n in broken)  # fmt: skip
    if broken and fits:
        save(workdir, datasets)
        return broken
    return []


def load(workdir: str, seq_len: int) -> Datasets:
    """The workdir's evaluation data (its tokenizer and evaluation splits; no training split).

    Raises:
      DataError: the workdir has no data record (written by runs of llp_jax >= 0.2).
    """
    record = read_record(workdir)
    if record is None:
        raise DataError(f"{workdir} holds no data record ({FOLDER}/record.json); pass --config")
    tokens, words, num_bytes, chars = {}, {}, {}, {}
    for split, counts in record["splits"].items():
        tokens[split] = _read_split(workdir, split, counts["tokens"])
        words[split], num_bytes[split], chars[split] = (
            counts["words"],
            counts["bytes"],
            counts["chars"],
        )
    corpus = Corpus(record["corpus"], {}, f"the evaluation splits kept in {workdir}/{FOLDER}")
    return Datasets(
        tokenizer=tokenizer(workdir, record),
        corpus=corpus,
        tokens=tokens,
        words=words,
        num_bytes=num_bytes,
        seq_len=seq_len,
        data_config=DataConfig.from_any(record["data"]),
        process_index=0,
        process_count=1,
        num_tokens={s: c["split_tokens"] for s, c in record["splits"].items()},
        num_chars=chars,
    )


def differences(record: dict, config: Any, datasets: Datasets | None = None, *,
                workdir: str | None = None) -> list[str]:  # fmt: skip
    """What differs between a workdir's data and `config` (a data section), and, given the data
    built from it, between their training tokens (a corpus edited in place). Own text at
    another path (`moved`) differs only if its training tokens do; a tokenizer file at another
    path, only if it is not the `workdir`'s own."""
    saved, given = DataConfig.from_any(record["data"]), DataConfig.from_any(config)
    where = moved(record, given)
    diffs = [
        f"data.{f.name}={getattr(saved, f.name)!r} (workdir) vs {getattr(given, f.name)!r}"
        for f in dataclasses.fields(DataConfig)
        if f.name not in LOCATION_FIELDS
        and getattr(saved, f.name) != getattr(given, f.name)
        and not (where and f.name == "corpus")
        and not (f.name == "tokenizer" and _own_tokenizer(workdir, record, given.tokenizer))
    ]
    if datasets is not None and not diffs and fingerprint(datasets) != record["fingerprint"]:
        what = (
            "the training text or its tokens changed"
            if not where
            else f"{where}, and the training tokens differ"
        )
        diffs.append(
            f"{what} (fingerprint {record['fingerprint']} in the workdir, {fingerprint(datasets)} "
            "now)"
        )
    return diffs


def _own_tokenizer(workdir: str | None, record: dict, spec: str) -> bool:
    """`spec` names a file holding the workdir's own tokenizer (moved, or on another machine,
    or the copy in the workdir itself)."""
    if workdir is None or spec == "byte" or spec in FROM_CORPUS or record["tokenizer"] == "byte":
        return False
    try:
        return tokenizers.make_tokenizer(spec).file_bytes == tokenizer(workdir, record).file_bytes
    except DataError:
        return False


def moved(record: dict, config: Any) -> str:
    """'data.corpus=OLD (workdir) vs NEW' where the workdir's own text is now named by another
    path (moved to another disk or machine), else ''."""
    saved, given = DataConfig.from_any(record["data"]), DataConfig.from_any(config)
    if saved.corpus == given.corpus or not (saved.is_own_text and given.is_own_text):
        return ""
    return f"data.corpus={saved.corpus!r} (workdir) vs {given.corpus!r}"
