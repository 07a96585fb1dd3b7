"""The page of the step benchmark (experiments/results/step_benchmark.md): the table of each
variant against the measured matmul peak, the ratios to the authors' step and to each XLA flag
set's control, the largest ops of each profile and the matmul rate of each shape. Measuring is
step_benchmark.py's; this module only writes down its result dict."""

from __future__ import annotations

from llp_jax.studies.step_benchmark import flag_label


def ratios(result: dict) -> list[tuple[str, str, float]]:
    """(ours, theirs, their time / our time) for the pairs the targets name."""
    t = {r["variant"]: r["step_s"] for r in result["rows"]}
    pairs = [("llp_faithful", "authors_ecp"), ("llp", "authors_ecp"),
             ("llp_faithful_dropout", "authors_ecp_dropout"),
             ("llp_faithful_saveall", "authors_ecp"), ("llp_bf16", "authors_ecp")]  # fmt: skip
    return [(a, b, t[b] / t[a]) for a, b in pairs if a in t and b in t]


def flag_ratios(result: dict) -> list[tuple[str, float]]:
    """(worker label, the control's time / its time) for each flag set tried."""
    t = {r["variant"]: r["step_s"] for r in result["rows"]}
    return [(w, t[flag_label(label, "")] / t[w]) for w, label in result.get("flagged", {}).items()
            if w != flag_label(label, "")]  # fmt: skip


def markdown(result: dict, command: str, wall_s: float) -> str:
    spec, peak = result["spec"], result["peak"]
    lines = [
        "# Train step against the limit",
        "",
        f"Command: `{command}` ({wall_s / 60:.1f} min). Machine: {result['machine']}; load "
        f"average (1 min) during the timed rounds {min(result['load']):.2f}-"
        f"{max(result['load']):.2f}.",
        "",
        f"Config: d={spec['d_model']}, L={spec['num_layers']}, H={spec['num_heads']}, "
        f"n={spec['seq_len']}, S={spec['segments']} (s={spec['seq_len'] // spec['segments']}), "
        f"V={spec['vocab_size']}, batch {spec['batch']}, AdamW, one device. Medians of "
        f"{spec['rounds']} rounds; each round runs one step of every variant in turn. "
        "Variants: llp (clean), llp_faithful (code_faithful, dropout off), "
        "llp_faithful_dropout (their default dropout 0.05), llp_faithful_saveall (remat='none': "
        "every activation saved, the default before remat='auto' = 'dots_all' on CPU), llp_bf16 "
        "(compute_dtype bfloat16), "
        "authors_ecp / authors_ecp_dropout (their ECPAttentionTransformer, dropout 0 / 0.05, "
        "float32 PyTorch).",
        "",
        f"Matmul peak (float32, on the steps' own matmul shapes, FLOP-weighted): numpy "
        f"**{peak['numpy_gflops']:.0f} GFLOP/s**, XLA **{peak['xla_gflops']:.0f} GFLOP/s**. "
        "These are the non-batched shapes (projections, MLPs, the head). With attention's "
        "batched block matmuls in, at the FLOPs each step executes on them, each variant's own "
        "mix is slower (both libraries run small blocks well below their 2-D rate): the "
        "'attention blocks in' column, numpy / XLA. "
        "Model FLOPs: 3 x the forward's non-batched matmuls + 12 d x attended pairs x batch "
        "(llp_jax/studies/step_profile.py); the authors' ECP counts as the code-faithful LLP.",
        "",
        "| variant | step s (min-max) | tokens/s | model GFLOP | GFLOP/s | of numpy peak | "
        "of XLA peak | attention blocks in: peak GFLOP/s, of it (numpy / XLA) | "
        "matmul / elementwise / movement (profiled) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        b = r.get("breakdown")
        split = "—"
        if b:
            total = b["matmul"] + b["elementwise"] + b["movement"]
            split = " / ".join(f"{100 * b[k] / total:.0f}%" for k in
                               ("matmul", "elementwise", "movement"))  # fmt: skip
        flops = (f"{r['gflop']:.0f} | {r['gflops']:.0f} | {100 * r['util_numpy']:.0f}% | "
                 f"{100 * r['util_xla']:.0f}%") if "gflop" in r else "— | — | — | —"  # fmt: skip
        blocks = "—"
        if "peak_all" in r:
            p = r["peak_all"]
            blocks = (f"{p['numpy_all_gflops']:.0f} / {p['xla_all_gflops']:.0f}: "
                      f"{100 * r['util_numpy_all']:.0f}% / {100 * r['util_xla_all']:.0f}%")  # fmt: skip
        lines.append(f"| {r['variant']} | {r['step_s']:.2f} ({r['min_s']:.2f}-{r['max_s']:.2f}) "
                     f"| {r['tokens_per_s']:,.0f} | {flops} | {blocks} | {split} |")  # fmt: skip
    lines += bf16_lines(result)
    if result["authors"]:
        lines += ["", "Against the authors' PyTorch code (their time / ours, > 1: ours is faster; "
                  f"{'; '.join(result['authors'].values())}):", ""]  # fmt: skip
        lines += [f"- {a} vs {b}: **{x:.2f}x**" for a, b, x in ratios(result)]
    if result.get("flagged"):
        lines += ["", "XLA flags (each in its own worker process, timed in the same rounds; the "
                  "control's time / the flagged one's, > 1: the flags help):", ""]  # fmt: skip
        lines += [f"- {w}: **{x:.2f}x**" for w, x in flag_ratios(result)]
    lines += ["", "Largest ops of each profiled step (ms, under the profiler). Op times overlap: "
              "XLA:CPU runs independent ops concurrently and an op waiting for a pool thread "
              "counts as running (a [96, 256, 64] slice: 34 ms in the step, 0.8 ms alone); a dot "
              "XLA leaves to Eigen asynchronously (the weight gradients) counts from its launch "
              "to its completion, read from the executor's events, not as its ~0.1 ms launch. "
              "Op times sum to more than the step and the split above is of op time, not of wall "
              "time; removing a part and timing the step says what it costs.", ""]  # fmt: skip
    for r in result["rows"]:
        if r.get("breakdown"):
            top = ", ".join(f"{t['op']} ({t['kind']}) {t['ms']:.0f}" for t in
                            r["breakdown"]["top"][:5])  # fmt: skip
            lines.append(f"- {r['variant']}: {top}")
    lines += ["", "Matmul rates per shape (M x K x N, or Z x M x K x N for a batch of Z blocks; "
              "times per forward, summed over the variants; GFLOP/s numpy / XLA): "
              + "; ".join(f"{'x'.join(map(str, s['shape']))} x{s['times']}: "
                          f"{s['numpy_gflops']:.0f} / {s['xla_gflops']:.0f}"
                          + (f" (bfloat16 {s['xla_bf16_gflops']:.0f})"
                             if "xla_bf16_gflops" in s else "")
                          for s in peak["shapes"]), ""]  # fmt: skip
    return "\n".join(lines)


def bf16_lines(result: dict) -> list[str]:
    """The bfloat16 variants against XLA's bfloat16 matmul peak, where it was measured: their
    float32-peak percentages above can pass 90% on a CPU that multiplies bfloat16 twice as fast."""
    peak = result["peak"]
    rows = [r for r in result["rows"] if "util_bf16" in r]
    if "xla_bf16_gflops" not in peak or not rows:
        return []
    return ["", "bfloat16 matmul peak (XLA, bfloat16 operands, float32 accumulation, the same "
            f"shapes): **{peak['xla_bf16_gflops']:.0f} GFLOP/s**, "
            f"{peak['xla_bf16_all_gflops']:.0f} with attention's blocks in. Against it: "
            + ", ".join(f"{r['variant']} **{100 * r['util_bf16']:.0f}%** "
                        f"({100 * r['util_bf16_all']:.0f}% of its own mix with the blocks in)"
                        for r in rows) + "."]  # fmt: skip
