"""The comparison's results page: the table, the mixed-precision parity lines and the
validation-loss plot, written from the rows `compare.run_comparison` returns (JSON beside them)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

from llp_jax import models, paths, strict_json
from llp_jax.models.losses import perplexity_text
from llp_jax.storage import read_jsonl
from llp_jax.studies.benchmark import num_or_dash
from llp_jax.studies.compare_spec import PRECISION_VARIANTS, CompareSpec


def _ppl(value: float | None) -> str:
    """A perplexity cell: '-' where the run has none (None, or NaN for a protocol not run)."""
    return "-" if value is None or math.isnan(value) else perplexity_text(value)


def markdown_report(
    rows: Sequence[dict], spec: CompareSpec, command: str, wall_s: float, png_name: str
) -> str:
    """The results page: the settings, the table and how to read it."""
    n = spec.seq_len
    lines = [
        "# Same-budget comparison of the zoo on the embedded Austen corpus",
        "",
        f"Command: `{command}`",
        "",
        (
            f"Every model: n = {n}, d = {spec.d_model}, L = {spec.num_layers}, "
            f"H = {spec.num_heads}, byte tokens, AdamW (lr {spec.learning_rate:g}, "
            f"{spec.warmup_steps} warm-up steps, cosine), batch {spec.batch_size}, "
            f"{spec.num_steps} steps = {spec.num_steps * spec.batch_size * n:,} input tokens seen. "
            f"llp s = n/{spec.segments} = {n // spec.segments}; latent models l = "
            f"n/{spec.latent_div} = {n // spec.latent_div} (enhanced_v2 S_h = "
            f"{spec.history_segments}, enhanced_v3 c = n/4). Perplexity per byte token on the "
            f"first {spec.eval_tokens:,} tokens of each split (0 = all): 'standard' counts every "
            "target once with the longest available context (stride n/2, latent models "
            "min(n/2, l)); 'paper' is the authors' protocol (windows every n/2, mean of window "
            "means; llp counts overlapping targets twice). Attention pairs: per window, all "
            "layers, per head, counted from each model's masks. Peak memory: the compiled train "
            f"step's buffer plan. {wall_s / 60:.1f} min in all (a shared 2-core CPU: tokens/s "
            "are noisy)."
        ),
        "",
        (
            "| model | params | attention pairs / window | loss positions / window | val ppl | "
            "test ppl | val ppl (paper) | test ppl (paper) | train tokens/s | peak MiB |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ppl = [_ppl(r.get(f"{split}_{protocol}_ppl"))
               for protocol in ("standard", "paper")
               for split in ("validation", "test")]  # fmt: skip
        lines.append(
            f"| {r['label']} | {r['params']:,} | {r['pairs_per_window']:,} | "
            f"{r['loss_positions']} | {' | '.join(ppl)} | "
            f"{num_or_dash(r.get('tokens_per_s'), ',.0f')} | "
            f"{num_or_dash(r.get('peak_mib'), ',.1f')} |"
        )
    lines += [
        "",
        (
            "Equal input tokens are not equal loss targets: the latent models score "
            f"{n // spec.latent_div} of every {n} positions per window, so they learn from "
            f"{spec.latent_div}x fewer targets per step, each with long context; the others "
            "score every position, most of them with short context. 'llp (code)' switches "
            "on the authors' code knobs (shared K = V, unused K/V LayerNorm parameters, RoPE in "
            "layer 1 only, a separate segment-0 output projection, dropout 0.05); all other rows "
            "are the clean models without dropout. S²-Attn is evaluated as LongLoRA does, with "
            "full causal attention on the trained weights; the '(shifted at evaluation)' row "
            "keeps its training masks instead (the same run, evaluated twice)."
        ),
        *precision_lines(rows),
        "",
        f"![validation loss vs step]({png_name})",
    ]
    return "\n".join(lines) + "\n"


def precision_lines(rows: Sequence[dict]) -> list[str]:
    """The parity check of each mixed-precision row against its float32 row (when both ran):
    validation loss (standard protocol) and training speed."""
    by_label = {r["label"]: r for r in rows}
    lines = []
    for variant in PRECISION_VARIANTS:
        low, base = by_label.get(variant.label), by_label.get(variant.name)
        if not low or not base or low.get("derived") or base.get("derived"):
            continue
        a, b = low["validation_standard_loss"], base["validation_standard_loss"]
        speed = (low.get("tokens_per_s") or math.nan) / (base.get("tokens_per_s") or math.nan)
        lines += ["", (
            f"Mixed precision: '{variant.label}' ({dict(variant.changes)}) reaches validation "
            f"loss {a:.4f} vs float32's {b:.4f} ({100 * (a - b) / b:+.2f}%, parity within 1%: "
            f"{'yes' if abs(a - b) <= 0.01 * abs(b) else 'no'}), at {speed:.2f}x float32's "
            "training tokens/s on this machine."
        )]  # fmt: skip
    return lines


def plot_validation(rows: Sequence[dict], path: str) -> None:
    """Validation loss (each model's own loss positions) vs step, one line per variant."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for r in rows:
        if r.get("derived"):  # another evaluation of a trained run: the same curve
            continue
        records = read_jsonl(os.path.join(r["workdir"], "metrics.jsonl"))
        points = sorted((x["step"], x["val/loss"]) for x in records if "val/loss" in x)
        if points:
            style = "s--" if models.model_class(r["model"]["name"]).scores_latents else "o-"
            ax.plot(*zip(*points), style, label=r["label"], markersize=3)
    ax.set_xlabel("step (equal input tokens per step)")
    ax.set_ylabel("validation loss (nats/token, model's loss positions)")
    ax.set_title("Validation loss vs step (dashed: latent models, scored on their last l)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    paths.write_figure(path, fig, dpi=120)


def write_results(rows, spec, out_md: str, command: str, wall_s: float) -> str:
    """Writes the markdown table, the rows as JSON and the plot beside it (same name, .json and
    .png); returns the markdown."""
    png = os.path.splitext(out_md)[0] + ".png"
    text = markdown_report(rows, spec, command, wall_s, os.path.basename(png))
    paths.write_text(out_md, text)
    paths.write_text(os.path.splitext(out_md)[0] + ".json",
                     strict_json.dumps({"command": command, "rows": rows}, indent=1))  # fmt: skip
    plot_validation(rows, png)
    return text
