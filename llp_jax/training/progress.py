"""Step timing (the figures the trainer logs) and the progress bar that only shows them."""

from __future__ import annotations

import math
import time

import jax
from tqdm.auto import tqdm


class StepTimer:
    """Training-step time: wall time since the last `lap` (or `restart`) over the steps run since.

    Call `lap` after the step's loss has been fetched (which synchronises the device), and
    `restart` after work that is not training (evaluation, a checkpoint save) so that it never
    counts as step time.
    """

    def __init__(self, step: int):
        self._step, self._time = step, time.perf_counter()

    def restart(self) -> None:
        self._time = time.perf_counter()

    def lap(self, step: int) -> float | None:
        """Seconds per step since the previous lap, or None if no step ran."""
        now = time.perf_counter()
        seconds = max(now - self._time, 1e-9) / (step - self._step) if step > self._step else None
        self._step, self._time = step, now
        return seconds


class ProgressBar:
    """A tqdm bar over training steps showing what the trainer logs (loss, perplexity, tokens/s,
    learning rate, gradient norm, step time). Disabled on processes other than 0."""

    _LABELS = {"grad_norm": "gnorm", "step_s": "step", "tokens_per_s": "tok/s"}

    def __init__(self, total_steps: int, initial_step: int = 0, *, desc: str = "train"):
        self._bar = tqdm(
            total=total_steps,
            initial=initial_step,
            desc=desc,
            dynamic_ncols=True,
            disable=jax.process_index() != 0,
        )
        self._step = initial_step

    def show(self, step: int, **figures: float | None) -> None:
        """Advances the bar to `step` and shows `figures` (None values are left out)."""
        shown = {self._LABELS.get(k, k): _fmt(k, v) for k, v in figures.items() if v is not None}
        self._bar.set_postfix(shown, refresh=False)
        self._bar.update(step - self._step)
        self._step = step

    def close(self) -> None:
        self._bar.close()


def _fmt(key: str, value: float) -> str:
    if key == "tokens_per_s":
        return f"{value:,.0f}"
    if key == "step_s":
        return f"{value * 1e3:,.0f}ms"
    return f"{value:.3g}" if math.isfinite(value) else str(value)
