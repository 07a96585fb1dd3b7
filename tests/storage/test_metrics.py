"""MetricsWriter (JSONL + TensorBoard) and the loss plot drawn from its JSONL."""

import errno
import json
import math
import os

import jax.numpy as jnp
import numpy as np
import pytest

from llp_jax import strict_json
from llp_jax.storage import metrics as metrics_lib
from llp_jax.studies.report import plot_losses
from tests.helpers.strict import strict


def test_writer_writes_jsonl_and_tensorboard(tmp_path):
    with metrics_lib.MetricsWriter(tmp_path) as writer:
        for step in range(1, 6):
            writer.write(
                step,
                {
                    "train/loss": jnp.float32(5.0 / step),
                    "train/lr": 1e-3,
                    "train/tokens_per_s": np.float64(1000.0),
                },
            )
        writer.write(5, {"val/loss": 1.5, "note": "hello", "train/bad": float("inf")})
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == 5  # one row per step: step 5's train and validation metrics merge
    assert records[0]["step"] == 1 and records[0]["train/loss"] == 5.0 and "time" in records[0]
    assert records[-1]["val/loss"] == 1.5 and records[-1]["note"] == "hello"
    assert records[-1]["train/loss"] == 1.0
    assert records[-1]["train/bad"] == "inf"  # JSON has no Infinity
    events = list(tmp_path.glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    # Appending on resume keeps earlier records.
    with metrics_lib.MetricsWriter(tmp_path, tensorboard=False) as writer:
        writer.write(6, {"train/loss": 0.5})
    assert len(metrics_lib.read_jsonl(tmp_path / "metrics.jsonl")) == 6


def test_plot_losses_writes_png(tmp_path):
    with metrics_lib.MetricsWriter(tmp_path, tensorboard=False) as writer:
        for step in range(0, 50, 5):
            writer.write(step, {"train/loss": 4.0 - step / 25})
            if step % 10 == 0:
                writer.write(step, {"val/loss": 4.2 - step / 25})
    png = tmp_path / "plots" / "loss.png"
    plot_losses(tmp_path / "metrics.jsonl", png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_full_disk_names_the_metrics_file(tmp_path):
    """A file object's write error has no file name; the writer adds its path, so the one-line
    error says where the disk is full."""
    import errno

    writer = metrics_lib.MetricsWriter(str(tmp_path), tensorboard=False)

    class Full:
        def write(self, _):
            raise OSError(errno.ENOSPC, "No space left on device")

        def flush(self):
            pass

        def close(self):
            pass

    writer._jsonl = Full()
    writer.write(1, {"train/loss": 1.0})
    with pytest.raises(OSError) as err:
        writer.flush()
    assert err.value.errno == errno.ENOSPC and err.value.filename == writer.jsonl_path


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (always full)")
def test_a_full_disk_is_named_by_the_failed_write_and_by_close(tmp_path):
    writer = metrics_lib.MetricsWriter(tmp_path, tensorboard=False)
    writer._jsonl.close()
    writer._jsonl = open("/dev/full", "a", encoding="utf-8")  # every write: ENOSPC, no file name
    writer.write(1, {"train/loss": 1.0})
    with pytest.raises(OSError) as failed:
        writer.write(2, {"train/loss": 0.9})  # step 1's row is written as step 2 begins
    assert (failed.value.errno, failed.value.filename) == (errno.ENOSPC, writer.jsonl_path)
    # Closing retries the refused bytes, which fails again: named too, and the file is closed.
    with pytest.raises(OSError) as closing:
        writer.close()
    assert (closing.value.errno, closing.value.filename) == (errno.ENOSPC, writer.jsonl_path)
    assert writer._jsonl is None


@pytest.mark.parametrize(
    "foreign",
    [
        bytes(range(128, 256)) + b"\n",  # not UTF-8 (a disk fault, another tool)
        b'"a string"\n[1, 2]\n7\nnull\n',  # JSON that is not a row
        b'{"step": "3", "train/loss": 1.0}\n{"time": 5}\n{"step": true}\n',  # rows without a step
        b'{"step": 3, "train/loss": 1.0, "note": "\xe9t\xe9"}\n',  # Latin-1 inside a row
    ],
    ids=["not_utf8", "not_rows", "no_step", "latin1_in_a_row"],
)
def test_rows_a_metrics_file_cannot_hold_are_skipped_by_every_reader(tmp_path, foreign):
    """What is not a row of ours (an integer step in a JSON object) is skipped, never a
    traceback: by the readers (plot, report, studies) and by a resumed run's writer, which
    keeps the good rows around it."""
    path = tmp_path / "metrics.jsonl"
    good = [{"step": s, "train/loss": 3.0 / s} for s in (1, 2)]
    path.write_bytes(
        json.dumps(good[0]).encode() + b"\n" + foreign + json.dumps(good[1]).encode() + b"\n"
    )
    rows = metrics_lib.read_jsonl(path)
    assert [r["step"] for r in rows if r in good] == [1, 2]
    assert all(isinstance(r["step"], int) and not isinstance(r["step"], bool) for r in rows)
    plot_losses(path, tmp_path / "loss.png")
    with metrics_lib.MetricsWriter(tmp_path, tensorboard=False, resume_step=2) as writer:
        writer.write(3, {"train/loss": 0.5})
    assert [r["step"] for r in metrics_lib.read_jsonl(path)][-3:] == [1, 2, 3]


def test_non_finite_numbers_read_back_as_numbers(tmp_path):
    """The writer writes inf and nan as strings (strict JSON has none); every reader gets
    floats back (the report's perplexity, the studies' curves), and the plot leaves them out."""
    with metrics_lib.MetricsWriter(tmp_path, tensorboard=False) as writer:
        writer.write(1, {"train/loss": 2.0, "val/loss": float("inf")})
        writer.write(2, {"train/loss": float("nan"), "val/loss": 1.0, "note": "nan!"})
    rows = metrics_lib.read_jsonl(tmp_path / "metrics.jsonl")
    assert rows[0]["val/loss"] == float("inf") and np.isnan(rows[1]["train/loss"])
    assert rows[1]["note"] == "nan!" and rows[1]["val/loss"] == 1.0
    plot_losses(tmp_path / "metrics.jsonl", tmp_path / "loss.png")
    assert (tmp_path / "loss.png").stat().st_size > 0


def test_a_resumed_log_keeps_non_finite_numbers_as_strings(tmp_path):
    """A resume rewrites the rows it keeps: they were written back with bare NaN and Infinity,
    which JSON.parse refuses and jq 1.6 reads as null and 1.797e308."""
    with metrics_lib.MetricsWriter(tmp_path, tensorboard=False) as writer:
        writer.write(1, {"train/loss": float("nan"), "val/loss": float("inf"), "g": -math.inf})
        writer.write(2, {"train/loss": 1.0})
    with metrics_lib.MetricsWriter(tmp_path, tensorboard=False, resume_step=1):
        pass
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [strict(line)["step"] for line in lines] == [1]
    assert strict(lines[0])["train/loss"] == "nan" and strict(lines[0])["g"] == "-inf"
    row = metrics_lib.read_jsonl(tmp_path / "metrics.jsonl")[0]
    assert math.isnan(row["train/loss"]) and row["val/loss"] == math.inf == -row["g"]


def test_strict_json_round_trips_non_finite_numbers_at_any_depth():
    value = {"a": [1.5, math.inf, {"b": (math.nan, -math.inf)}], "c": "text", "d": None, "e": 2}
    text = strict_json.dumps(value, indent=1)
    assert strict(text) == {"a": [1.5, "inf", {"b": ["nan", "-inf"]}], "c": "text", "d": None,
                            "e": 2}  # fmt: skip
    back = strict_json.loads(text)
    assert back["a"][:2] == [1.5, math.inf] and back["a"][2]["b"][1] == -math.inf
    assert math.isnan(back["a"][2]["b"][0]) and back["c"] == "text" and back["e"] == 2
    # Files written before (bare tokens) still read.
    assert strict_json.loads('{"x": Infinity, "y": [NaN]}')["x"] == math.inf
