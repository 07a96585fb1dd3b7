"""The study's finished runs as the report reads them: grouped by budget, tokenizer and depth,
with seed statistics, validation curves and the derived figures (plateau drop, loss targets).

Shared by the results page (study_report.py) and its plots (study_plots.py).
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from llp_jax.studies.study import bits, mean_std, read_curve

LN2 = math.log(2)


def group(rows, budget="tokens", tokenizer="byte", layers=None) -> dict[str, list[dict]]:
    out = defaultdict(list)
    for r in rows:
        k = r["key"]
        if (k["budget"], k["tokenizer"], k["num_layers"]) == (budget, tokenizer, layers):
            out[k["label"]].append(r)
    return out


def ms(values, spec=".3f") -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    mean, std, k = mean_std(values)
    return f"{mean:{spec}}" + ("" if math.isnan(std) else f" ± {std:{spec}}") + f" ({k})"


def curve(row) -> list[tuple[int, float, float]]:
    """(step, training seconds, validation bits per token) of a run's in-training evaluations:
    kept in its row (`study.read_curve`), or read from its workdir (rows of older studies)."""
    if "curve" in row:
        return [tuple(p) for p in row["curve"]]
    return read_curve(row["workdir"])


def at_time(points, t: float) -> tuple[float | None, bool]:
    """Validation bits per token at training time t (linear between evaluations); (value, True)
    if the run ended before t (its last value)."""
    if not points:
        return None, False
    times, values = [p[1] for p in points], [p[2] for p in points]
    if t >= times[-1]:
        return values[-1], t > times[-1] * 1.02
    return float(np.interp(t, times, values)), False


def separated(a: list[float], b: list[float]) -> bool:
    """Whether two seed samples are apart by more than their spreads (means differ by more than
    the sum of the standard deviations)."""
    (ma, sa, _), (mb, sb, _) = mean_std(a), mean_std(b)
    return abs(ma - mb) > (0 if math.isnan(sa) else sa) + (0 if math.isnan(sb) else sb)


def paired(a_rows: list[dict], b_rows: list[dict]) -> tuple[float, float, int] | None:
    """(mean, std, k) of the per-seed differences bits(a) - bits(b) over the seeds both have
    (None with fewer than two); `paired_p` tests it. A seed fixes the data order (and the
    initialisation's random stream), so pairing by seed removes the batches' share of the
    spread."""
    a = {r["key"]["seed"]: bits(r) for r in a_rows}
    b = {r["key"]["seed"]: bits(r) for r in b_rows}
    diffs = [a[s] - b[s] for s in sorted(a.keys() & b.keys())]
    return mean_std(diffs) if len(diffs) > 1 else None


def paired_p(mean: float, std: float, k: int) -> float:
    """Two-sided p-value of the paired t-test for k differences of this mean and sample std."""
    from scipy import stats

    if std == 0:
        return 0.0 if mean else 1.0
    return float(2 * stats.t.sf(abs(mean) / (std / math.sqrt(k)), df=k - 1))


def equal_target_groups(study, rows, tokens) -> dict[str, list[dict]]:
    """Every model at the latent models' loss targets: the latent models' 'tokens' runs and the
    full-scoring models' 'targets_short' runs (l / n times as long)."""
    short = group(rows, "targets_short")
    out = {label: rs for label, rs in tokens.items()
           if rs[0]["loss_positions"] < study.base.seq_len}  # fmt: skip
    return {**short, **out}


def targets_per_run(row) -> int:
    """Loss targets a run trained on: steps x batch x scored positions."""
    spec = row["spec"]
    return spec["num_steps"] * spec["batch_size"] * row["loss_positions"]


def last_quarter_drop(row) -> float | None:
    """How much a run's in-training validation loss fell over its last quarter (bits per
    token; interpolated at 75% of the steps)."""
    points = curve(row)
    if len(points) < 2:
        return None
    steps, values = [p[0] for p in points], [p[2] for p in points]
    return float(np.interp(0.75 * steps[-1], steps, values) - values[-1])


def context_series(study, rows) -> dict[str, dict[str, list[float]]]:
    out: dict[str, dict[str, list[float]]] = {}
    for r in rows:
        k = r["key"]
        if "context" not in r or k["tokenizer"] != "byte" or k["budget"] not in ("tokens", "long"):
            continue
        if k["label"] not in ("llp", "transformer"):
            continue
        L = k["num_layers"] or study.base.num_layers
        label = f"{k['label']} L={L}" + (
            f", {study.long_factor}x steps" if k["budget"] == "long" else ""
        )
        for c, v in r["context"].items():
            out.setdefault(label, {}).setdefault(c, []).append(v / LN2)
    return out
