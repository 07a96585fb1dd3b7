"""`build_datasets` on tfds corpora: exact tokens per split, windows, counts, caches, state."""

import json
import pickle

import numpy as np
import pytest

from llp_jax.data import build_datasets, default_data_config, token_cache
from llp_jax.data.corpus import DataError
from tests.helpers.real_formats import PG19_BOOKS, enwik8_expected, pg19_expected

SEQ_LEN = 32
CHUNK = 100  # Tokens per record: small, so windows straddle records.


def config_for(corpus, tmp_path, manual="", **overrides):
    config = default_data_config()
    config.update(
        corpus=corpus,
        manual_dir=str(manual),
        data_dir=str(tmp_path / "tfds"),
        cache_dir=str(tmp_path / "cache"),
        chunk_tokens=CHUNK,
        shuffle=False,
    )
    config.update(overrides)
    return config


def build(config, seq_len=SEQ_LEN):
    return build_datasets(config, seq_len, process_index=0, process_count=1)


def as_ids(data: bytes) -> np.ndarray:
    return np.frombuffer(data, np.uint8).astype(np.int32)


def assert_reads_back(ds, expected: dict[str, bytes], ids: dict[str, np.ndarray] | None = None):
    """Every split is exactly the expected byte stream (or token `ids`, where end-of-document
    tokens sit between its documents); counts match the text."""
    for split, data in expected.items():
        whole = ds.train_tokens if split == "train" else None
        got = whole[0 : len(whole)] if whole is not None else ds.eval_tokens(split)
        want = as_ids(data) if ids is None else ids[split]
        np.testing.assert_array_equal(got, want)
        assert ds.num_tokens[split] == len(want) and ds.num_bytes[split] == len(data)
        assert ds.words[split] == len(data.decode("utf-8", errors="replace").split())


def assert_windows(ds, stream: np.ndarray, batches: int = 3, batch_size: int = 4):
    """Unshuffled windows are the stream's consecutive (T + 1)-token slices, every T tokens."""
    it = ds.train_iterator(batch_size)
    for b in range(batches):
        batch = next(it)
        assert batch["inputs"].shape == (batch_size, SEQ_LEN) and batch["inputs"].dtype == np.int32
        for r in range(batch_size):
            start = (b * batch_size + r) * SEQ_LEN
            np.testing.assert_array_equal(batch["inputs"][r], stream[start : start + SEQ_LEN])
            np.testing.assert_array_equal(
                batch["targets"][r], stream[start + 1 : start + SEQ_LEN + 1]
            )


def test_wikitext_bytes_read_back_exactly_and_windows(wikitext_dir, tmp_path, capsys):
    manual, texts, _ = wikitext_dir
    ds = build(config_for("tfds:wikitext103", tmp_path, manual))
    expected = {s: t.encode("utf-8") for s, t in texts.items()}
    assert_reads_back(ds, expected)
    assert_windows(ds, as_ids(expected["train"]))
    assert ds.tokenizer.name == "byte" and "wikitext103" in ds.summary()
    assert capsys.readouterr().out.count("tokenising") == 3
    again = build(config_for("tfds:wikitext103", tmp_path))  # Prepared data_dir, no manual dir.
    assert "tokenising" not in capsys.readouterr().out  # The token chunks are reused.
    np.testing.assert_array_equal(again.eval_tokens("test"), ds.eval_tokens("test"))


def test_wikitext_sentencepiece_trained_on_train_sample_and_cached(wikitext_dir, tmp_path, capsys):
    manual, texts, _ = wikitext_dir
    config = config_for(
        "tfds:wikitext103",
        tmp_path,
        manual,
        tokenizer="sentencepiece",
        vocab_size=320,
        sp_model_type="bpe",
    )
    ds = build(config)
    assert "trained SentencePiece" in capsys.readouterr().out
    tok = ds.tokenizer
    for split, text in texts.items():
        got = (
            ds.train_tokens[0 : len(ds.train_tokens)] if split == "train" else ds.eval_tokens(split)
        )
        np.testing.assert_array_equal(got, tok.encode(text))
        assert ds.words[split] == len(text.split())
    assert ds.corpus.splits["validation"] == texts["validation"]  # Decoded from the tokens.
    assert_windows(ds, tok.encode(texts["train"]), batches=1)
    again = build(config)  # Model and tokens come from the token folder: no sampling, no training.
    assert "trained SentencePiece" not in capsys.readouterr().out
    assert again.tokenizer.model_proto == tok.model_proto


def test_pg19_books_read_back_exactly(pg19_dir, tmp_path):
    """Books are documents: each is followed by the end-of-document token (or by nothing but its
    newline, with document_boundaries='none')."""
    splits = ("train", "validation", "test")
    ids = {s: np.concatenate([np.append(as_ids((PG19_BOOKS[s][i].strip() + "\n").encode()), 258)
                              for i in sorted(PG19_BOOKS[s])]) for s in splits}  # fmt: skip
    ds = build(config_for("tfds:pg19", tmp_path, pg19_dir), seq_len=16)
    assert_reads_back(ds, {s: pg19_expected(s) for s in splits}, ids)
    assert ds.corpus.name == "pg19"
    plain = build(config_for("tfds:pg19", tmp_path, pg19_dir, document_boundaries="none"), 16)
    assert_reads_back(plain, {s: pg19_expected(s) for s in splits})


def test_enwik8_bytes_read_back_exactly(small_enwik8, enwik8_dirs, tmp_path):
    plain, _, data = enwik8_dirs
    ds = build(config_for("tfds:enwik8", tmp_path, plain))
    expected = enwik8_expected(data)
    assert_reads_back(ds, expected)  # Words cut between 1000-byte chunks count once.
    assert ds.eval_tokens("test")[-1] == 0xFF  # Invalid UTF-8 survives: tokens are the bytes.
    assert_windows(ds, as_ids(expected["train"]))


def test_caps_and_train_sample(wikitext_dir, tmp_path):
    manual, texts, _ = wikitext_dir
    ds = build(
        config_for(
            "tfds:wikitext103", tmp_path, manual, eval_max_tokens=250, train_sample_tokens=300
        )
    )
    full = len(texts["test"].encode())
    assert len(ds.eval_tokens("test")) == 250 and ds.num_tokens["test"] == full
    assert ds.words["test"] == round(len(texts["test"].split()) * 250 / full)
    train = as_ids(texts["train"].encode())
    sample = ds.tokens["train"]  # 3 whole records spread over the split, for the unigram baseline.
    assert len(sample) == 300
    starts = np.arange(3) * (len(train) // CHUNK // 3) * CHUNK
    np.testing.assert_array_equal(sample, np.concatenate([train[a : a + CHUNK] for a in starts]))
    assert ds.corpus.splits["test"] == texts["test"].encode()[:250].decode("utf-8", "replace")
    assert "train" not in ds.corpus.splits and sorted(ds.corpus.splits) == ["test", "validation"]
    assert "test" in ds.tokens and "dev" not in ds.tokens
    with pytest.raises(ValueError, match="Unknown split"):
        ds.eval_tokens("dev")


def test_iterator_state_restores_and_chunks_pickle(wikitext_dir, tmp_path):
    manual, _, _ = wikitext_dir
    ds = build(config_for("tfds:wikitext103", tmp_path, manual, shuffle=True, random_offset=True))
    reference = [next(it) for it in [ds.train_iterator(4)] for _ in range(12)]
    it = ds.train_iterator(4)
    for _ in range(5):
        next(it)
    fresh = ds.train_iterator(4)
    fresh.set_state(json.loads(json.dumps(it.get_state())))
    for a, b in zip(reference[5:], [next(fresh) for _ in range(7)]):
        np.testing.assert_array_equal(a["inputs"], b["inputs"])
    chunks = pickle.loads(pickle.dumps(ds.train_tokens))
    np.testing.assert_array_equal(chunks[95:205], ds.train_tokens[95:205])
    with pytest.raises(TypeError, match="contiguous slices"):
        ds.train_tokens[::2]


def test_token_chunks_write_and_read(tmp_path):
    stream = np.arange(1000, dtype=np.int32) % 70_000  # Needs int32 storage above 65536 ids.
    pieces = np.split(stream, [3, 3, 400, 401, 999])
    meta = token_cache.write_split(
        str(tmp_path), "s", pieces, vocab_size=70_000, chunk_tokens=64, counts={"words": 7}
    )
    assert meta["num_tokens"] == 1000 and meta["num_chunks"] == 16 and meta["words"] == 7
    chunks = token_cache.TokenChunks(str(tmp_path), "s")
    assert chunks.dtype == np.dtype("<i4") and len(chunks) == 1000
    for a, b in [(0, 1000), (63, 65), (128, 192), (990, 2000), (5, 5)]:
        np.testing.assert_array_equal(chunks[a:b], stream[a:b])
    assert token_cache.read_meta(str(tmp_path), "other") is None


def test_training_split_shorter_than_a_window(pg19_dir, tmp_path):
    with pytest.raises(DataError, match="fewer than one training window") as e:
        build(config_for("tfds:pg19", tmp_path, pg19_dir), seq_len=4096)
    assert "\n" not in str(e.value)
