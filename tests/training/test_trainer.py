"""End-to-end trainer tests: sharding invariance, exact resume, accumulation, the absl launcher."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from llp_jax.data import make_global_batch
from llp_jax.training import mesh as mesh_lib
from llp_jax.training import trainer
from llp_jax.training.optimizer import make_schedule
from tests.helpers import REPO, small_config


def losses(run, steps):
    """Runs `steps` train steps outside the loop, returning the per-step losses."""
    sharding = mesh_lib.batch_sharding(run.mesh)
    out = []
    for _ in range(steps):
        batch = make_global_batch(next(run.train_iter), sharding)
        run.state, metrics = run.train_step(run.state, batch)
        out.append(float(metrics["loss"]))
    return np.array(out)


@pytest.mark.parametrize(
    "mesh", [dict(data=2, fsdp=2, tensor=2), dict(data=8, fsdp=1, tensor=1)], ids=["2x2x2", "8"]
)
def test_one_device_equals_eight_devices(corpus_file, tmp_path, mesh):
    config = small_config(corpus_file)
    single = trainer.setup(config, str(tmp_path / "one"), devices=jax.devices()[:1])
    assert single.mesh.devices.size == 1
    config.mesh.update(mesh)
    multi = trainer.setup(config, str(tmp_path / "eight"))
    assert multi.mesh.devices.size == 8
    a, b = losses(single, 3), losses(multi, 3)
    np.testing.assert_allclose(a, b, rtol=2e-5)
    assert a[-1] < a[0]


def test_save_restore_continue_is_identical(corpus_file, tmp_path):
    config = small_config(corpus_file, num_steps=6, checkpoint_every=3)
    straight = trainer.setup(config, str(tmp_path / "straight"))
    expected = losses(straight, 6)

    config.train.num_steps = 3
    first = trainer.setup(config, str(tmp_path / "resumed"))
    trainer.train_loop(first)  # saves step 3 with the data iterator and RNG
    first.ckpt.close()
    config.train.num_steps = 6
    second = trainer.setup(config, str(tmp_path / "resumed"))
    assert second.start_step == 3
    resumed = losses(second, 3)
    np.testing.assert_array_equal(resumed, expected[3:])


def test_grad_accumulation_equals_larger_batch(corpus_file, tmp_path):
    one = jax.devices()[:1]
    big = trainer.setup(small_config(corpus_file), str(tmp_path / "big"), devices=one)
    accum = trainer.setup(
        small_config(corpus_file, grad_accum_steps=4), str(tmp_path / "acc"), devices=one
    )
    np.testing.assert_allclose(losses(big, 3), losses(accum, 3), rtol=2e-5)


def test_resume_refuses_a_different_model_not_another_way_to_run_it(corpus_file, tmp_path,
                                                                     capsys):  # fmt: skip
    """A field that changes what the model computes is refused, each one named; remat,
    compute_dtype and attention_impl may change (the out-of-memory message suggests
    remat='full' and a rerun to resume: that resume used to be refused), and so may dropout."""
    config = small_config(corpus_file, num_steps=2)
    run = trainer.setup(config, str(tmp_path / "w"))
    trainer.train_loop(run)
    run.close()
    layers = config.model.num_layers
    config.model.num_layers = layers + 1
    with pytest.raises(ValueError, match=f"another model config: num_layers={layers} "
                       rf"\(checkpoint\) vs {layers + 1} \(config\); set those back") as e:  # fmt: skip
        trainer.setup(config, str(tmp_path / "w"))
    assert "\n" not in str(e.value)
    config.model.num_layers = layers
    config.model.update(remat="full", compute_dtype="bfloat16")
    config.train.num_steps = 3
    capsys.readouterr()
    run = trainer.setup(config, str(tmp_path / "w"))
    trainer.train_loop(run)
    run.close()
    assert run.start_step == 2
    out = capsys.readouterr().out
    assert "resuming with model.compute_dtype='bfloat16' (was 'float32'), model.remat='full'" in out
    # Dropout regularises training only: added once a run overfits, it resumes (was refused).
    config.model.dropout, config.train.num_steps = 0.1, 4
    run = trainer.setup(config, str(tmp_path / "w"))
    trainer.train_loop(run)
    run.close()
    assert run.start_step == 3 and run.model_cfg.dropout == 0.1
    assert "resuming with model.dropout=0.1 (was 0.0)" in capsys.readouterr().out


@pytest.mark.parametrize("before,after", [(8, 4), (4, 8), (8, 6)])
def test_resume_with_another_batch_size_goes_on_after_the_windows_seen(corpus_file, tmp_path,
                                                                     capsys, before, after):  # fmt: skip
    """The out-of-memory message advises a smaller train.batch_size and a rerun to resume. The
    data iterator's position counts batches, so resumed at half the batch it went back over
    windows the run had just trained on (step 2 of batch 8 -> windows 8.. again, not 16..)."""
    config, one = small_config(corpus_file, num_steps=2, batch_size=before), jax.devices()[:1]
    run = trainer.setup(config, str(tmp_path / "w"), devices=one)
    trainer.train_loop(run)
    run.close()
    config.train.update(batch_size=after, num_steps=4)
    capsys.readouterr()
    run = trainer.setup(config, str(tmp_path / "w"), devices=one)
    seen = 2 * before
    index = seen // after  # the next batch holds no window seen before (at most after-1 again)
    fresh = run.data.train_iterator(after)
    fresh.set_state({"next_index": index})
    np.testing.assert_array_equal(next(run.train_iter)["inputs"], next(fresh)["inputs"])
    run.close()
    out = capsys.readouterr().out
    again = seen - index * after
    assert (
        f"resuming with train.batch_size={after} (was {before}): the data goes on after the "
        f"{seen} windows seen" + (f" ({again} of them again)" if again else "")
    ) in out


def test_resume_with_other_update_settings_says_how_the_schedule_moved(corpus_file, tmp_path,
                                                                        capsys):  # fmt: skip
    """Extending a cosine run (num_steps 4 -> 8) raises the learning rate it resumes at: the
    resume says so with both rates, and trains at the new one; an unchanged resume says
    nothing of the kind."""
    config, one = small_config(corpus_file, num_steps=4, warmup_steps=1), jax.devices()[:1]
    run = trainer.setup(config, str(tmp_path / "w"), devices=one)
    trainer.train_loop(run)
    run.close()
    before = float(make_schedule(run.train)(4))
    config.train.update(num_steps=8, weight_decay=0.0)
    capsys.readouterr()
    run = trainer.setup(config, str(tmp_path / "w"), devices=one)
    now = float(make_schedule(run.train)(4))
    assert now > 2 * before
    out = capsys.readouterr().out
    assert (
        f"resuming with train.num_steps=8 (was 4), train.weight_decay=0.0 (was "
        f"{small_config(corpus_file).train.weight_decay!r}): the learning rate at step 4 is "
        f"{now:.3g} (was {before:.3g})"
    ) in out, out
    batch = make_global_batch(next(run.train_iter), mesh_lib.batch_sharding(run.mesh))
    _, metrics = run.train_step(run.state, batch)
    assert float(metrics["learning_rate"]) == pytest.approx(now, rel=1e-6)
    run.close()
    run = trainer.setup(config, str(tmp_path / "w"), devices=one)
    trainer.train_loop(run)  # to step 8, saved with the new settings
    run.close()
    capsys.readouterr()
    run = trainer.setup(config, str(tmp_path / "w"), devices=one)  # the same settings again
    run.close()
    config.train.learning_rate /= 2  # nothing left to train: no update, nothing to tell
    run = trainer.setup(config, str(tmp_path / "w"), devices=one)
    run.close()
    assert "resuming with" not in capsys.readouterr().out


@pytest.mark.slow
def test_train_launcher_reduces_validation_loss(corpus_file, tmp_path):
    # Run from another directory with a relative --workdir, as the README's main job does.
    workdir = tmp_path / "run"
    cmd = [
        sys.executable, "-m", "experiments.train",
        f"--config={REPO}/llp_jax/configs/tiny.py:llp", "--workdir=run",
        f"--config.data.corpus={corpus_file}", "--config.train.num_steps=40",
        "--config.train.eval_every=20", "--config.train.eval_batches=2",
        "--config.sample.num_tokens=20",
    ]  # fmt: skip
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "", "PYTHONPATH": REPO}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "validation perplexity" in proc.stdout
    records = [json.loads(line) for line in open(workdir / "metrics.jsonl")]
    val = [r["val/loss"] for r in records if "val/loss" in r]
    assert len(val) == 2 and val[1] < val[0]
    train = [r for r in records if "train/loss" in r]
    for key in ("train/ppl", "train/lr", "train/grad_norm", "train/tokens_per_s"):
        assert all(r[key] > 0 for r in train), key
    assert all(0 < r["train/step_time_s"] < 60 for r in train)
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["val_ppl"] < summary["unigram_val_ppl"]
    assert (workdir / "loss.png").stat().st_size > 1000
    assert sorted(os.listdir(workdir / "checkpoints"))[-1] == "40"


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (always full)")
def test_a_failed_metrics_write_is_the_error_reported(corpus_file, tmp_path, monkeypatch):
    # A full disk fails the metrics log's write and then its close (which retries the refused
    # bytes): the loop must report the first, naming its file, not the close's.
    real_init = trainer.MetricsWriter.__init__

    def onto_a_full_disk(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        self._jsonl.close()
        self._jsonl = open("/dev/full", "a", encoding="utf-8")

    monkeypatch.setattr(trainer.MetricsWriter, "__init__", onto_a_full_disk)
    run = trainer.setup(small_config(corpus_file), str(tmp_path / "w"))
    with pytest.raises(OSError) as failed:
        trainer.train_loop(run)
    run.close()
    assert failed.value.filename == os.path.join(str(tmp_path / "w"), "metrics.jsonl")
    assert "during handling" not in str(failed.getrepr())
