"""The study's results page: tables with seed spreads, the paper's claims checked, three plots.

Every figure is in bits per byte (byte tokens: bits per token; SentencePiece: the standard
protocol's total NLL over the text's UTF-8 bytes), so tokenizers compare. "a ± b (k)" is the mean
and sample standard deviation over k seeds. Written from whatever runs have finished, so a
partial study already reads correctly (a missing cell is '-').
"""

from __future__ import annotations

import os
import statistics
from collections import defaultdict

from llp_jax import paths, strict_json
from llp_jax.studies import study_plots
from llp_jax.studies.study import bits, mean_std
from llp_jax.studies.study_rows import (
    LN2,
    at_time,
    context_series,
    curve,
    equal_target_groups,
    group,
    last_quarter_drop,
    ms,
    paired,
    paired_p,
    separated,
    targets_per_run,
)
from llp_jax.studies.study_spec import StudySpec

# The paper's ordering in perplexity, best first (its Tables 2-4): LLP < transformer < V1..V3 <
# PerceiverAR; checked pairwise below, for the clean models and among the code-faithful ones.
_V = ("enhanced_v1", "enhanced_v2", "enhanced_v3")
PAPER_CLAIMS = [("llp", "transformer"), *[("transformer", v) for v in _V],
                *[(v, "perceiver_ar") for v in _V],
                *[("llp (code)", f"{v} (code)") for v in _V],
                *[(f"{v} (code)", "perceiver_ar (code)") for v in _V],
                ("llp (code)", "perceiver_ar (code)")]  # fmt: skip


def claims(tokens: dict[str, list[dict]]) -> list[str]:
    """The paper's pairwise claims checked: the means, and whether the seeds settle it (a paired
    t-test over the shared seeds at p < 0.05, or else means further apart than their spreads)."""
    lines = []
    for better, worse in PAPER_CLAIMS:
        if better not in tokens or worse not in tokens:
            continue
        a, b = [bits(r) for r in tokens[better]], [bits(r) for r in tokens[worse]]
        ma, mb = mean_std(a)[0], mean_std(b)[0]
        verdict = "agrees" if ma < mb else "disagrees"
        pair = paired(tokens[better], tokens[worse])
        if pair is not None:
            p = paired_p(*pair)
            sure = f"; paired by seed {pair[0]:+.3f} ± {pair[1]:.3f}, p = {p:.2g}" + (
                "" if p < 0.05 else ": not resolved"
            )
        else:
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
        f"tokens ('tokens' budget; the other budgets scale steps, warm-up and evaluation "
        f"interval alike). Seeds {list(study.seeds)} (initialisation, dropout, data "
        f"order). Validation = Austen's Persuasion (first {b.eval_tokens:,} tokens, standard "
        "protocol: every target once with the longest context); held-out domain = the World "
        f"English Bible's Gospels (first {study.domain_tokens:,} tokens). Bits per byte "
        "throughout; 'a ± b (k)': mean ± sample std over k seeds. 'Last-quarter drop': how "
        "much the in-training validation loss still fell over the last quarter of the run "
        "(bits per byte; near 0 = a plateau).", "",
        "## Equal input tokens (the paper's framing), byte tokens", "",
    ]  # fmt: skip
    body = []
    for label in order:
        rs = tokens[label]
        body.append([label, f"{rs[0]['params']:,}", str(rs[0]["loss_positions"]),
                     ms([bits(r) for r in rs]), ms([bits(r, "test") for r in rs]),
                     ms([bits(r, "web") for r in rs]), ms([last_quarter_drop(r) for r in rs]),
                     ms([r.get("tokens_per_s") for r in rs], ",.0f"),
                     ms([r.get("train_s") for r in rs], ".0f")])  # fmt: skip
    out += _table(["model", "params", "loss positions", "Austen val", "Austen test",
                   "Bible (other domain)", "last-quarter drop", "train tokens/s", "train s"],
                  body)  # fmt: skip
    out += ["", "Ordering (best first): " + " < ".join(order) + ".", "", *claims(tokens), ""]
    out += _equal_targets(study, rows, tokens) + _long(study, rows, tokens)
    out += _wall_clock(rows, tokens)
    out += _tokenizers(rows, tokens) + _positions(study, tokens) + _context(study, rows)
    out += _recipe(study, rows)
    out += ["![validation curves with seed bands](study_curves.png)", "",
            "![loss by position](study_positions.png)", "",
            "![context use](study_context.png)", ""]  # fmt: skip
    return "\n".join(out)


def _equal_targets(study, rows, tokens) -> list[str]:
    b = study.base
    fewer, longer = equal_target_groups(study, rows, tokens), group(rows, "targets")
    if not group(rows, "targets_short") and not longer:
        return []
    head = ["model", "steps", "loss targets", "Austen val (equal tokens)",
            "Austen val (equal targets)", "Bible (equal targets)"]  # fmt: skip
    out = ["## Equal loss targets", "",
           f"The latent models score l = n/{b.latent_div} of the n positions of a window, so at "
           "equal input tokens they learn from that many times fewer loss targets. Two ways to "
           "even that out: the models that score every position trained "
           f"1/{b.latent_div} as long ('targets_short': every model at the latent models' "
           f"targets of their {b.num_steps}-step runs), or the latent models trained "
           f"{b.latent_div} times longer ('targets').", ""]  # fmt: skip
    if group(rows, "targets_short"):
        order = sorted(fewer, key=lambda v: mean_std([bits(r) for r in fewer[v]])[0])
        body = [_targets_row(label, fewer[label], tokens.get(label, [])) for label in order]
        out += ["### Every model at the latent models' targets", "", *_table(head, body), "",
                "Ordering (best first): " + " < ".join(order) + ".", "", *claims(fewer), ""]  # fmt: skip
    if longer:
        body = [_targets_row(label, rs, tokens.get(label, [])) for label, rs in longer.items()]
        body += [_targets_row(label + " (scores every position)", rs, rs)
                 for label, rs in tokens.items()
                 if rs[0]["loss_positions"] == b.seq_len and label in ("llp", "transformer")]  # fmt: skip
        out += ["### Latent models at the full-scoring models' targets", "",
                *_table(head, body), ""]  # fmt: skip
    return out


def _targets_row(label: str, rs: list[dict], equal_tokens: list[dict]) -> list[str]:
    """A row of the equal-targets tables: the run's steps and targets, its equal-token result
    (`equal_tokens`), its result at equal targets (`rs`) on both domains."""
    return [label, f"{rs[0]['spec']['num_steps']:,}", f"{targets_per_run(rs[0]):,}",
            ms([bits(r) for r in equal_tokens]), ms([bits(r) for r in rs]),
            ms([bits(r, "web") for r in rs])]  # fmt: skip


def _long(study, rows, tokens) -> list[str]:
    long = group(rows, "long")
    if not long:
        return []
    seed = study.seeds[0]
    order = sorted(long, key=lambda v: bits(long[v][0]))
    body = []
    for label in order:
        (r,) = long[label][:1]
        short = [t for t in tokens.get(label, []) if t["key"]["seed"] == seed]
        body.append([label, ms([bits(t) for t in short]), f"{bits(r):.3f}",
                     f"{bits(r, 'web'):.3f}", _fmt(last_quarter_drop(r))])  # fmt: skip
    return [f"## How far from a plateau: {study.long_factor}x the budget (seed {seed})", "",
            f"The same models trained {study.long_factor} times as long ("
            f"{study.base.num_steps * study.long_factor:,} steps, one seed): whether the "
            "'tokens' ordering survives a run closer to a plateau.", "",
            *_table(["model", f"Austen val, {study.base.num_steps} steps",
                     f"Austen val, {study.base.num_steps * study.long_factor:,} steps",
                     "Bible", "last-quarter drop"], body), "",
            "Ordering (best first): " + " < ".join(order) + ".", ""]  # fmt: skip


def _fmt(value, spec=".3f") -> str:
    return "-" if value is None else format(value, spec)


def _wall_clock(rows, tokens) -> list[str]:
    times = [statistics.median([r["train_s"] for r in rs]) for rs in tokens.values()]
    if not times:
        return []
    t = statistics.median(times)
    longest = {}
    for r in rows:
        k = r["key"]
        if k["tokenizer"] != "byte" or k["num_layers"] or k["budget"] not in ("tokens", "targets"):
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
        "the stream's). The transformer is measured up to its window n. The "
        f"'{study.long_factor}x steps' rows are the long runs (one seed).",
        "",
        *_table(head, body),
        "",
    ]


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


def write(study, rows, out_md: str, command: str, wall_s: float) -> str:
    """study.md, study.json (every row) and the three plots beside it."""
    text = markdown(study, rows, command, wall_s)
    folder = os.path.dirname(os.path.abspath(out_md))
    paths.write_text(out_md, text)
    paths.write_text(os.path.splitext(out_md)[0] + ".json",
                     strict_json.dumps({"command": command, "rows": rows}, indent=1, default=str))  # fmt: skip
    if rows:
        study_plots.plots(study, rows, folder)
    return text
