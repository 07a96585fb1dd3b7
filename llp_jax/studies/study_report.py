"""The study's results page: tables with seed spreads, the paper's claims checked, three plots.

Every figure is in bits per byte (byte tokens: bits per token; SentencePiece: the standard
protocol's total NLL over the text's UTF-8 bytes), so tokenizers compare. "a ± b (k)" is the mean
and sample standard deviation over k seeds. Written from whatever runs have finished, so a
partial study already reads correctly (a missing cell is '-').
"""

from __future__ import annotations

import json
import math
import os
import statistics
from collections import defaultdict

import numpy as np

from llp_jax.studies.study import StudySpec, bits, mean_std, read_curve

LN2 = math.log(2)
# The paper's ordering in perplexity, best first (its Tables 2-4): LLP < transformer < V1..V3 <
# PerceiverAR; checked pairwise below, for the clean models and among the code-faithful ones.
_V = ("enhanced_v1", "enhanced_v2", "enhanced_v3")
PAPER_CLAIMS = [("llp", "transformer"), *[("transformer", v) for v in _V],
                *[(v, "perceiver_ar") for v in _V],
                *[("llp (code)", f"{v} (code)") for v in _V],
                *[(f"{v} (code)", "perceiver_ar (code)") for v in _V],
                ("llp (code)", "perceiver_ar (code)")]  # fmt: skip


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


def claims(tokens: dict[str, list[dict]]) -> list[str]:
    lines = []
    for better, worse in PAPER_CLAIMS:
        if better not in tokens or worse not in tokens:
            continue
        a, b = [bits(r) for r in tokens[better]], [bits(r) for r in tokens[worse]]
        ma, mb = mean_std(a)[0], mean_std(b)[0]
        verdict = "agrees" if ma < mb else "disagrees"
        sure = "" if separated(a, b) else " (within the seed spread: not resolved)"
        lines.append(f"- paper: {better} < {worse}; here {ma:.3f} vs {mb:.3f}: {verdict}{sure}")
    return lines


def _table(head: list[str], body: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head),
            *["| " + " | ".join(row) + " |" for row in body]]  # fmt: skip


def markdown(study: StudySpec, rows: list[dict], command: str, wall_s: float) -> str:
    b = study.base
    tokens = group(rows)
    order = sorted(tokens, key=lambda v: mean_std([bits(r) for r in tokens[v]])[0])
    out = [
        f"# The paper's claims at small scale (study '{study.name}')", "",
        f"Command: `{command}` ({wall_s / 60:.1f} min in this invocation; each run is cached in "
        f"its workdir and reused; the {len(rows)} runs here took "
        f"{sum(r.get('total_s', 0) for r in rows) / 60:.0f} min to train and measure).", "",
        f"Every model: n = {b.seq_len}, d = {b.d_model}, L = {b.num_layers}, H = {b.num_heads}; "
        f"llp s = n/{b.segments} = {b.seq_len // b.segments} (k = 1: receptive field "
        f"L·k·s = {b.num_layers * b.seq_len // b.segments}); latent models l = n/{b.latent_div}; "
        f"AdamW lr {b.learning_rate:g}, {b.warmup_steps} warm-up steps, cosine; batch "
        f"{b.batch_size}; {b.num_steps} steps = {b.num_steps * b.batch_size * b.seq_len:,} input "
        f"tokens ('tokens' budget). Seeds {list(study.seeds)} (initialisation, dropout, data "
        f"order). Validation = Austen's Persuasion (first {b.eval_tokens:,} tokens, standard "
        "protocol: every target once with the longest context); held-out domain = the World "
        f"English Bible's Gospels (first {study.domain_tokens:,} tokens). Bits per byte "
        "throughout; 'a ± b (k)': mean ± sample std over k seeds.", "",
        "## Equal input tokens (the paper's framing), byte tokens", "",
    ]  # fmt: skip
    body = []
    for label in order:
        rs = tokens[label]
        body.append([label, f"{rs[0]['params']:,}", str(rs[0]["loss_positions"]),
                     ms([bits(r) for r in rs]), ms([bits(r, "test") for r in rs]),
                     ms([bits(r, "web") for r in rs]),
                     ms([r.get("tokens_per_s") for r in rs], ",.0f"),
                     ms([r.get("train_s") for r in rs], ".0f")])  # fmt: skip
    out += _table(["model", "params", "loss positions", "Austen val", "Austen test",
                   "Bible (other domain)", "train tokens/s", "train s"], body)  # fmt: skip
    out += ["", "Ordering (best first): " + " < ".join(order) + ".", "", *claims(tokens), ""]
    out += _equal_targets(study, rows, tokens) + _wall_clock(rows, tokens)
    out += _tokenizers(rows, tokens) + _positions(study, tokens) + _context(study, rows)
    out += _recipe(study, rows)
    out += ["![validation curves with seed bands](study_curves.png)", "",
            "![loss by position](study_positions.png)", "",
            "![context use](study_context.png)", ""]  # fmt: skip
    return "\n".join(out)


def _equal_targets(study, rows, tokens) -> list[str]:
    targets = group(rows, "targets")
    if not targets:
        return []
    body = []
    for label, rs in targets.items():
        steps = rs[0]["spec"]["num_steps"]
        body.append([label, f"{steps:,}", ms([bits(r) for r in tokens.get(label, [])]),
                     ms([bits(r) for r in rs]), ms([bits(r, "web") for r in rs])])  # fmt: skip
    for label in ("llp", "transformer"):
        if label in tokens:
            body.append([label + " (scores every position)", f"{study.base.num_steps:,}",
                         ms([bits(r) for r in tokens[label]]),
                         ms([bits(r) for r in tokens[label]]),
                         ms([bits(r, "web") for r in tokens[label]])])  # fmt: skip
    return ["## Equal loss targets", "",
            "The latent models score l of n positions: trained n/l times longer they see as many "
            "loss targets as the models that score every position.", "",
            *_table(["model", "steps", "Austen val (equal tokens)", "Austen val (equal targets)",
                     "Bible (equal targets)"], body), ""]  # fmt: skip


def _wall_clock(rows, tokens) -> list[str]:
    times = [statistics.median([r["train_s"] for r in rs]) for rs in tokens.values()]
    if not times:
        return []
    t = statistics.median(times)
    longest = {}
    for r in rows:
        k = r["key"]
        if k["tokenizer"] != "byte" or k["num_layers"] or k["budget"] == "recipe":
            continue
        best = longest.get((k["label"], k["seed"]))
        if best is None or r["spec"]["num_steps"] > best["spec"]["num_steps"]:
            longest[(k["label"], k["seed"])] = r
    by_label = defaultdict(list)
    for (label, _), r in longest.items():
        by_label[label].append(at_time(curve(r), t))
    body = [[label + (" †" if any(e for _, e in v) else ""), ms([x for x, _ in v])]
            for label, v in sorted(by_label.items(), key=lambda kv: mean_std(
                [x for x, _ in kv[1]])[0])]  # fmt: skip
    return [f"## Equal wall-clock: validation at {t:.0f} s of training", "",
            "The in-training validation loss (each model's loss positions, bits per token = "
            "byte) interpolated at the median training time of the equal-token runs, along each "
            "seed's longest run (equal targets where there is one). † = the run ended earlier: "
            "its last value. A point inside a longer run is taken before its learning rate "
            "decayed, so this view favours the short runs slightly. In-training validation "
            "scores each model's own loss positions with its training masks: the latent models "
            "their last l (the positions with the most context), S²-Attn its shifted groups, so "
            "compare models of one kind here, and use the tables above across kinds.", "",
            *_table(["model", f"val bits/byte at {t:.0f} s"], body), ""]  # fmt: skip


def _tokenizers(rows, tokens) -> list[str]:
    sp = group(rows, tokenizer="sentencepiece")
    if not sp:
        return []
    body = [[label, ms([bits(r) for r in tokens.get(label, [])]), ms([bits(r) for r in rs]),
             ms([bits(r, "web") for r in rs]), f"{rs[0]['bytes_per_token']:.2f}"]
            for label, rs in sp.items()]  # fmt: skip
    return [
        "## Bytes vs SentencePiece (same steps, same n in tokens)",
        "",
        *_table(
            [
                "model",
                "bytes: Austen val",
                "SentencePiece: Austen val",
                "SentencePiece: Bible",
                "bytes / SP token",
            ],
            body,
        ),
        "",
        "With SentencePiece a window of n tokens spans several times more text.",
        "",
    ]


def _positions(study, tokens) -> list[str]:
    w = study.bucket
    width = len(next(iter(tokens.values()))[0]["position_loss"]) if tokens else 0
    head = ["model", *[f"{i * w}–{(i + 1) * w - 1}" for i in range(width)]]
    body = []
    for label, rs in tokens.items():
        cells = []
        for i in range(width):
            values = [r["position_loss"][i] for r in rs if r["position_loss"][i] is not None]
            cells.append(ms([v / LN2 for v in values], ".2f") if values else "-")
        body.append([label, *cells])
    return ["## Loss by position in the window (bits per byte, Austen validation)", "",
            f"Non-overlapping windows of n (first {study.position_windows}), mean loss per "
            f"bucket of {w} positions; latent models score only their last l.", "",
            *_table(head, body), ""]  # fmt: skip


def _context(study, rows) -> list[str]:
    series = context_series(study, rows)
    if not series:
        return []
    keys = sorted({c for v in series.values() for c in v}, key=lambda c: (c == "stream", c))
    head = ["model", *[f"c = {c}" if c != "stream" else "streamed" for c in keys]]
    body = [[label, *[ms(v.get(c, []), ".4f") for c in keys]] for label, v in series.items()]
    s = study.base.seq_len // study.base.segments
    return [
        "## Context use: loss vs carried context",
        "",
        f"The same target segments ({s} tokens each, Austen validation) scored with c "
        "segments of context before them; 'streamed' = LLP's whole-text stream. LLP's "
        "receptive field is L·k segments: beyond it the loss must stop improving (and equals "
        "the stream's). The transformer is measured up to its window n.",
        "",
        *_table(head, body),
        "",
    ]


def context_series(study, rows) -> dict[str, dict[str, list[float]]]:
    out: dict[str, dict[str, list[float]]] = {}
    for r in rows:
        k = r["key"]
        if "context" not in r or k["tokenizer"] != "byte" or k["budget"] != "tokens":
            continue
        if k["label"] not in ("llp", "transformer"):
            continue
        L = k["num_layers"] or study.base.num_layers
        label = f"{k['label']} L={L}"
        for c, v in r["context"].items():
            out.setdefault(label, {}).setdefault(c, []).append(v / LN2)
    return out


def _recipe(study, rows) -> list[str]:
    recipe = group(rows, "recipe", "sentencepiece")
    if not recipe or study.recipe is None:
        return []
    p = study.recipe
    body = [[label, f"{rs[0]['params']:,}", f"{rs[0]['validation_standard_ppl']:.2f}",
             ms([bits(r) for r in rs]), ms([bits(r, "web") for r in rs]),
             f"{rs[0]['train_s'] / 60:.1f}"] for label, rs in recipe.items()]  # fmt: skip
    return ["## The paper's recipe, scaled down", "",
            f"n = {p.seq_len}, d = {p.d_model}, L = {p.num_layers}, H = {p.num_heads}, "
            f"SentencePiece {p.vocab_size} (the paper: BERT's 28,996 WordPieces), AdamW lr "
            f"{p.learning_rate:g} halved every {p.halve_every} steps, no warm-up, batch "
            f"{p.batch_size}, {p.num_steps} steps, one seed; 'llp (code)' carries the authors' "
            "code knobs and dropout 0.05.", "",
            *_table(["model", "params", "val ppl (per SP token)", "Austen val bits/byte",
                     "Bible bits/byte", "train min"], body), ""]  # fmt: skip


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
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)


def write(study, rows, out_md: str, command: str, wall_s: float) -> str:
    """study.md, study.json (every row) and the three plots beside it."""
    text = markdown(study, rows, command, wall_s)
    folder = os.path.dirname(os.path.abspath(out_md))
    os.makedirs(folder, exist_ok=True)
    with open(out_md, "w") as f:
        f.write(text)
    with open(os.path.splitext(out_md)[0] + ".json", "w") as f:
        json.dump({"command": command, "rows": rows}, f, indent=1, default=str)
    if rows:
        plots(study, rows, folder)
    return text
