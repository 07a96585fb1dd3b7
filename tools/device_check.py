"""The accelerator check: cuDNN (GPU) / splash (TPU) attention against XLA for every model, and a
bfloat16 train step of the paper's 172M LLP with its tokens/s and model FLOPs utilisation.

  bash scripts/device_check.sh                  # on a GPU or TPU machine: < 5 min, one table
  python tools/device_check.py --smoke          # the same checks at toy sizes (any backend)

Prints one markdown table and writes it to --out. The kernel rows compare logits of every model
(clean and code-faithful, bfloat16) computed with attention_impl='cudnn' or 'splash' against
'xla' on the same parameters, and say whether the kernel really ran (the XLA fallback is logged
when it does not). The step row times the jitted AdamW train step of the code-faithful paper LLP
(d = 768, L = 18, H = 12, n = 2048, S = 8, V = 28996, bfloat16 compute, float32 master weights)
after a warm-up, and reports model FLOPs utilisation: 6 * non-embedding parameters * tokens +
the attention's 12 * d * (attention pairs per window) * batch, over the chip's peak bfloat16
matmul rate (--peak_tflops; the H200's dense figure by default).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from llp_jax import models  # noqa: E402
from llp_jax.models import attention  # noqa: E402
from llp_jax.studies.benchmark import attention_pairs  # noqa: E402
from llp_jax.training import MeshConfig, TrainConfig, make_optimizer, make_schedule  # noqa: E402
from llp_jax.training import mesh as mesh_lib  # noqa: E402
from llp_jax.training import train_step as steps  # noqa: E402

PEAK_TFLOPS = {"gpu": 989.0, "tpu": 197.0}  # H100/H200 SXM dense bf16; TPU v4 per chip


class _FallbackLog(logging.Handler):
    def __init__(self):
        super().__init__()
        self.reasons: list[str] = []

    def emit(self, record):
        self.reasons.append(record.getMessage())


def kernel_rows(impl: str, smoke: bool) -> list[dict]:
    """Every model, clean and code-faithful: max |logits(impl) - logits(xla)| in bfloat16."""
    rows = []
    n = 128 if smoke else 1024
    accelerator = jax.default_backend() in ("gpu", "tpu")
    tokens = jnp.asarray(np.random.default_rng(0).integers(0, 512, (2, n)), jnp.int32)
    for name in models.MODEL_NAMES:
        for faithful in (False, True):
            cfg = models.sized(
                name, n, models.StructuralSizes(segments=4, latent_div=4), faithful=faithful,
                vocab_size=512, num_layers=2, d_model=64 if smoke else 512,
                num_heads=2 if smoke else 8, compute_dtype="bfloat16", dropout=0.0,
            )  # fmt: skip
            params = nnx.split(models.build(cfg, seed=0))[1]
            handler = _FallbackLog()
            logging.getLogger(attention.__name__).addHandler(handler)
            attention._warned.clear()  # so that this model's fallbacks are logged again
            outs = {}
            for which in ("xla", impl):
                graphdef = nnx.split(models.abstract_model(cfg.replace(attention_impl=which)))[0]
                forward = jax.jit(lambda p, t, g=graphdef: nnx.merge(g, p)(t))
                outs[which] = np.asarray(forward(params, tokens), np.float32)
            logging.getLogger(attention.__name__).removeHandler(handler)
            diff = float(np.abs(outs[impl] - outs["xla"]).max())
            scale = float(np.abs(outs["xla"]).max())
            ran = not any("needs" in r or "skipped" in r for r in handler.reasons)
            rows.append({
                "check": f"{impl} == xla: {name} ({'code' if faithful else 'clean'})",
                "value": f"max |d logits| {diff:.3g} (|logits| <= {scale:.3g})",
                # On an accelerator the kernel must really run; elsewhere it falls back.
                "ok": diff <= 0.05 * max(scale, 1.0) and (ran or not accelerator),
                "note": "; ".join(dict.fromkeys(handler.reasons)) or f"{impl} ran",
            })  # fmt: skip
    return rows


def step_row(smoke: bool, peak_tflops: float) -> dict:
    """Tokens/s and MFU of the bfloat16 train step of the paper's 172M LLP (toy size in smoke)."""
    backend = jax.default_backend()
    impl = {"gpu": "cudnn", "tpu": "splash"}.get(backend, "xla")
    if smoke:
        cfg = models.tiny("llp", faithful=True, compute_dtype="bfloat16", attention_impl=impl)
        batch = 4
    else:
        cfg = models.paper_llp(compute_dtype="bfloat16", attention_impl=impl, dropout=0.0)
        batch = 8
    mesh = mesh_lib.make_mesh(MeshConfig(), devices=jax.devices()[:1])
    train = TrainConfig(batch_size=batch)
    tx = make_optimizer(train, train.num_steps)
    graphdef, state, shardings = steps.init_train_state(
        lambda: models.build(cfg, seed=0), tx, mesh, 0
    )
    step = steps.make_train_step(graphdef, tx, make_schedule(train), mesh, shardings, dropout=False)
    tokens = np.random.default_rng(0).integers(0, cfg.vocab_size, (batch, cfg.seq_len + 1))
    sharding = mesh_lib.batch_sharding(mesh)
    data = {k: jax.device_put(jnp.asarray(v, jnp.int32), sharding)
            for k, v in (("inputs", tokens[:, :-1]), ("targets", tokens[:, 1:]))}  # fmt: skip
    state, metrics = step(state, data)  # compile + warm-up
    jax.block_until_ready(metrics["loss"])
    times = []
    for _ in range(3 if smoke else 10):
        start = time.perf_counter()
        state, metrics = step(state, data)
        jax.block_until_ready(metrics["loss"])
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    total = models.count_params(cfg)
    embed = 2 * cfg.vocab_size * cfg.d_model  # the lookup table and the untied head's matrix
    tokens_per_step = batch * cfg.seq_len
    flops = 6 * (total - embed) * tokens_per_step + 6 * cfg.d_model * cfg.vocab_size * \
        tokens_per_step + 12 * cfg.d_model * attention_pairs(cfg) * batch  # fmt: skip
    achieved = flops / seconds / 1e12
    return {
        "check": f"bf16 train step, {total / 1e6:.1f}M-parameter LLP, batch {batch} x {cfg.seq_len}",
        "value": f"{seconds * 1e3:.1f} ms, {tokens_per_step / seconds:,.0f} tokens/s, "
                 f"{achieved:.1f} TFLOP/s = {100 * achieved / peak_tflops:.1f}% of "
                 f"{peak_tflops:g} TFLOP/s",
        "ok": bool(np.isfinite(float(metrics["loss"]))),
        "note": f"attention_impl={impl}; loss {float(metrics['loss']):.3f}",
    }  # fmt: skip


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="toy sizes (any backend)")
    parser.add_argument("--peak_tflops", type=float, default=None)
    parser.add_argument("--out", default="experiments/results/device_check.md")
    args = parser.parse_args()
    backend = jax.default_backend()
    impl = {"gpu": "cudnn", "tpu": "splash"}.get(backend, "cudnn")
    peak = args.peak_tflops or PEAK_TFLOPS.get(backend, 1.0)
    start = time.perf_counter()
    rows = kernel_rows(impl, args.smoke) + [step_row(args.smoke, peak)]
    device = jax.devices()[0]
    lines = [
        f"# Accelerator check on {getattr(device, 'device_kind', device.platform)} "
        f"({backend}, jax {jax.__version__})",
        "",
        f"Command: `python tools/device_check.py{' --smoke' if args.smoke else ''}`; "
        f"{time.perf_counter() - start:.0f} s.",
        "",
        "| check | measured | ok | note |",
        "|---|---|---|---|",
        *[
            f"| {r['check']} | {r['value']} | {'yes' if r['ok'] else 'NO'} | {r['note']} |"
            for r in rows
        ],  # fmt: skip
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(text)
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
