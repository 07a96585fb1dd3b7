"""The one owner of the checkpoint format: Orbax steps of {train state, JSON metadata, data
iterator}, written by the trainer (`Checkpointer`) and read back by anyone (`steps.py`:
`load_params`, `read_meta`, `committed_steps`, `newest_readable`: read-only, safe beside a
running trainer).

Layout of `<workdir>/checkpoints/<step>/`: 'state' (the train state: params, optimizer state,
rng, step counters), 'meta' (JSON: the model and data config, the step), 'data' (the Grain
iterator position). Saving the iterator with the model (as nanodo does) makes a resumed run see
exactly the batches the interrupted one would have seen.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import grain.checkpoint
import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from llp_jax import paths
from llp_jax.storage import damaged, faults, retention
from llp_jax.storage.faults import CheckpointWriteError, describe_cause, read_failure, read_fault
from llp_jax.storage.steps import (
    DATA,
    META,
    STATE,
    CheckpointNotFoundError,
    inspect_step,
    unreadable,
)

log = logging.getLogger(__name__)


def json_safe(obj: Any) -> Any:
    """Converts a config summary / metadata tree into JSON types (unknown objects -> str)."""
    if hasattr(obj, "to_dict"):  # ml_collections.ConfigDict
        obj = obj.to_dict()
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, (np.generic, np.ndarray, jax.Array)):
        return np.asarray(obj).tolist()
    if obj is None or isinstance(obj, (bool, int, str, float)):
        # A non-finite float stays one: Orbax's JSON reads NaN and Infinity back as floats.
        # As the strings "inf" / "nan" (steps written before), a run with rope_theta=inf could
        # be neither resumed nor sampled (the config's float field read a string).
        return obj
    return str(obj)


@dataclasses.dataclass
class Restored:
    """What `Checkpointer.restore` returns."""

    step: int
    state: Any
    meta: dict
    data_iterator: Any = None


class Checkpointer:
    """Periodic async checkpoints; keeps the last `keep` steps plus the best one on validation
    (`retention.py`).

    Atomicity is Orbax's: a step is written into a temporary directory and renamed when complete,
    so an interrupted save never shows up as a step (leftover temporaries are removed on start).
    Restore additionally falls back past a damaged newest step (e.g. a truncated file).

    Example:
      ckpt = Checkpointer(workdir / "checkpoints", save_every=1000, keep=3)
      ckpt.save(step, state, meta={"model": ...}, data_iterator=it, metrics={"val_loss": 3.1})
      restored = ckpt.restore(sharded_abstract_state(abstract_state, mesh), data_iterator=it)
    """

    def __init__(
        self,
        directory: str | epath.PathLike,
        *,
        save_every: int = 1,
        keep: int = 3,
        keep_best: bool = True,
        best_metric: str = "val_loss",
        best_mode: str = "min",
        async_save: bool = True,
        set_aside_damaged: bool = False,
    ):
        """Opens (creating if needed) a checkpoint directory.

        Args:
          directory: where step directories `<step>/{state,meta,data}` live.
          save_every: `save` writes only at multiples of this (and at `force=True`).
          keep: number of most recent steps kept.
          keep_best: also keep the step with the best `metrics[best_metric]`.
          best_metric: key of the `metrics` dict passed to `save`.
          best_mode: 'min' (a loss) or 'max' (an accuracy).
          async_save: write in a background thread; training continues meanwhile.
          set_aside_damaged: the owner's mode (a trainer holding the workdir lock): damaged
            steps, found on opening or when they fail to restore, are moved to
            `../damaged_checkpoints/` (kept, out of Orbax's way) with a warning each.
        """
        # Orbax (tensorstore) needs absolute paths; a relative --workdir is the common case.
        self.directory = paths.resolve(directory)
        self._keep_best = bool(keep_best)
        self._options = retention.manager_options(
            save_every=save_every, keep=keep, keep_best=keep_best, best_metric=best_metric,
            best_mode=best_mode, async_save=async_save,
        )  # fmt: skip
        self._owner = bool(set_aside_damaged)
        self.set_aside: list[int] = []  # the damaged steps this Checkpointer moved away
        if self._owner:
            for step in self._step_dirs():
                reason = inspect_step(self.directory / str(step))
                if reason is not None:
                    self._set_aside(step, reason)
            damaged.sync("llp_jax_checkpoints_inspected")
        try:
            self._manager = self._open()
        except Exception as e:  # noqa: BLE001  a damaged step only an owner may set aside
            raise CheckpointNotFoundError(
                f"cannot open the checkpoints in {self.directory}: {describe_cause(e)}"
            ) from None

    def _open(self) -> ocp.CheckpointManager:
        return ocp.CheckpointManager(
            self.directory, item_names=(STATE, META, DATA), options=self._options
        )

    def _step_dirs(self) -> list[int]:
        if not self.directory.is_dir():
            return []
        return sorted(int(d.name) for d in self.directory.iterdir() if d.name.isdigit())

    def _set_aside(self, step: int, reason: str) -> None:
        damaged.set_aside(self.directory, step, reason)
        self.set_aside.append(step)

    def save(
        self,
        step: int,
        state: Any,
        *,
        meta: dict | None = None,
        data_iterator: Any = None,
        metrics: dict | None = None,
        force: bool = False,
    ) -> bool:
        """Starts saving one step (returns before the write finishes when async).

        Args:
          step: training step; `save` is a no-op unless it is a multiple of `save_every`, or
            `force`.
          state: pytree of arrays (e.g. `{"params": nnx.State, "opt_state": ...}`).
          meta: JSON-able summary (the configs, ...); `step` is added.
          data_iterator: a grain `DatasetIterator`/`DataLoaderIterator`; its state is read now.
          metrics: e.g. {"val_loss": 3.2}, ranks this step for the keep-best rule.
          force: save regardless of `save_every`.

        Returns:
          Whether a save was started.
        """
        items = {
            STATE: ocp.args.StandardSave(state),
            META: ocp.args.JsonSave(json_safe({**(meta or {}), "step": int(step)})),
        }
        if data_iterator is not None:
            # Grain's handler is synchronous: it reads the iterator state before `save` returns,
            # so advancing the iterator afterwards is safe even with async saves.
            items[DATA] = grain.checkpoint.CheckpointSave(data_iterator)
        try:
            return self._manager.save(
                int(step),
                args=ocp.args.Composite(**items),
                metrics=json_safe(metrics) if metrics else None,
                force=force,
            )
        except Exception as e:  # noqa: BLE001  (storage failures surface here or in check())
            raise self._write_error(e, step) from None

    def _write_error(self, error: BaseException, step: int | None = None) -> CheckpointWriteError:
        good = [s for s in self._step_dirs() if s != step]
        last = f"step {good[-1]} is the newest checkpoint" if good else "no step was saved"
        return CheckpointWriteError(
            f"could not write checkpoint{f' step {step}' if step else ''} in {self.directory}: "
            f"{describe_cause(error)}; the run stopped, {last} (free space or fix the "
            "permissions, then rerun the same command to resume)"
        )

    def check(self) -> None:
        """Raises CheckpointWriteError if a background save has failed (cheap: no waiting)."""
        try:
            self._manager.check_for_errors()
        except Exception as e:  # noqa: BLE001
            raise self._write_error(e) from None

    def restore(
        self, abstract_state: Any = None, *, step: int | None = None, data_iterator: Any = None
    ) -> Restored:
        """Restores a step straight into the shardings of `abstract_state`.

        Args:
          abstract_state: the target tree of `jax.ShapeDtypeStruct`s with `sharding`s (see
            `mesh.sharded_abstract_state`); may differ in mesh/sharding from the saved run.
            None restores the arrays as saved.
          step: a given step; None = the newest intact step, skipping damaged newer ones with a
            warning.
          data_iterator: a freshly built iterator over the same dataset; its position is set in
            place from the checkpoint (if the step has one).

        Raises:
          CheckpointNotFoundError: no checkpoint, or (step=None) every step failed to restore.
        """
        self.wait_until_finished()
        self._manager.reload()
        steps = sorted(self._manager.all_steps(), reverse=True)
        if not steps:
            raise CheckpointNotFoundError(f"no checkpoints to restore in {self.directory}")
        if step is not None:
            return self._restore_step(int(step), abstract_state, data_iterator)
        bad = []
        for candidate in steps:
            denied = unreadable(self.directory / str(candidate))
            if denied is not None:  # not damage: the step stays where it is
                raise read_failure(candidate, self.directory, f"permission denied on {denied}")
            try:
                restored = self._restore_step(candidate, abstract_state, data_iterator)
            except Exception as e:  # noqa: BLE001  (any read failure means: try an older step)
                cause = read_fault(e)  # ... unless it was no fault of the step
                if cause is not None:
                    raise read_failure(candidate, self.directory, cause) from e
                reason = faults.damage_reason(e)
                bad.append(candidate)
                if self._owner:
                    self._set_aside(candidate, reason)
                else:
                    log.warning("skipping damaged checkpoint step %d in %s: %s",
                                candidate, self.directory, reason)  # fmt: skip
                continue
            if bad and self._owner:
                damaged.sync("llp_jax_checkpoints_set_aside")
                self._manager.close()
                self._manager = self._open()  # it no longer lists the steps set aside
            return restored
        raise CheckpointNotFoundError(
            f"no intact checkpoint in {self.directory} (damaged steps {bad}"
            + (f", set aside in {self.directory.parent / damaged.DAMAGED}" if self._owner else "")
            + "); start over with --noresume or another --workdir"
        )

    def _restore_step(self, step: int, abstract_state: Any, data_iterator: Any) -> Restored:
        items = {STATE: ocp.args.StandardRestore(abstract_state), META: ocp.args.JsonRestore()}
        has_data = (self.directory / str(step) / DATA).exists()
        if data_iterator is not None and has_data:
            items[DATA] = grain.checkpoint.CheckpointRestore(data_iterator)
        out = self._manager.restore(step, args=ocp.args.Composite(**items))
        return Restored(
            step=step,
            state=out[STATE],
            meta=dict(out[META]),
            data_iterator=out[DATA] if DATA in items else None,
        )

    def restore_params(self, abstract_params: Any, step: int) -> Any:
        """Only the 'params' of a step's state, straight into `abstract_params`' shardings (a
        tree of `jax.ShapeDtypeStruct`s with `sharding`s); the rest of the state, whatever it
        holds (a full train state, or params alone), is not read."""
        self.wait_until_finished()
        path = self.directory / str(int(step)) / STATE
        restore_args = ocp.checkpoint_utils.construct_restore_args({"params": abstract_params})
        out = ocp.PyTreeCheckpointer().restore(
            path,
            args=ocp.args.PyTreeRestore(
                item={"params": abstract_params}, restore_args=restore_args, partial_restore=True
            ),
        )
        return out["params"]

    def read_meta(self, step: int | None = None) -> dict:
        """The JSON item of a step (default: the newest), without reading any array."""
        step = self.latest_step() if step is None else int(step)
        if step is None:
            raise CheckpointNotFoundError(f"no checkpoints in {self.directory}")
        out = self._manager.restore(step, args=ocp.args.Composite(**{META: ocp.args.JsonRestore()}))
        return dict(out[META])

    def latest_step(self) -> int | None:
        """Newest step on disk (including one still being written asynchronously)."""
        return self._manager.latest_step()

    def best_step(self) -> int | None:
        """Step with the best saved metric (None if no step has metrics)."""
        return self._manager.best_step() if self._keep_best else None

    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def wait_until_finished(self) -> None:
        """Blocks until pending async saves (and old-step deletions) are done.

        Raises:
          CheckpointWriteError: a pending save failed.
        """
        try:
            self._manager.wait_until_finished()
        except Exception as e:  # noqa: BLE001
            raise self._write_error(e) from None

    def close(self) -> None:
        self._manager.close()

    def __enter__(self) -> "Checkpointer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
