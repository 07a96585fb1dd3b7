"""Starting from a trained model: `train.init_from` gives the source's exact loss before the
first update, extends an LLP's context (trained at n = 256, fine-tuned at n = 1024: lower
validation loss at 1024 than before), refuses sources that do not fit; `train.trainable` freezes."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
from flax import nnx

from llp_jax import models
from llp_jax.configs import tiny
from llp_jax.storage import read_jsonl
from llp_jax.training import TrainConfig, finetune, trainer

pytestmark = pytest.mark.slow


def _config(corpus, workdir_steps, **model):
    config = tiny.get_config(model.pop("name", "llp"))
    config.data.corpus = corpus
    config.model.update(model)
    config.train.update(batch_size=8, num_steps=workdir_steps, warmup_steps=2, log_every=1,
                        eval_every=workdir_steps, eval_batches=2, checkpoint_every=1000,
                        learning_rate=3e-3)  # fmt: skip
    config.sample.num_tokens = 0
    return config


def _val(workdir):
    return {r["step"]: r["val/loss"] for r in read_jsonl(f"{workdir}/metrics.jsonl")
            if "val/loss" in r}  # fmt: skip


def _train(config, workdir):
    run, _ = trainer.train(config, str(workdir))
    return run


def test_init_from_gives_the_source_loss_before_any_update(corpus_file, tmp_path):
    _train(_config(corpus_file, 6), tmp_path / "source")
    fine = _config(corpus_file, 2)
    fine.train.init_from = str(tmp_path / "source")
    _train(fine, tmp_path / "fine")
    assert _val(tmp_path / "fine")[0] == _val(tmp_path / "source")[6]  # exactly
    # And from a given step of the source.
    fine.train.init_from = f"{tmp_path / 'source'}:6"
    _train(fine, tmp_path / "fine_step")
    assert _val(tmp_path / "fine_step")[0] == _val(tmp_path / "source")[6]


def test_context_extension_llp_256_to_1024(tmp_path):
    short = _config("austen", 40, seq_len=256, segment_len=32)
    _train(short, tmp_path / "short")
    long = _config("austen", 12, seq_len=1024, segment_len=32)
    long.train.update(init_from=str(tmp_path / "short"), learning_rate=1e-3, warmup_steps=1)
    _train(long, tmp_path / "long")
    val = _val(tmp_path / "long")
    assert val[12] < val[0], val  # fine-tuning at n = 1024 helped at n = 1024


def test_sources_that_do_not_fit_are_one_line_errors(corpus_file, tmp_path):
    _train(_config(corpus_file, 2, name="enhanced_v3"), tmp_path / "v3")
    other_n = _config(corpus_file, 2, name="enhanced_v3", seq_len=64, latent_len=16)
    other_n.train.init_from = str(tmp_path / "v3")
    with pytest.raises(models.ConfigError, match="sized by seq_len") as e:
        trainer.setup(other_n, str(tmp_path / "v3_long"))
    assert "\n" not in str(e.value)
    _train(_config(corpus_file, 2), tmp_path / "llp")
    wider = _config(corpus_file, 2, d_model=128)
    wider.train.init_from = str(tmp_path / "llp")
    with pytest.raises(models.ConfigError, match="do not fit this model: blocks/attn/bo"):
        trainer.setup(wider, str(tmp_path / "wider"))
    missing = _config(corpus_file, 2)
    missing.train.init_from = str(tmp_path / "nowhere")
    with pytest.raises(models.ConfigError, match="no checkpoint in"):
        trainer.setup(missing, str(tmp_path / "x"))
    for step in ("x", "", "-1", "6.0", "last"):  # a step that is not one, after a real run's name
        missing.train.init_from = f"{tmp_path / 'llp'}:{step}"
        with pytest.raises(models.ConfigError, match=f"'{step}' after ':' is not a step") as e:
            trainer.setup(missing, str(tmp_path / "x"))
        assert str(e.value).endswith(f"give {tmp_path / 'llp'}:STEP, a step of [2]"), str(e.value)


def test_longlora_trains_attention_and_norms_only(corpus_file, tmp_path):
    _train(_config(corpus_file, 2), tmp_path / "source")
    fine = _config(corpus_file, 3)
    fine.train.update(init_from=str(tmp_path / "source"), trainable="longlora")
    run = trainer.setup(fine, str(tmp_path / "fine"))
    before = nnx.to_pure_dict(run.state["params"])
    before = {k: np.asarray(v) for k, v in _flat(before).items()}
    trainer.train_loop(run)
    after = {k: np.asarray(v) for k, v in _flat(nnx.to_pure_dict(run.state["params"])).items()}
    frozen = [k for k in after if "/ff/" in k or k.startswith("head")]
    trained = [k for k in after if "/attn/" in k or "norm" in k or k == "embed"]
    assert frozen and trained
    for k in frozen:
        np.testing.assert_array_equal(after[k], before[k], err_msg=k)
    assert all(not np.array_equal(after[k], before[k]) for k in trained if "attn/w" in k)
    bad = _config(corpus_file, 2)
    bad.train.trainable = "attn("
    with pytest.raises(models.ConfigError, match="train.trainable='attn\\(' must be"):
        trainer.setup(bad, str(tmp_path / "bad"))


def _flat(tree, prefix=""):
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}/"))
        else:
            out[f"{prefix}{key}"] = value
    return out


@pytest.mark.parametrize("name", ["llp", "perceiver_ar", "transformer", "enhanced_v3"])
def test_a_trainable_pattern_that_matches_nothing_is_refused(name):
    """A typo in `trainable` ('longlor', 'atn', an anchor the paths do not have) would freeze
    every weight and train nothing while the run reports progress; it is refused, naming the
    parameter paths, and a pattern that matches some of them is counted."""
    cfg = models.tiny(name)
    params = nnx.split(nnx.eval_shape(lambda: models.build(cfg, seed=0)))[1]
    for typo in ("longlor", "atn", "^attn", "blocks/attn/wq/", "$^"):
        with pytest.raises(models.ConfigError, match=f"trainable='{re.escape(typo)}' matches no"):
            finetune.trainable_labels(params, typo)
    total = models.count_params(cfg)
    for pattern in ("longlora", "attn|norm", "embed"):
        labels = finetune.trainable_labels(params, pattern)
        summary = finetune.trainable_summary(params, labels, TrainConfig(trainable=pattern))
        trained = int(summary.split()[1].replace(",", ""))
        assert 0 < trained < total and f"of {total:,} parameters" in summary, summary
    every = finetune.trainable_summary(
        params, finetune.trainable_labels(params, ".*"), TrainConfig(trainable=".*")
    )
    assert every.startswith(f"trainable: {total:,} of {total:,}") and "frozen" not in every
    assert finetune.trainable_labels(params, "all") is None


def test_init_from_this_workdir_with_noresume_is_refused_before_anything_moves(corpus_file,
                                                                                tmp_path, capsys):  # fmt: skip
    """--noresume sets the workdir's run aside before the source is read: a source naming the
    workdir itself found its checkpoints gone, after they had been moved (the command failed,
    the run was in previous_runs/). Refused first; the run stays where it was."""
    _train(_config(corpus_file, 2), tmp_path / "run")
    again = _config(corpus_file, 2)
    for spec in (str(tmp_path / "run"), f"{tmp_path}/run/:2", f"{tmp_path}/x/../run"):
        again.train.init_from = spec
        with pytest.raises(models.ConfigError, match="is this --workdir, whose run --noresume"):
            trainer.setup(again, str(tmp_path / "run"), resume=False)
    assert sorted(os.listdir(tmp_path / "run" / "checkpoints")) == ["2"]
    assert not (tmp_path / "run" / "previous_runs").exists()
    # Resuming (a preempted fine-tune) continues its own steps and says the source is unused.
    capsys.readouterr()
    run = trainer.setup(again, str(tmp_path / "run"))
    run.close()
    assert run.start_step == 2
    assert "resumed from step 2" in (out := capsys.readouterr().out)
    assert "train.init_from seeds only a fresh start" in out


def test_fine_tuning_on_other_text_keeps_the_source_tokenizer(tmp_path, capsys):
    """A SentencePiece run fine-tuned on new text used to train a new tokenizer on that text
    (same vocabulary size, so the weights loaded) and silently scrambled every token id. The
    source's tokenizer is used; a setting that cannot give its ids is a one-line error."""
    from llp_jax.data import load_austen  # noqa: PLC0415

    train = load_austen().splits["train"]
    (tmp_path / "a.txt").write_text(train[:60_000])
    (tmp_path / "b.txt").write_text(train[-60_000:])
    sp = dict(tokenizer="sentencepiece", vocab_size=300)
    source = _config(str(tmp_path / "a.txt"), 2)
    source.data.update(sp)
    _train(source, tmp_path / "source")
    fine = _config(str(tmp_path / "b.txt"), 2)
    fine.data.update(sp)
    fine.train.init_from = str(tmp_path / "source")
    capsys.readouterr()
    _train(fine, tmp_path / "fine")
    kept = (tmp_path / "source" / "data" / "tokenizer.model").read_bytes()
    assert (tmp_path / "fine" / "data" / "tokenizer.model").read_bytes() == kept
    assert "train.init_from's (its weights' token ids)" in capsys.readouterr().out
    # A new tokenizer of the same size trained on b.txt differs: the case this guards.
    alone = _config(str(tmp_path / "b.txt"), 2)
    alone.data.update(sp)
    _train(alone, tmp_path / "alone")
    other = tmp_path / "alone" / "data" / "tokenizer.model"
    assert other.read_bytes() != kept
    for tokenizer, says in (("byte", "set data.tokenizer='sentencepiece'"),
                            (str(other), "its token ids differ; set data.tokenizer to ")):  # fmt: skip
        wrong = _config(str(tmp_path / "b.txt"), 2)
        wrong.data.update(tokenizer=tokenizer)
        wrong.train.init_from = str(tmp_path / "source")
        with pytest.raises(models.ConfigError, match=re.escape(says)) as e:
            trainer.setup(wrong, str(tmp_path / f"wrong_{len(says)}"))
        assert "\n" not in str(e.value)
    _train(_config(str(tmp_path / "a.txt"), 2), tmp_path / "bytes")
    fine.train.init_from = str(tmp_path / "bytes")
    with pytest.raises(models.ConfigError, match="trained on tokenizer byte, but data.tokenizer="):
        trainer.setup(fine, str(tmp_path / "sp_from_bytes"))


def test_a_resume_that_changes_the_optimizer_state_is_refused_and_keeps_every_step(
    corpus_file, tmp_path
):
    """The optimizer state's layout is the run's (which parameters have moments, the LoRA
    factors' shapes, a clipping stage): a resume that changes train.trainable, lora_rank or
    clipping on/off is a one-line error naming the setting. Before, Orbax's tree mismatch
    read as damage: every intact step was set aside and the user told to start over (and a
    changed LoRA rank, the same tree with other shapes, resumed into the wrong shapes)."""
    from llp_jax.storage.faults import CheckpointReadError

    _train(_config(corpus_file, 2), tmp_path / "source")
    fine = _config(corpus_file, 2)
    fine.train.update(init_from=str(tmp_path / "source"), trainable="longlora", lora_rank=3,
                      checkpoint_every=2)  # fmt: skip
    _train(fine, tmp_path / "fine")
    changes = {
        "lora_rank=2": ({"lora_rank": 2}, "train.lora_rank=3, whose optimizer state train.lora_rank=2"),
        "full": ({"lora_rank": 0}, "train.lora_rank=3, whose optimizer state train.lora_rank=0"),
        "attn": ({"trainable": "attn"}, "train.trainable='longlora', whose optimizer state train.trainable='attn'"),
        "no clip": ({"clip_norm": 0.0}, "train.clip_norm > 0, whose optimizer state train.clip_norm <= 0"),
    }  # fmt: skip
    for name, (change, message) in changes.items():
        again = _config(corpus_file, 4)
        again.train.update(fine.train)
        again.train.update(num_steps=4, **change)
        with pytest.raises(models.ConfigError, match=re.escape(message)) as e:
            trainer.setup(again, str(tmp_path / "fine"))
        assert "\n" not in str(e.value) and f"train.init_from={tmp_path / 'fine'}" in str(e.value)
    # A checkpoint written before the layout was recorded: Orbax's tree mismatch is no damage.
    meta = tmp_path / "fine" / "checkpoints" / "2" / "meta" / "metadata"
    record = json.loads(meta.read_text())
    del record["optimizer"]
    meta.write_text(json.dumps(record))
    again = _config(corpus_file, 4)
    again.train.update(init_from=str(tmp_path / "source"), checkpoint_every=2)
    with pytest.raises(CheckpointReadError, match="another layout of arrays") as e:
        trainer.setup(again, str(tmp_path / "fine"))
    assert "the step is kept as it is (not damaged)" in str(e.value)
    assert (tmp_path / "fine" / "checkpoints" / "2").is_dir()
    assert not (tmp_path / "fine" / "damaged_checkpoints").exists()
    # The settings it was trained with resume it.
    again.train.update(trainable="longlora", lora_rank=3)
    run = trainer.setup(again, str(tmp_path / "fine"))
    assert run.start_step == 2


def test_frozen_weights_cost_no_gradient_work(corpus_file, tmp_path):
    """Nothing reads a frozen weight's gradient (the logged norm is over the trained ones), so
    XLA drops its computation: the compiled step of a LongLoRA fine-tune does fewer FLOPs than
    full training (at this size ~19% fewer: the feed-forward and head weight gradients)."""
    flops = {}
    for trainable in ("all", "longlora"):
        config = _config(corpus_file, 1)
        config.train.trainable = trainable
        run = trainer.setup(config, str(tmp_path / trainable))
        batch = next(run.train_iter)
        cost = run.train_step.lower(run.state, batch).compile().cost_analysis()
        flops[trainable] = (cost[0] if isinstance(cost, list) else cost)["flops"]
    assert flops["longlora"] < 0.9 * flops["all"], flops


def test_a_damaged_source_step_is_skipped_or_named(corpus_file, tmp_path, caplog):
    """The source's newest step has damaged arrays: init_from=RUN falls back to its older step
    (with a warning), init_from=RUN:STEP naming the damaged step is one line (it was a
    traceback from inside Orbax) that names the run's other steps, not --noresume."""
    source = _config(corpus_file, 4)
    source.train.checkpoint_every = 2
    _train(source, tmp_path / "source")
    for path in (tmp_path / "source" / "checkpoints" / "4" / "state").rglob("*"):
        if path.is_file() and path.parent.name == "d":
            path.write_bytes(path.read_bytes()[:10])
    fine = _config(corpus_file, 2)
    fine.train.init_from = str(tmp_path / "source")
    run = trainer.setup(fine, str(tmp_path / "fine"))
    run.close()
    assert any("skipping damaged checkpoint step 4" in r.getMessage() for r in caplog.records)
    fine.train.init_from = f"{tmp_path / 'source'}:4"
    with pytest.raises(models.ConfigError) as e:
        trainer.setup(fine, str(tmp_path / "fine_4"))
    message = str(e.value)
    assert message.startswith(f"train.init_from='{tmp_path / 'source'}:4': no intact checkpoint")
    assert message.endswith(f"name another step of that run (train.init_from={tmp_path / 'source'}"
                            ":STEP, of [2, 4])") and "\n" not in message, message  # fmt: skip
