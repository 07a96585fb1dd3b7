"""The scaling benchmark's results page: the table, the fitted exponents of step time vs n, the
targets (16k / 2k, the dense transformer at 16k, memory) and the log-log plot, from the rows
`benchmark.run_benchmark` returns (JSON beside them)."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence

import jax
import numpy as np

from llp_jax import paths, strict_json
from llp_jax.models import attention
from llp_jax.studies.benchmark import BenchSpec, num_or_dash
from llp_jax.studies.machine import cpu_name


def fit_exponent(ns: Sequence[float], times: Sequence[float]) -> float | None:
    """Least-squares slope of log(time) vs log(n): time ~ n^slope."""
    pts = [(math.log(n), math.log(t)) for n, t in zip(ns, times) if t]
    if len(pts) < 2:
        return None
    x, y = np.array(pts).T
    return float(np.polyfit(x, y, 1)[0])


def exponents(rows: Sequence[dict]) -> dict[str, float | None]:
    out = {}
    for name in dict.fromkeys(r["model"] for r in rows):
        pts = [(r["n"], r["step_s"]) for r in rows if r["model"] == name and "step_s" in r]
        out[name] = fit_exponent(*zip(*pts)) if len(pts) >= 2 else None
    return out


def _get(rows, model, n, key):
    return next((r.get(key) for r in rows if r["model"] == model and r["n"] == n), None)


def check_targets(rows: Sequence[dict], short: int = 2048, long: int = 16384) -> list[tuple]:
    """The issue's targets: (description, measured ratio or None, goal, met or None)."""

    def ratio(a, b):
        return a / b if a and b else None

    llp_step = ratio(_get(rows, "llp", long, "step_s"), _get(rows, "llp", short, "step_s"))
    speedup = ratio(_get(rows, "transformer", long, "step_s"), _get(rows, "llp", long, "step_s"))
    llp_mem = ratio(_get(rows, "llp", long, "train_mib"), _get(rows, "llp", short, "train_mib"))
    k, s = long // 1024, short // 1024
    targets = [
        (f"llp step time {k}k / {s}k (equal tokens/step)", llp_step, "<= 1.3", lambda x: x <= 1.3),
        (f"transformer / llp step time at {k}k", speedup, ">= 4", lambda x: x >= 4.0),
        (f"llp peak memory {k}k / {s}k", llp_mem, "<= 1.5", lambda x: x <= 1.5),
    ]
    return [(d, v, goal, None if v is None else bool(ok(v))) for d, v, goal, ok in targets]


def markdown_report(rows: Sequence[dict], spec: BenchSpec, command: str, wall_s: float) -> str:
    """The results page: settings, the table, the fitted exponents and the targets."""
    cpu = cpu_name()
    lines = [
        "# Train-step time and memory vs sequence length",
        "",
        f"Command: `{command}`",
        "",
        (
            f"d = {spec.d_model}, L = {spec.num_layers}, H = {spec.num_heads}, "
            f"V = {spec.vocab_size}, {spec.tokens_per_step:,} tokens per step (batch = tokens/n), "
            f"float32, attention_impl='{spec.attention_impl}'; llp s = {spec.segment_len} (k = 1), "
            f"perceiver_ar l = {spec.latent_len}, s2attn G = "
            f"{spec.group_len or 'n/4 (LongLoRA)'}. Step = the trainer's AdamW train step; "
            f"times are medians of 2 to {spec.steps} steps after a warm-up step (which counts as "
            f"a sample when it alone exceeds half the {spec.point_budget_s:g} s budget of a "
            "point); memory = the compiled executable's buffer plan (arguments + outputs - "
            "donated + temporaries); process RSS = the peak resident memory of the process that "
            "measured the point alone (JAX runtime included). Dense attention over more than "
            f"{attention.CHUNK_ELEMENTS:,} (query, key) entries runs in query chunks that skip "
            "the keys a causal chunk cannot see (the transformer at n >= 8192: about half the "
            "work of the full square, so its rows there are a strong baseline). Machine: "
            f"{cpu}, {os.cpu_count()} CPU cores, jax {jax.__version__} on {jax.default_backend()}; "
            f"load average {os.getloadavg()[0]:.1f} at the end (shared machine: times are noisy); "
            f"{wall_s / 60:.1f} min in all."
        ),
        "",
        (
            "| model | n | batch | params | pairs/token | train step (ms) | tokens/s | "
            "forward (ms) | train peak (MiB) | forward peak (MiB) | process RSS (MiB) | "
            "compile (s) |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "skipped" in r:
            timing = f"{r['skipped']} | - | -"
        else:
            timing = (
                f"{r['step_s'] * 1e3:,.1f} | {r['tokens_per_s']:,.0f} | {r['fwd_s'] * 1e3:,.1f}"
            )
        lines.append(
            f"| {r['model']} | {r['n']:,} | {r['batch']} | {r['params']:,} | "
            f"{num_or_dash(r['pairs_per_token'], ',.0f')} | {timing} | {num_or_dash(r['train_mib'], ',.1f')} | "
            f"{num_or_dash(r['fwd_mib'], ',.1f')} | {num_or_dash(r.get('rss_mib'), ',.0f')} | "
            f"{num_or_dash(r['compile_s'], '.1f')} |"
        )
    lines += ["", "Fitted scaling exponent of train-step time vs n (time ~ n^e):", ""]
    lines += ["| model | e |", "|---|---|"]
    for name, e in exponents(rows).items():
        lines.append(f"| {name} | {'-' if e is None else f'{e:.2f}'} |")
    lines += ["", "Targets (from the issue):", "", "| target | measured | goal | met |"]
    lines.append("|---|---|---|---|")
    for desc, value, goal, ok in check_targets(rows):
        shown = "-" if value is None else f"{value:.2f}"
        lines.append(
            f"| {desc} | {shown} | {goal} | {'-' if ok is None else 'yes' if ok else 'NO'} |"
        )
    return "\n".join(lines) + "\n"


def plot(rows: Sequence[dict], path: str) -> None:
    """Log-log train-step time and peak memory vs n, one line per model."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.5))
    FigureCanvasAgg(fig)
    ax_t, ax_m = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    fits = exponents(rows)
    for name in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == name]
        timed = [(r["n"], r["step_s"]) for r in mine if "step_s" in r]
        if timed:
            e = fits.get(name)
            label = name if e is None else f"{name} (n^{e:.2f})"
            ax_t.plot(*zip(*timed), "o-", label=label)
        ax_m.plot([r["n"] for r in mine], [r["train_mib"] for r in mine], "o-", label=name)
    for ax, ylabel in ((ax_t, "train step (s)"), (ax_m, "compiled train-step peak (MiB)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length n (equal tokens per step)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3, which="both")
        ax.legend()
    fig.tight_layout()
    paths.write_figure(path, fig, dpi=120)


def write_results(rows, spec, out_md: str, out_png: str | None, command: str, wall_s: float):
    """Writes the markdown page, the rows as JSON beside it (same name, .json) and the PNG;
    returns the markdown text."""
    text = markdown_report(rows, spec, command, wall_s)
    record = {"command": command, "spec": dataclasses.asdict(spec), "rows": rows}
    paths.write_text(out_md, text)
    paths.write_text(os.path.splitext(out_md)[0] + ".json", strict_json.dumps(record, indent=1))
    if out_png:
        plot(rows, out_png)
    return text
