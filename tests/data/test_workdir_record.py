"""A workdir's data record (data/record.json, the evaluation splits, the run's tokenizer) that
a disk, a copy or a hand damaged: one DataError line naming the file and the way back (restore
the folder, or delete it to rebuild it from the run's data config), never a JSON, numpy or
SentencePiece traceback. The programs' side is in tests/training/test_workdir_data.py."""

import json

import numpy as np
import pytest

from llp_jax.data import DataConfig, DataError, build_datasets, workdir_store


@pytest.fixture(scope="module")
def saved(tmp_path_factory, corpus_file):
    """A workdir's data folder as a SentencePiece run writes it."""
    workdir = tmp_path_factory.mktemp("run")
    config = DataConfig(corpus=corpus_file, tokenizer="sentencepiece", vocab_size=400,
                        cache_dir=str(workdir / "cache"))  # fmt: skip
    data = build_datasets(config, 64)
    workdir_store.save(str(workdir), data)
    return workdir, data


def _copy(saved, tmp_path):
    import shutil

    shutil.copytree(saved[0] / "data", tmp_path / "data")
    return tmp_path


def test_an_intact_record_loads_the_same_splits(saved):
    workdir, data = saved
    again = workdir_store.load(str(workdir), 64)
    for split in workdir_store.EVAL_SPLITS:
        np.testing.assert_array_equal(again.tokens[split], data.tokens[split])
    assert again.tokenizer.model_proto == data.tokenizer.model_proto


DAMAGE = {
    "record-not-json": ("record.json", lambda b: b[: len(b) // 2], "record.json is damaged"),
    "record-a-list": ("record.json", lambda b: b"[1, 2]", "(no data, tokenizer, corpus, splits)"),
    "record-no-splits": (
        "record.json",
        lambda b: json.dumps({**json.loads(b), "splits": None}).encode(),
        "(no splits)",
    ),
    "record-split-counts": (
        "record.json",
        lambda b: json.dumps({**json.loads(b), "splits": {"validation": {}}}).encode(),
        "['validation'] without their counts",
    ),
    "record-binary": ("record.json", lambda b: b"\xff\xfe\x00garbage", "record.json is damaged"),
    "split-truncated": ("validation.npy", lambda b: b[:200], "validation.npy is damaged (EOF"),
    "split-empty": ("test.npy", lambda b: b"", "test.npy is damaged"),
    "split-short": ("validation.npy", None, "validation.npy is damaged ((10,) tokens, the record"),
    "tokenizer-truncated": ("tokenizer.model", lambda b: b[:300], "tokenizer.model (the run's"),
    "tokenizer-empty": ("tokenizer.model", lambda b: b"", "(it is empty)"),
    "tokenizer-missing": (
        "tokenizer.model",
        "delete",
        "tokenizer.model (the run's tokenizer) is missing",
    ),
    "split-missing": ("test.npy", "delete", "test.npy is missing; restore"),
}


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_a_damaged_record_is_one_data_error_line(saved, tmp_path, case):
    name, damage, message = DAMAGE[case]
    workdir = _copy(saved, tmp_path)
    path = workdir / "data" / name
    if damage == "delete":
        path.unlink()
    elif damage is None:  # a valid array of the wrong length
        np.save(path, np.zeros(10, np.uint16))
    else:
        path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(DataError) as e:
        workdir_store.load(str(workdir), 64)
    text = str(e.value)
    assert message in text and "\n" not in text, text
    fix = (
        "restore it from a copy of the workdir"
        if "tokenizer" in name
        else f"restore {workdir / 'data'} from a copy of the workdir, or "
        + ("rerun the run's training command" if name.endswith(".npy") else "delete that folder")
    )
    assert fix in text, text
