"""The study's three plots: validation curves with seed bands, loss by position in the window,
and context use paired by seed (written beside study.md by `study_report.write`)."""

from __future__ import annotations

import os

import numpy as np

from llp_jax import paths
from llp_jax.studies.study_rows import LN2, context_series, curve, group


def plots(study, rows, folder: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    def figure():
        fig = Figure(figsize=(8, 5))
        FigureCanvasAgg(fig)
        return fig, fig.add_subplot()

    fig, ax = figure()
    for label, rs in group(rows).items():
        curves = [curve(r) for r in rs]
        steps = [p[0] for p in curves[0]]
        vals = np.array([[p[2] for p in c[: len(steps)]] for c in curves if len(c) >= len(steps)])
        style = "--" if rs[0]["loss_positions"] < study.base.seq_len else "-"
        line = ax.plot(steps, vals.mean(0), style, label=label)[0]
        ax.fill_between(steps, vals.min(0), vals.max(0), color=line.get_color(), alpha=0.2)
    ax.set(xlabel="step (equal input tokens)", ylabel="validation bits/byte (own loss positions)",
           title="Validation curves: mean and min-max band over seeds (dashed: latent)")  # fmt: skip
    _save(fig, ax, os.path.join(folder, "study_curves.png"))
    fig, ax = figure()
    for label, rs in group(rows).items():
        pos = np.array([[np.nan if v is None else v / LN2 for v in r["position_loss"]] for r in rs])
        x = (np.arange(pos.shape[1]) + 0.5) * study.bucket
        ax.plot(x, np.nanmean(pos, 0), "o-" if "llp" in label else ".-", label=label)
    ax.set(xlabel="position in the window", ylabel="bits/byte", title="Loss by position")
    _save(fig, ax, os.path.join(folder, "study_positions.png"))
    fig, ax = figure()
    for label, v in context_series(study, rows).items():
        # Paired by seed: the change from the same run's loss without context (c = 0), so the
        # seeds' different absolute levels do not hide the effect of context.
        cs = [c for c in v if c != "stream"]
        gain = {c: np.asarray(v[c]) - np.asarray(v["0"]) for c in v}
        ax.errorbar([int(c) for c in cs], [gain[c].mean() for c in cs],
                    yerr=[gain[c].std() for c in cs], marker="o", capsize=3, label=label)  # fmt: skip
        if "stream" in v:
            ax.axhline(gain["stream"].mean(), ls=":", color=ax.lines[-1].get_color())
    ax.set(xlabel="context segments c before the scored segment",
           ylabel="bits/byte minus the same run's at c = 0",
           title="Context use, paired by seed (dotted: LLP streamed, unbounded context)")  # fmt: skip
    _save(fig, ax, os.path.join(folder, "study_context.png"))


def _save(fig, ax, path: str) -> None:
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    paths.write_figure(path, fig, dpi=110)
