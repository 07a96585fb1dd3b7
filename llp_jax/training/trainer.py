"""The training loop: `train_loop(run)` on a run from `setup` (training/setup.py), or both in
`train`.

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
import sys
import time
from collections.abc import Callable
from typing import Any

import jax

from llp_jax import backend, models
from llp_jax.data import make_global_batch
from llp_jax.errors import LLPError
from llp_jax.models.losses import perplexity
from llp_jax.storage import MetricsWriter
from llp_jax.training import finetune
from llp_jax.training import mesh as mesh_lib
from llp_jax.training.distributed import any_process
from llp_jax.training.interruptions import Interruptions
from llp_jax.training.mesh import check_batch
from llp_jax.training.progress import ProgressBar, StepTimer
from llp_jax.training.resume import update_settings
from llp_jax.training.setup import Run, load_data, resolve_model_config, setup
from llp_jax.training.validation import evaluate_windows

__all__ = ["NonFiniteError", "Run", "check_batch", "load_data", "resolve_model_config", "setup",
           "train", "train_loop"]  # fmt: skip

log = logging.getLogger(__name__)


class NonFiniteError(LLPError, FloatingPointError):
    """Training produced a non-finite loss or gradient more often than allowed."""


def validation_loss(run: Run) -> float:
    """Mean next-token loss of the run's current parameters on its validation windows."""
    return evaluate_windows(run.eval_step, run.state["params"],
                            run.data.eval_tokens("validation"), run.model_cfg.seq_len,
                            run.train.batch_size, run.train.eval_batches,
                            mesh_lib.batch_sharding(run.mesh))  # fmt: skip


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
    # train_batch: the global windows per step, which a resume's data position is counted in.
    # optimizer: what shaped the optimizer state, which a resume must keep; update: the rest of
    # the update rule, which a resume may change (and then says so).
    meta = {"model": models.config.as_dict(cfg), "data": dataclasses.asdict(run.data_config),
            "train_batch": train.batch_size, "optimizer": finetune.optimizer_layout(train),
            "update": update_settings(train)}  # fmt: skip
    step, t_start, interrupted = run.start_step, time.perf_counter(), None

    def check_finite() -> None:
        bad = int(run.state["bad_steps"])
        if bad > max_bad:
            saved = run.ckpt.latest_step()
            kept = ("no checkpoint was written yet" if saved is None else
                    f"the last checkpoint (step {saved}) is untouched")  # fmt: skip
            # AdamW scales every weight by (1 - lr * weight_decay) each step: past 2 in size,
            # the weights grow until they overflow, whatever the gradients.
            decay = train.learning_rate * train.weight_decay
            grows = (f"lower train.weight_decay={train.weight_decay:g} (x the learning rate = "
                     f"{decay:g}: above 2, every step grows every weight) or " if decay > 2 else "")  # fmt: skip
            raise NonFiniteError(
                f"non-finite loss or gradients at step {int(run.state['last_bad_step'])} "
                f"({bad} bad step(s), train.max_bad_steps={max_bad}); the update was not applied "
                f"and {kept}; {grows}lower train.learning_rate (or warm up longer), or let "
                "train.max_bad_steps skip more such steps"
            )

    def validate(at: int) -> float:
        val = validation_loss(run)
        writer.write(at, {"val/loss": val, "val/ppl": perplexity(val)})
        return val

    if run.start_step == 0 and train.init_from:
        validate(0)  # the loaded model before any update: the fine-tune's starting point
    try:
        with Interruptions() as signals, backend.memory_fix(lambda: smaller_step(run, step)):
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
                        "ppl": perplexity(float(m["loss"])),
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
        in_flight = sys.exc_info()[0] is not None
        bar.close()
        try:
            writer.close()
        except OSError:
            if not in_flight:
                raise
            # else the error in flight is the one to report: a full disk that stopped a save or
            # a metrics write fails closing the log too, and would hide which write met it first
        if not in_flight:
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


def smaller_step(run: Run, step: int) -> str:
    """What to make smaller when a train or validation step did not fit, and where the run
    resumes (the state in flight was donated to the failed step)."""
    train, kept = run.train, run.ckpt.latest_step()
    resume = (f"the last checkpoint (step {kept}) is intact: rerun to resume from it"
              if kept is not None else "no checkpoint was written yet")  # fmt: skip
    return (
        f"training, by step {step}; make the step smaller: train.batch_size={train.batch_size} "
        f"(or train.grad_accum_steps={train.grad_accum_steps} -> more passes per batch), "
        f"model.remat='full', a shorter model.seq_len or a smaller model; {resume}"
    )


def train(config: Any, workdir: str, *, resume: bool = True, devices=None,
          allow_data_change: bool = False, close: bool = True,
          before_loop: Callable[[Run], None] | None = None) -> tuple[Run, dict]:  # fmt: skip
    """Set-up and the whole loop; returns the run (its final state) and the loop's progress.
    With `close=False` the run keeps its checkpoints open and the workdir locked until
    `run.close()` (the end-of-run report writes there too). `before_loop(run)` checks what
    needs the set-up run (the report's settings against the vocabulary) before the training."""
    run = setup(config, workdir, resume=resume, devices=devices,
                allow_data_change=allow_data_change)  # fmt: skip
    try:
        if before_loop is not None:
            before_loop(run)
        print(run.data.summary())
        for line in run.train.notes():
            print(line)
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
