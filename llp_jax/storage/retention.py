"""Which steps a `Checkpointer` keeps, as Orbax options: the newest `keep` steps plus the best
one on a validation metric.

Orbax expresses this retention directly: `AnyPreservationPolicy([LatestN(keep), BestN(n=1)])`.
`best_fn` must still be set as well, because Orbax only writes the metrics of a step when
`best_fn` is given (it also powers `best_step()`).
"""

from __future__ import annotations

import logging
import math

import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as ocp_managers


class _NoMissingMetricsWarning(logging.Filter):
    """Orbax warns on every save without metrics once `best_fn` is set; most of our saves (those
    between evaluations) legitimately have none."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "did not provide metrics" not in record.getMessage()


_ABSL_FILTER = _NoMissingMetricsWarning()


def manager_options(
    *, save_every: int, keep: int, keep_best: bool, best_metric: str, best_mode: str,
    async_save: bool,
) -> ocp.CheckpointManagerOptions:  # fmt: skip
    """The `CheckpointManagerOptions` of `Checkpointer`'s arguments of the same names."""
    policies = [ocp_managers.LatestN(n=max(int(keep), 1))]
    best_fn = None
    if keep_best:
        if _ABSL_FILTER not in logging.getLogger("absl").filters:
            logging.getLogger("absl").addFilter(_ABSL_FILTER)
        worst = math.inf if best_mode == "min" else -math.inf

        def best_fn(metrics: dict) -> float:  # a NaN/missing value must never rank best
            value = float(metrics.get(best_metric, math.nan))
            return value if math.isfinite(value) else worst

        policies.append(
            ocp_managers.BestN(
                get_metric_fn=best_fn,
                reverse=(best_mode == "min"),
                n=1,
                keep_checkpoints_without_metrics=False,
            )
        )
    return ocp.CheckpointManagerOptions(
        save_interval_steps=max(int(save_every), 1),
        best_fn=best_fn,
        best_mode=best_mode,
        preservation_policy=ocp_managers.AnyPreservationPolicy(policies),
        enable_async_checkpointing=async_save,
        cleanup_tmp_directories=True,
        create=True,
    )
