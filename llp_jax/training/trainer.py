"""The training loop: `setup(config, workdir)` -> `Run`, `train_loop(run)`, or both in `train`.

config -> data -> model -> sharded train state -> loop (train step, validation, checkpoint,
metrics). The end-of-run report (perplexity vs the unigram baseline, loss plot, a sample) is
`llp_jax.studies.train_and_evaluate`, which runs this and then evaluates.

Nothing is lost: a run owns its workdir (an exclusive lock, storage/workdir.py); a workdir
that holds a checkpoint is resumed from its newest intact step (damaged ones are set aside;
data iterator and RNG included, so the loss sequence continues bitwise on CPU), and
`resume=False` sets the previous run aside instead of mixing with it; SIGTERM (preemption) and
SIGINT (Ctrl-C) finish the current step, save, wait for the save to commit and return — on
every process of a multi-host run, whichever process received it (the stop flag is agreed after
each step); a failed save stops the run; a non-finite step is never applied to the parameters,
and the run stops with the step named (or skips up to `train.max_bad_steps` such batches).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import sys
import time
from typing import Any

import jax
from flax import nnx

from llp_jax import models, paths
from llp_jax.data import DataConfig, Datasets, build_datasets, make_global_batch, workdir_store
from llp_jax.errors import LLPError
from llp_jax.storage import (
    Checkpointer,
    CheckpointNotFoundError,
    MetricsWriter,
    WorkdirLock,
    set_aside,
)
from llp_jax.storage.checkpoints import DAMAGED
from llp_jax.storage.workdir import check_path
from llp_jax.training import finetune, sequence_parallel
from llp_jax.training import mesh as mesh_lib
from llp_jax.training import train_step as steps
from llp_jax.training.config import MeshConfig, TrainConfig, read_sections
from llp_jax.training.distributed import any_process
from llp_jax.training.interruptions import Interruptions
from llp_jax.training.optimizer import make_optimizer, make_schedule
from llp_jax.training.progress import ProgressBar, StepTimer
from llp_jax.training.validation import check_validation, evaluate_windows

log = logging.getLogger(__name__)


class NonFiniteError(LLPError, FloatingPointError):
    """Training produced a non-finite loss or gradient more often than allowed."""


def resolve_model_config(model_fields: dict, vocab_size: int, eod_id: int = -1):
    """The model section with vocab_size 0 and eod_id -1 meaning "the tokenizer's", validated."""
    fields = dict(model_fields)
    if fields.get("document_mask") and fields.get("eod_id", -1) < 0:
        fields["eod_id"] = eod_id
    if not fields.get("vocab_size"):
        fields["vocab_size"] = vocab_size
    elif fields["vocab_size"] < vocab_size:
        raise models.ConfigError(
            f"model.vocab_size={fields['vocab_size']} is smaller than the tokenizer's "
            f"{vocab_size}; set it to 0 to use the tokenizer's"
        )
    return models.ModelConfig.from_any(fields)


def check_batch(train: TrainConfig, mesh) -> int:
    """Returns the per-process batch size; one-line errors for batches the mesh cannot split."""
    data_ways = mesh.shape["data"] * mesh.shape["fsdp"]
    B, k = train.batch_size, train.grad_accum_steps
    if B % (data_ways * k):
        raise models.ConfigError(
            f"train.batch_size={B} must be a positive multiple of mesh data*fsdp={data_ways} "
            f"times train.grad_accum_steps={k}"
        )
    return B // jax.process_count()


@dataclasses.dataclass
class Run:
    """Everything a training run holds between set-up and the end of the loop."""

    config: Any  # the experiment ConfigDict as given
    workdir: str
    train: TrainConfig
    mesh_config: MeshConfig
    data_config: DataConfig
    data: Datasets
    model_cfg: models.ModelConfig
    mesh: jax.sharding.Mesh
    graphdef: nnx.GraphDef
    state: steps.TrainState
    train_step: Any
    eval_step: Any
    train_iter: Any
    ckpt: Checkpointer
    start_step: int
    lock: WorkdirLock | None = None

    def close(self) -> None:
        """Waits for the last save, closes the checkpoints and releases the workdir."""
        try:
            self.ckpt.close()
        finally:
            if self.lock is not None:
                self.lock.release()


def load_data(workdir: str, data_config: DataConfig, seq_len: int, *, resume: bool,
              allow_data_change: bool) -> Datasets:  # fmt: skip
    """The run's data. A workdir keeps a record of its data (data config, tokenizer, training
    fingerprint): a resumed run reuses its tokenizer (token ids never change under it) and must
    train on the same data unless `allow_data_change`; the record is (re)written otherwise."""
    record = workdir_store.read_record(workdir) if resume else None
    if record is not None and not allow_data_change:
        diffs = workdir_store.differences(record, data_config)
        if diffs:
            raise models.ConfigError(
                f"{workdir} was trained on other data: {'; '.join(diffs)}; use another "
                "--workdir, --noresume, or --allow_data_change to continue on this data"
            )
    own = None
    if record is not None and not data_config.corpus.startswith(("tfds:", "tfds-catalog:")):
        own = workdir_store.tokenizer(workdir, record)
    data = build_datasets(data_config, seq_len, tokenizer=own)
    if record is not None and not allow_data_change:
        diffs = workdir_store.differences(record, data_config, data)
        if diffs:
            raise models.ConfigError(
                f"{workdir} was trained on other data: {'; '.join(diffs)}; use another "
                "--workdir, --noresume, or --allow_data_change to continue on this data"
            )
    elif jax.process_index() == 0:
        workdir_store.save(workdir, data)
    return data


def setup(config: Any, workdir: str, *, resume: bool = True, devices=None,
          allow_data_change: bool = False) -> Run:  # fmt: skip
    """Validates the config, loads data, builds the sharded state and restores a checkpoint."""
    # Every config error comes before any data is read or anything compiles.
    check_path(workdir)
    model_fields, data_config, train, mesh_config = read_sections(config)
    probe = models.ModelConfig.from_any({**model_fields, "vocab_size": 1 << 20})
    mesh = mesh_lib.make_mesh(mesh_config, devices=devices)
    local_batch = check_batch(train, mesh)
    sequence_parallel.check_config(probe, mesh)
    finetune.check_source(train.init_from)
    lock = _own(workdir)
    try:
        if not resume and jax.process_index() == 0:
            aside = set_aside(workdir)
            if aside:
                print(f"--noresume: the previous run in {workdir} is kept in {aside}")
        any_process(False)  # every process past the set-aside before anyone reads the workdir
        run = _build(config, workdir, model_fields, data_config, train, mesh_config, mesh,
                     local_batch, probe, resume=resume, allow_data_change=allow_data_change)  # fmt: skip
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    run.lock = lock
    return run


def _own(workdir: str) -> WorkdirLock | None:
    """The workdir's lock (process 0 takes it; every process fails together if it is busy)."""
    lock, error = None, None
    if jax.process_index() == 0:
        paths.makedirs(workdir)
        try:
            lock = WorkdirLock(workdir).acquire()
        except LLPError as e:
            error = e
    if any_process(error is not None):
        raise error or LLPError(f"{workdir} is in use (see process 0's message)")
    return lock


def _build(config, workdir, model_fields, data_config, train, mesh_config, mesh, local_batch,
           probe, *, resume, allow_data_change) -> Run:  # fmt: skip
    data = load_data(workdir, data_config, probe.seq_len, resume=resume,
                     allow_data_change=allow_data_change)  # fmt: skip
    check_validation(data.eval_tokens("validation"), probe.seq_len,
                     mesh_lib.batch_sharding(mesh), data.corpus.name)  # fmt: skip
    model_cfg = resolve_model_config(model_fields, data.tokenizer.vocab_size, data.tokenizer.eod_id)

    schedule = make_schedule(train, train.num_steps)
    factory = lambda: models.build(model_cfg, seed=train.seed)  # noqa: E731
    with nnx.use_eager_sharding(False):
        abstract_params = nnx.split(nnx.eval_shape(factory))[1]
    labels = finetune.trainable_labels(abstract_params, train.trainable)
    tx = finetune.freeze(make_optimizer(train, train.num_steps), labels)
    graphdef, state, shardings = steps.init_train_state(factory, tx, mesh, train.seed)
    train_step = steps.make_train_step(
        graphdef,
        tx,
        schedule,
        mesh,
        shardings,
        grad_accum_steps=train.grad_accum_steps,
        dropout=model_cfg.dropout > 0,
    )
    eval_step = steps.make_eval_step(graphdef, mesh, shardings["params"])
    train_iter = data.train_iterator(local_batch)
    ckpt = Checkpointer(
        paths.join(workdir, "checkpoints"),
        save_every=train.checkpoint_every,
        keep=train.keep_checkpoints,
        set_aside_damaged=True,  # this run owns the workdir (it holds the lock)
    )
    start = 0
    if resume and ckpt.latest_step() is None and ckpt.set_aside:
        raise CheckpointNotFoundError(
            f"no intact checkpoint in {ckpt.directory}: every step was damaged (steps "
            f"{sorted(ckpt.set_aside)}, set aside in {paths.join(workdir, DAMAGED)}); start "
            "over with --noresume"
        )
    if resume and ckpt.latest_step() is not None:
        try:
            saved = ckpt.read_meta()
        except Exception:  # noqa: BLE001  a damaged newest step: restore() skips it, warns
            saved = {}
        if saved.get("model") and saved["model"] != models.config.as_dict(model_cfg):
            raise models.ConfigError(
                f"the checkpoint in {ckpt.directory} was written by a different model config; "
                "use another --workdir or --noresume"
            )
        if saved.get("weights_only"):  # e.g. converted from the authors' code
            start = int(saved["step"])
            abstract = mesh_lib.sharded_abstract_state(jax.eval_shape(lambda: state), mesh)
            params = ckpt.restore_params(abstract["params"], start)
            state = steps.start_at(state, params, start)
            print(
                f"continuing from the weights of step {start} in {ckpt.directory} (fresh "
                "optimizer moments and data order)"
            )
        else:
            abstract = mesh_lib.sharded_abstract_state(jax.eval_shape(lambda: state), mesh)
            restored = ckpt.restore(abstract, data_iterator=train_iter)
            state, start = restored.state, restored.step
            print(f"resumed from step {start} in {ckpt.directory}")
    elif train.init_from:
        params, where = finetune.init_params(train.init_from, model_cfg, state["params"])
        state = {**state, "params": params}
        print(f"initialised from {where} (fresh optimizer, step 0)")
    return Run(
        config, workdir, train, mesh_config, data_config, data, model_cfg, mesh, graphdef, state,
        train_step, eval_step, train_iter, ckpt, start,
    )  # fmt: skip


def train_loop(run: Run) -> dict:
    """Runs steps start+1..num_steps; returns {'steps_run', 'wall_s', 'preempted',
    'interrupted'} ('interrupted': None, or 'SIGTERM' / 'SIGINT', after which the run saved its
    step and stopped; 'preempted' is whether it did). A failed save stops the run
    (CheckpointWriteError) at the next step boundary, the last good checkpoint untouched."""
    train, cfg = run.train, run.model_cfg
    num_steps, max_bad = train.num_steps, train.max_bad_steps
    batch_sharding = mesh_lib.batch_sharding(run.mesh)
    writer = MetricsWriter(run.workdir, resume_step=run.start_step)
    bar = ProgressBar(num_steps, run.start_step)
    timer = StepTimer(run.start_step)
    tokens_per_step = train.batch_size * cfg.seq_len
    # The model and data settings travel with every checkpoint, so evaluation and sampling can
    # rebuild both from a workdir alone.
    meta = {"model": models.config.as_dict(cfg), "data": dataclasses.asdict(run.data_config)}
    step, t_start, interrupted = run.start_step, time.perf_counter(), None

    def check_finite() -> None:
        bad = int(run.state["bad_steps"])
        if bad > max_bad:
            raise NonFiniteError(
                f"non-finite loss or gradients at step {int(run.state['last_bad_step'])} "
                f"({bad} bad step(s), train.max_bad_steps={max_bad}); the update was not applied "
                f"and the last checkpoint (step {run.ckpt.latest_step()}) is untouched"
            )

    def validate(at: int) -> float:
        val = evaluate_windows(run.eval_step, run.state["params"],
                               run.data.eval_tokens("validation"), cfg.seq_len, train.batch_size,
                               train.eval_batches, batch_sharding)  # fmt: skip
        writer.write(at, {"val/loss": val, "val/ppl": math.exp(min(val, 50.0))})
        return val

    if run.start_step == 0 and train.init_from:
        validate(0)  # the loaded model before any update: the fine-tune's starting point
    try:
        with Interruptions() as signals:
            for step in range(run.start_step + 1, num_steps + 1):
                run.ckpt.check()  # a background save that failed stops the run here
                batch = make_global_batch(next(run.train_iter), batch_sharding)
                run.state, metrics = run.train_step(run.state, batch)
                # Read once (a signal may land mid-iteration) and agreed by all processes, so
                # that a stop seen by any host makes every host save the same step.
                requested = signals.requested
                stop = any_process(requested is not None)
                last = step == num_steps or stop
                if step % train.log_every == 0 or last:
                    check_finite()
                    m = jax.device_get(metrics)  # synchronises: the step is done
                    step_s = timer.lap(step)
                    figures = {
                        "loss": float(m["loss"]),
                        "ppl": math.exp(min(float(m["loss"]), 50.0)),
                        "grad_norm": float(m["grad_norm"]),
                        "lr": float(m["learning_rate"]),
                        "tokens_per_s": tokens_per_step / step_s if step_s else None,
                        "step_s": step_s,
                    }
                    bar.show(step, **figures)
                    names = {"step_s": "step_time_s"}
                    writer.write(step, {f"train/{names.get(k, k)}": v for k, v in figures.items()
                                        if v is not None})  # fmt: skip
                val = None
                if step % train.eval_every == 0 or step == num_steps:
                    val = validate(step)
                if last or step % train.checkpoint_every == 0:
                    check_finite()  # never checkpoint past a step that must stop the run
                    writer.flush()  # the step's metrics row is durable before its checkpoint
                    run.ckpt.save(
                        step,
                        run.state,
                        meta=meta,
                        data_iterator=run.train_iter,
                        metrics={"val_loss": val} if val is not None else None,
                        force=last,
                    )
                if val is not None or last or step % train.checkpoint_every == 0:
                    timer.restart()  # evaluation and saving are not step time
                if stop:
                    interrupted = requested or "SIGTERM"  # another process' signal
                    run.ckpt.wait_until_finished()
                    print(f"{interrupted}: saved step {step}; exiting")
                    break
    finally:
        bar.close()
        writer.close()
        if sys.exc_info()[0] is None:
            run.ckpt.wait_until_finished()  # raises if the last save failed
        else:
            try:  # the error in flight is the one to report; still finish what can be saved
                run.ckpt.wait_until_finished()
            except LLPError:
                pass
    return {
        "steps_run": step - run.start_step,
        "wall_s": time.perf_counter() - t_start,
        "preempted": interrupted is not None,
        "interrupted": interrupted,
    }


def train(config: Any, workdir: str, *, resume: bool = True, devices=None,
          allow_data_change: bool = False, close: bool = True) -> tuple[Run, dict]:  # fmt: skip
    """Set-up and the whole loop; returns the run (its final state) and the loop's progress.
    With `close=False` the run keeps its checkpoints open and the workdir locked until
    `run.close()` (the end-of-run report writes there too)."""
    run = setup(config, workdir, resume=resume, devices=devices,
                allow_data_change=allow_data_change)  # fmt: skip
    try:
        print(run.data.summary())
        print(
            f"model {run.model_cfg.name}: {models.count_params(run.model_cfg):,} parameters; "
            f"mesh {dict(run.mesh.shape)}"
        )
        progress = train_loop(run)
    except BaseException:
        run.close()
        raise
    if close:
        run.close()
    return run, progress
