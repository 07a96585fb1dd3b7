"""Tests for llp_jax.data.pipeline: windows, determinism, checkpoints, sharding, global batches."""

import json

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from llp_jax.data import build_datasets, default_data_config, load_corpus, pipeline
from llp_jax.data.corpus import DataError

SEQ_LEN = 16
# Token i has value i, so each window tells where it started.
TOKENS = np.arange(40 * SEQ_LEN + 1, dtype=np.int32)
N_WINDOWS = 40


def take(it, n):
    return [next(it) for _ in range(n)]


def starts(batches):
    return [int(row[0]) for b in batches for row in b["inputs"]]


def assert_same(batches_a, batches_b):
    assert len(batches_a) == len(batches_b)
    for a, b in zip(batches_a, batches_b):
        np.testing.assert_array_equal(a["inputs"], b["inputs"])
        np.testing.assert_array_equal(a["targets"], b["targets"])


def make_iter(**kw):
    kw = {
        "seq_len": SEQ_LEN,
        "batch_size": 4,
        "seed": 0,
        "process_index": 0,
        "process_count": 1,
        **kw,
    }
    return pipeline.make_train_iterator(TOKENS, **kw)


def test_windows_shapes_targets_and_epoch_coverage():
    assert pipeline.num_windows(len(TOKENS), SEQ_LEN, SEQ_LEN) == N_WINDOWS
    batches = take(make_iter(), 2 * N_WINDOWS // 4)
    for b in batches:
        assert b["inputs"].shape == b["targets"].shape == (4, SEQ_LEN)
        assert b["inputs"].dtype == np.int32
        np.testing.assert_array_equal(
            b["targets"], b["inputs"] + 1
        )  # targets = inputs shifted by one.
    s = starts(batches)
    expected = [SEQ_LEN * w for w in range(N_WINDOWS)]
    # Each epoch is a permutation of all non-overlapping windows, and epochs are shuffled differently.
    assert sorted(s[:N_WINDOWS]) == sorted(s[N_WINDOWS:]) == expected
    assert s[:N_WINDOWS] != expected and s[:N_WINDOWS] != s[N_WINDOWS:]


def test_no_shuffle_and_stride():
    s = starts(take(make_iter(shuffle=False), 3))
    assert s == [SEQ_LEN * w for w in range(12)]
    s = starts(take(make_iter(shuffle=False, stride=4), 2))
    assert s == [4 * w for w in range(8)]
    assert pipeline.num_windows(len(TOKENS), SEQ_LEN, 4) == (len(TOKENS) - SEQ_LEN - 1) // 4 + 1


def test_deterministic_from_seed():
    assert_same(take(make_iter(seed=7), 25), take(make_iter(seed=7), 25))
    assert starts(take(make_iter(seed=7), 5)) != starts(take(make_iter(seed=8), 5))


def test_random_offset_per_epoch():
    it = make_iter(shuffle=False, random_offset=True, batch_size=1)
    n = pipeline.num_windows(len(TOKENS), SEQ_LEN, SEQ_LEN, random_offset=True)
    assert n == N_WINDOWS - 1  # One window fewer leaves room for any offset.
    epochs = [starts(take(it, n)) for _ in range(6)]
    offsets = [e[0] for e in epochs]
    for e, offset in zip(epochs, offsets):
        assert 0 <= offset < SEQ_LEN and e == [offset + SEQ_LEN * w for w in range(n)]
    assert len(set(offsets)) > 1
    again = make_iter(shuffle=False, random_offset=True, batch_size=1)
    assert [starts(take(again, n))[0] for _ in range(6)] == offsets


def test_restored_state_continues_exactly():
    reference = take(make_iter(), 30)  # Crosses epoch boundaries (10 batches per epoch).
    it = make_iter()
    take(it, 13)
    state = json.loads(json.dumps(it.get_state()))  # The state is plain JSON.
    fresh = make_iter()
    fresh.set_state(state)
    assert_same(take(fresh, 17), reference[13:])
    assert_same(take(it, 17), reference[13:])


def test_orbax_checkpoint_of_iterator(tmp_path):
    reference = take(make_iter(), 12)
    it = make_iter()
    take(it, 7)
    with ocp.CheckpointManager(tmp_path / "ckpt") as manager:
        manager.save(7, args=ocp.args.Composite(data=grain.checkpoint.CheckpointSave(it)))
        manager.wait_until_finished()
    take(it, 3)  # Moves on after saving; the restore must not see this.
    fresh = make_iter()
    with ocp.CheckpointManager(tmp_path / "ckpt") as manager:
        restore_args = ocp.args.Composite(data=grain.checkpoint.CheckpointRestore(fresh))
        restored = manager.restore(7, args=restore_args)
    assert restored["data"] is fresh
    assert_same(take(fresh, 5), reference[7:12])


def test_two_processes_get_disjoint_shards_forming_the_global_batch():
    single = take(make_iter(batch_size=4), 20)
    p0 = take(make_iter(batch_size=2, process_index=0, process_count=2), 20)
    p1 = take(make_iter(batch_size=2, process_index=1, process_count=2), 20)
    for s, a, b in zip(single, p0, p1):
        rows_a, rows_b = set(map(int, a["inputs"][:, 0])), set(map(int, b["inputs"][:, 0]))
        assert not rows_a & rows_b
        assert rows_a | rows_b == set(map(int, s["inputs"][:, 0]))
    # Over one epoch the shards partition all windows.
    epoch0 = starts(p0[: N_WINDOWS // 4]) + starts(p1[: N_WINDOWS // 4])
    assert sorted(epoch0) == [SEQ_LEN * w for w in range(N_WINDOWS)]


def test_finite_epochs():
    ds = pipeline.make_train_dataset(
        TOKENS, seq_len=SEQ_LEN, batch_size=8, num_epochs=2, process_index=0, process_count=1
    )
    assert len(ds) == 2 * N_WINDOWS // 8 and len(list(ds)) == 10


@pytest.mark.parametrize("num_tokens", [0, 5, SEQ_LEN])
def test_corpus_shorter_than_a_window_is_one_line_error(num_tokens):
    with pytest.raises(DataError, match="fewer than one training window") as e:
        pipeline.make_train_dataset(
            np.arange(num_tokens), seq_len=SEQ_LEN, batch_size=2, process_index=0, process_count=1
        )
    assert "\n" not in str(e.value) and "smaller seq_len" in str(e.value)


def test_make_global_batch_on_mesh():
    mesh = Mesh(np.array(jax.devices()), ("data",))
    sharding = NamedSharding(mesh, P("data"))
    n = len(jax.devices())
    local = next(make_iter(batch_size=n))
    batch = pipeline.make_global_batch(local, sharding)
    for key in ("inputs", "targets"):
        assert isinstance(batch[key], jax.Array) and batch[key].shape == (n, SEQ_LEN)
        assert batch[key].sharding == sharding
        np.testing.assert_array_equal(np.asarray(batch[key]), local[key])
    assert len(batch["inputs"].addressable_shards) == n
    for shard in batch["inputs"].addressable_shards:
        assert shard.data.shape == (1, SEQ_LEN)


def _text_config(tmp_path, text, **overrides):
    path = tmp_path / "tiny.txt"
    path.write_text(text)
    config = default_data_config()
    config.corpus = str(path)
    config.cache_dir = str(tmp_path / "cache")
    config.update(overrides)
    return config


def test_build_datasets_from_text_file(tmp_path):
    text = "\n".join(f"Line {i} of a tiny book about data pipelines." for i in range(200))
    ds = build_datasets(_text_config(tmp_path, text), seq_len=32, process_index=0, process_count=1)
    assert ds.tokenizer.name == "byte" and ds.tokenizer.vocab_size == 259
    assert set(ds.tokens) == {"train", "validation", "test"}
    # Every split is one document here: its bytes, then the end-of-document token.
    assert sum(len(t) for t in ds.tokens.values()) == len(text.encode()) + 3
    assert all(t[-1] == ds.tokenizer.eod_id for t in ds.tokens.values())
    assert sum(ds.words.values()) == len(text.split())
    np.testing.assert_array_equal(ds.eval_tokens("test"), ds.tokens["test"])
    with pytest.raises(ValueError, match="Unknown split"):
        ds.eval_tokens("dev")
    batch = next(ds.train_iterator(4))
    assert batch["inputs"].shape == (4, 32)
    assert "train:" in ds.summary()


def test_build_datasets_sentencepiece(tmp_path):
    text = "\n".join(f"Line {i} of a tiny book about data pipelines." for i in range(300))
    config = _text_config(tmp_path, text, tokenizer="sentencepiece", vocab_size=320)
    ds = build_datasets(config, seq_len=16, process_index=0, process_count=1)
    assert ds.tokenizer.vocab_size <= 320
    assert ds.tokenizer.decode(ds.tokens["validation"]) == ds.corpus.splits["validation"]
    assert next(ds.train_iterator(2))["targets"].max() < ds.tokenizer.vocab_size


@pytest.mark.parametrize("stride", [10**20, 1000])
def test_a_stride_that_leaves_one_window_is_one_line_error(stride):
    """data.train_stride=1e20 trained 20 steps on one window repeated in every batch, silently."""
    with pytest.raises(DataError, match=f"data.train_stride={stride} leaves one training window "
                       "of the split's 1,000 tokens") as e:  # fmt: skip
        pipeline.make_train_dataset(np.arange(1000), seq_len=SEQ_LEN, batch_size=2, stride=stride,
                                    process_index=0, process_count=1)  # fmt: skip
    assert "\n" not in str(e.value) and f"at most {1000 - SEQ_LEN - 1:,}" in str(e.value)
    # The largest stride that leaves two windows, and one window of a split that has only one.
    two = pipeline.make_train_dataset(np.arange(1000), seq_len=SEQ_LEN, batch_size=2,
                                      stride=1000 - SEQ_LEN - 1, process_index=0, process_count=1)  # fmt: skip
    rows = two[0]["inputs"]
    assert rows.shape == (2, SEQ_LEN) and not np.array_equal(rows[0], rows[1])
    pipeline.make_train_dataset(np.arange(SEQ_LEN + 1), seq_len=SEQ_LEN, batch_size=1,
                                stride=10**20, process_index=0, process_count=1)  # fmt: skip


def test_build_datasets_too_short_corpus(tmp_path):
    with pytest.raises(DataError, match="fewer than one training window") as e:
        build_datasets(_text_config(tmp_path, "just a few words\n"), seq_len=64)
    assert "\n" not in str(e.value) and "tiny.txt" in str(e.value)


def test_build_datasets_austen_bytes_and_defaults():
    config = default_data_config()
    assert (config.corpus, config.tokenizer, config.vocab_size, config.sp_model_type) == (
        "austen",
        "byte",
        2048,
        "unigram",
    )
    assert (config.cache_dir, config.seed, config.shuffle, config.train_stride) == ("", 0, True, 0)
    ds = build_datasets(None, seq_len=128)
    assert ds.process_index == jax.process_index() and ds.process_count == jax.process_count()
    assert len(ds.tokens["train"]) > 3_000_000 and ds.words["validation"] == 83_283
    batch = next(ds.train_iterator(2))
    train_text = load_corpus("austen").splits["train"]
    assert ds.tokenizer.decode(batch["inputs"][0]) in train_text
    # Training reads tokens only; the training text (and its documents) is not held beside
    # them for the whole run: a corpus's size twice over. Its counts are.
    assert "train" not in ds.corpus.splits and "train" not in (ds.corpus.documents or {})
    assert ds.num_chars["train"] == len(train_text) and ds.num_bytes["train"] == len(
        train_text.encode()
    )
    assert ds.corpus.splits["validation"] == load_corpus("austen").splits["validation"]
