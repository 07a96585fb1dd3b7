"""What a resumed run checks and tells: it trains the checkpoint's model (`check_model`), its
data goes on where it stopped, whatever the batch size now (`continue_data`), and where its
update settings changed (a longer run, another learning rate) it says how (`tell_update_changes`).
The optimizer state's layout, which a resume must keep, is `finetune.check_resumed_layout`'s.
"""

from __future__ import annotations

import math
import types
from typing import Any

import jax

from llp_jax import models
from llp_jax.errors import LLPError
from llp_jax.training.optimizer import make_schedule


def check_model(saved: dict, model_cfg: models.ModelConfig, directory: str) -> None:
    """A resumed run trains the checkpoint's model: a field that changes what it computes is a
    one-line error naming each difference; its execution fields (remat, compute_dtype,
    attention_impl: what a run out of memory, or moved to a GPU, changes) and its dropout may
    differ, each change said."""
    free = models.config.EXECUTION_FIELDS + models.config.TRAINING_FIELDS
    try:
        before = models.ModelConfig.from_any(saved)
        diffs = models.config.differences(before, model_cfg, ignore=free)
    except LLPError:  # written by another llp_jax version
        before, diffs = None, [f"{saved} (checkpoint) vs {models.config.as_dict(model_cfg)}"]
    if diffs:
        raise models.ConfigError(
            f"the checkpoint in {directory} was written by another model config: "
            f"{'; '.join(diffs)}; set those back, use another --workdir, or --noresume"
        )
    changed = [f"model.{name}={getattr(model_cfg, name)!r} (was {getattr(before, name)!r})"
               for name in free
               if getattr(before, name) != getattr(model_cfg, name)]  # fmt: skip
    if changed and jax.process_index() == 0:
        print(f"resuming with {', '.join(changed)}")


def continue_data(train_iter, meta: dict, batch_size: int) -> None:
    """Moves a resumed data iterator past the windows the run has seen. Its position counts
    batches (grain's next_index), so a resume with another train.batch_size (what the
    out-of-memory message advises) went back over windows just trained on, or skipped some.
    Global batch b is windows [b B, (b + 1) B) of the epoch order (each process takes every
    process_count-th window), so the windows seen are next_index x the old global batch."""
    before = meta.get("train_batch")  # absent in checkpoints written before it was recorded
    if not before or before == batch_size:
        return
    position = train_iter.get_state()
    seen = int(position["next_index"]) * int(before)
    index = seen // batch_size  # no window skipped; fewer than batch_size seen again
    train_iter.set_state({**position, "next_index": index})
    again = seen - index * batch_size
    if jax.process_index() == 0:
        print(
            f"resuming with train.batch_size={batch_size} (was {before}): the data goes on "
            f"after the {seen} windows seen" + (f" ({again} of them again)" if again else "")
        )


# The settings of the update rule besides the optimizer state's layout (`finetune.
# optimizer_layout`): saved with every checkpoint, so that a resume that changes them says so.
UPDATE_FIELDS = ("learning_rate", "schedule", "warmup_steps", "halve_every", "min_lr_ratio",
                 "num_steps", "b1", "b2", "eps", "weight_decay", "clip_norm", "grad_accum_steps")  # fmt: skip


def update_settings(train_config: Any) -> dict:
    return {name: getattr(train_config, name) for name in UPDATE_FIELDS}


def tell_update_changes(saved: dict | None, train_config: Any, step: int) -> None:
    """Prints where a resume trains on under other update settings than the checkpoint's
    (`saved`; None: a checkpoint written before they were recorded). A resume may change them
    (to train longer, or more gently), but the schedule then moves: extending a cosine run's
    num_steps raises the learning rate it resumes at, so the line gives both."""
    now = update_settings(train_config)
    changed = {k: v for k, v in (saved or {}).items() if k in now and v != now[k]}
    if not changed or step >= train_config.num_steps or jax.process_index() != 0:
        return  # (a run with nothing left to train applies no update: nothing to tell)
    before = types.SimpleNamespace(**{**now, **changed})
    lr_now, lr_before = (float(make_schedule(c)(step)) for c in (train_config, before))
    line = "resuming with " + ", ".join(
        f"train.{k}={now[k]!r} (was {v!r})" for k, v in changed.items()
    )
    if not math.isclose(lr_now, lr_before, rel_tol=1e-6):
        line += f": the learning rate at step {step} is {lr_now:.3g} (was {lr_before:.3g})"
    print(line)
