"""Metrics to JSONL + TensorBoard (process 0 only), a tqdm progress bar, and a loss-curve plot.

JSONL is the source of truth (greppable, read by `plot_losses` and the results tables);
TensorBoard event files are written by tensorboardX, so TensorFlow is never needed.
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any, Mapping

import jax
import numpy as np


def _to_float(value: Any) -> float | None:
    try:
        return float(np.asarray(value))
    except (TypeError, ValueError):
        return None


class MetricsWriter:
    """Appends `{"step": s, "time": t, **metrics}` lines to `<logdir>/metrics.jsonl` and scalars
    to TensorBoard event files in `<logdir>`.

    Keys use a 'split/name' convention ('train/loss', 'val/loss', 'train/lr', ...) so TensorBoard
    groups them and `plot_losses` finds them. On processes other than 0 every method is a no-op,
    so the trainer can call it unconditionally.
    """

    def __init__(
        self,
        logdir: str | os.PathLike,
        *,
        tensorboard: bool = True,
        jsonl_name: str = "metrics.jsonl",
    ):
        self.logdir = os.fspath(logdir)
        self.jsonl_path = os.path.join(self.logdir, jsonl_name)
        self.active = jax.process_index() == 0
        self._jsonl = None
        self._tb = None
        if not self.active:
            return
        os.makedirs(self.logdir, exist_ok=True)
        # Append, so a resumed run continues the same file (its steps simply go on).
        self._jsonl = open(self.jsonl_path, "a", encoding="utf-8")
        if tensorboard:
            from tensorboardX import SummaryWriter  # imported lazily: optional at read time

            self._tb = SummaryWriter(self.logdir, flush_secs=30)

    def write(self, step: int, metrics: Mapping[str, Any]) -> None:
        """Records scalar metrics for `step` (non-numeric values go to JSONL only)."""
        if not self.active:
            return
        record: dict[str, Any] = {"step": int(step), "time": round(time.time(), 3)}
        for key, value in metrics.items():
            number = _to_float(value)
            if number is None:
                record[key] = value if isinstance(value, (str, bool, int)) else str(value)
                continue
            record[key] = number if math.isfinite(number) else str(number)
            if self._tb is not None:
                self._tb.add_scalar(key, number, int(step))
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()

    def write_text(self, tag: str, text: str, step: int = 0) -> None:
        """A config dump or generated sample, to TensorBoard's text tab."""
        if self.active and self._tb is not None:
            self._tb.add_text(tag, text, int(step))

    def flush(self) -> None:
        if self.active and self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        if not self.active:
            return
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None

    def __enter__(self) -> "MetricsWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """All records of a metrics file (blank or half-written trailing lines are skipped)."""
    records = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


class ProgressBar:
    """A tqdm bar over training steps showing loss, perplexity, tokens/s, learning rate, gradient
    norm and step time.

    Disabled on processes other than 0. Step time is the wall time since the previous `update`
    (or `restart_clock`) divided by the steps run since, so call `update` after the step's loss
    has been fetched (which synchronises the device), and `restart_clock` after work that is not
    training (evaluation, a checkpoint save) so it does not count as step time.
    """

    def __init__(self, total_steps: int, initial_step: int = 0, *, desc: str = "train"):
        from tqdm.auto import tqdm

        self._bar = tqdm(
            total=total_steps,
            initial=initial_step,
            desc=desc,
            dynamic_ncols=True,
            disable=jax.process_index() != 0,
        )
        self._step = initial_step
        self._time = time.perf_counter()

    def restart_clock(self) -> None:
        self._time = time.perf_counter()

    def update(
        self,
        step: int,
        *,
        loss: float | None = None,
        tokens_per_step: int = 0,
        lr: float | None = None,
        grad_norm: float | None = None,
    ) -> dict:
        """Advances the bar to `step`.

        Returns:
          The displayed numbers ({'loss', 'ppl', 'lr', 'grad_norm', 'step_s', 'tok/s'} where
          given), for logging.
        """
        now = time.perf_counter()
        shown: dict[str, float] = {}
        if loss is not None:
            shown["loss"] = float(loss)
            shown["ppl"] = math.exp(min(float(loss), 50.0))
        if lr is not None:
            shown["lr"] = float(lr)
        if grad_norm is not None:
            shown["grad_norm"] = float(grad_norm)
        if step > self._step:
            shown["step_s"] = max(now - self._time, 1e-9) / (step - self._step)
            if tokens_per_step:
                shown["tok/s"] = tokens_per_step / shown["step_s"]
        self._bar.set_postfix(
            {_LABELS.get(k, k): _show(k, v) for k, v in shown.items()}, refresh=False
        )
        self._bar.update(step - self._step)
        self._step, self._time = step, now
        return shown

    def close(self) -> None:
        self._bar.close()


_LABELS = {"grad_norm": "gnorm", "step_s": "step"}  # short names on the bar


def _show(key: str, value: float) -> str:
    if key == "tok/s":
        return f"{value:,.0f}"
    if key == "step_s":
        return f"{value * 1e3:,.0f}ms"
    return f"{value:.3g}"


def plot_losses(
    jsonl_path: str | os.PathLike,
    png_path: str | os.PathLike,
    *,
    train_key: str = "train/loss",
    val_key: str = "val/loss",
    title: str | None = None,
) -> None:
    """Plots train and validation loss against step from a metrics JSONL file to a PNG."""
    # An explicit Agg canvas instead of pyplot: headless, and it leaves a notebook's backend alone.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    records = read_jsonl(jsonl_path)
    fig = Figure(figsize=(7, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for key, style in ((train_key, "-"), (val_key, "o-")):
        points = [(r["step"], r[key]) for r in records if isinstance(r.get(key), (int, float))]
        if points:
            steps, values = zip(*sorted(points))
            ax.plot(steps, values, style, label=key, markersize=3)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title(title or os.path.basename(os.path.dirname(os.path.abspath(jsonl_path))))
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(png_path)), exist_ok=True)
    fig.savefig(png_path, dpi=120)
