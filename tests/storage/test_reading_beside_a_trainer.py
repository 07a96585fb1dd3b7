"""Reading the newest checkpoint (evaluate, sample, load_model, init_from) while a trainer runs in
the same workdir: its retention deletes older steps, file by file, as it saves newer ones. A
step that goes away mid-read is not damage: the reader lists again and reads the newer step,
with no warning; only a trainer that replaces every step faster than it can be read makes the
reader give up, with a line that says so (not "no intact checkpoint ... --noresume").

Tried for real before the change: a tiny LLP saving every 2 steps (keep_checkpoints=1) and
`llp_jax.load_model` in a loop beside it: 2 of 190 loads failed with "no intact checkpoint in
...; train again with --noresume", with false "skipping damaged checkpoint step" warnings."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest

from llp_jax.storage import checkpoints as ckpt_lib
from llp_jax.storage import steps as steps_lib


def _save(directory, steps=(1, 2)):
    with ckpt_lib.Checkpointer(directory, async_save=False) as ckpt:
        for step in steps:
            w = np.full((8, 8), step, np.float32)
            ckpt.save(step, {"params": {"w": w}}, meta={"step": step}, force=True)


def _ours(caplog) -> list[str]:
    """The reader's own warnings (Orbax logs its own about the missing files)."""
    return [r.getMessage() for r in caplog.records if r.name == steps_lib.__name__]


def _replace(directory, step):
    """What a trainer does between a reader's listing and its read: it saves a newer step (here
    a copy of `step`, one past the newest) and has begun to delete `step`: its arrays are gone,
    its metadata not yet."""
    newer = max(steps_lib.step_dirs(directory)) + 1
    shutil.copytree(directory / str(step), directory / str(newer))
    for path in (directory / str(step) / "state").rglob("*"):
        if path.is_file() and path.parent.name == "d":
            path.unlink()
    return newer


def test_a_step_deleted_while_read_is_replaced_by_the_newer_one(tmp_path, caplog):
    _save(tmp_path)
    replaced = []

    def read(step):
        if not replaced:
            replaced.append(_replace(tmp_path, step))
        return steps_lib.load_params(tmp_path, step)

    with caplog.at_level(logging.WARNING, logger=steps_lib.__name__):
        step, params = steps_lib.newest_readable(tmp_path, read)
    assert (step, replaced) == (3, [3])  # the newer step, not the older step 1
    np.testing.assert_array_equal(params["w"], np.full((8, 8), 2, np.float32))
    assert not _ours(caplog), _ours(caplog)  # no false damage


def test_a_trainer_faster_than_the_reader_is_named(tmp_path, monkeypatch, caplog):
    _save(tmp_path)
    monkeypatch.setattr(steps_lib, "REREAD_S", 0.5)

    def read(step):
        _replace(tmp_path, step)
        return steps_lib.load_params(tmp_path, step)

    with caplog.at_level(logging.WARNING, logger=steps_lib.__name__):
        with pytest.raises(steps_lib.CheckpointNotFoundError) as e:
            steps_lib.newest_readable(tmp_path, read)
    message = str(e.value)
    assert "a running trainer replaced each one while it was read" in message, message
    assert "--noresume" not in message and "\n" not in message
    assert "train.keep_checkpoints" in message
    assert not _ours(caplog), _ours(caplog)


def test_damage_with_no_trainer_is_still_skipped_with_a_warning(tmp_path, caplog):
    """The same half-deleted arrays, but nothing newer appears: the step is damaged."""
    _save(tmp_path)
    for path in (tmp_path / "2" / "state").rglob("*"):
        if path.is_file() and path.parent.name == "d":
            path.unlink()
    with caplog.at_level(logging.WARNING, logger=steps_lib.__name__):
        step, params = steps_lib.newest_readable(
            tmp_path, lambda at: steps_lib.load_params(tmp_path, at)
        )
    assert step == 1 and float(params["w"][0, 0]) == 1.0
    (warning,) = _ours(caplog)
    assert warning.startswith("skipping damaged checkpoint step 2") and "NoneType" not in warning
    assert warning.endswith("2/state: its arrays' metadata does not read"), warning
    assert not any("Failed to get item metadata" in r.getMessage() for r in caplog.records)
