"""What a train step does and how close it runs to the machine: model FLOPs, the matmul peak on
the step's own shapes, and a per-op time breakdown from a JAX profile.

Model FLOPs of one step (forward + backward, the usual 3x the forward's matmuls):
    3 * (every non-batched matmul of the forward: 2*M*K*N — projections, MLPs, the output head)
  + 12 * d_model * attention_pairs * batch   (QK^T and PV, 2 FLOPs per multiply-add, 2 matmuls,
                                              x3 for forward+backward, over the *attended* pairs)
For a model whose every layer sees every position this is the familiar 6*N*T + 6*d*V*T + the
attention term; for latent models (PerceiverAR) it counts what the latents really compute.
Attention work on masked-out blocks is *executed* FLOPs, not model FLOPs, and is reported apart.

The peak: every distinct matmul shape of the forward, timed with numpy (BLAS) and with XLA in
this process, FLOP-weighted by how often the step runs it: the float32 rate this machine reaches
on this step's own matmuls. Two mixes: the non-batched shapes alone (projections, MLPs, the
head: 2-D matmuls, which both libraries spread over every core), and all of them, attention's
batched block matmuls ([Z, M, K] x [Z, K, N], Z = batch x heads x blocks) included at the
FLOPs the step executes on them. The batched ones run far below the 2-D rate in both libraries
on small blocks (an [s, 64] x [64, s] block is too little work to split across cores), so the
second mix is the lower, and the fairer ceiling for a model whose attention is such blocks.
For a bfloat16 step on a CPU with bfloat16 units, XLA's bfloat16 dots on the same shapes give
its own ceiling (`matmul_peak(bf16=True)`).

The breakdown: one profiled step (`jax.profiler`, a Perfetto trace), each XLA thunk's time
(its event's; an asynchronous Eigen dot's from launch to completion, `op_spans`) classified by
what its HLO instruction computes — matmul (a fusion holding a dot or convolution), data
movement (only copies, transposes, broadcasts, slices, concatenations, pads, dynamic updates)
or elementwise (everything else: softmax, LayerNorm, the optimizer).
"""

from __future__ import annotations

import collections
import functools
import glob
import gzip
import json
import math
import re
import tempfile
import time
from collections.abc import Callable

import jax
import jax.extend.core as jcore
import jax.numpy as jnp
import numpy as np

from llp_jax.kernels import blas

MOVEMENT_OPS = frozenset(
    "parameter constant copy transpose bitcast broadcast reshape slice dynamic-slice "
    "dynamic-update-slice concatenate pad iota tuple get-tuple-element copy-start copy-done "
    "bitcast-convert reverse".split()
)  # fmt: skip
MATMUL_OPS = frozenset({"dot", "convolution"})
MARKER_US = 50.0  # how far after an Execute event its `end:` marker may come (microseconds)
CONTROL_OPS = frozenset({"while", "conditional", "call", "async-start", "async-done"})


def forward_matmuls(fn: Callable, *args) -> tuple[collections.Counter, collections.Counter]:
    """Counters of `fn`'s forward matmul shapes -> times run, from its jaxpr (scanned bodies count
    `length` times): the non-batched ones as (M, K, N), the batched ones (attention's blocks) as
    (Z, M, K, N), Z the product of the batch axes. The float32 BLAS kernel's calls count as the
    batched dots they replace (uncounted, the LLP pages' attention blocks were missing)."""
    shapes: collections.Counter = collections.Counter()
    batched: collections.Counter = collections.Counter()

    def walk(jaxpr, times: int) -> None:
        for eqn in jaxpr.eqns:
            if eqn.primitive.name == "dot_general":
                (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
                lhs, rhs = eqn.invars[0].aval.shape, eqn.invars[1].aval.shape
                k = math.prod(lhs[i] for i in lc)
                z = math.prod(lhs[i] for i in lb)
                n = math.prod(d for i, d in enumerate(rhs) if i not in (*rc, *rb))
                m = math.prod(eqn.outvars[0].aval.shape) // (z * n)
                if lb:
                    batched[(z, m, k, n)] += times
                else:
                    shapes[(m, k, n)] += times
            elif eqn.primitive.name == "ffi_call" and eqn.params["target_name"] == blas.TARGET:
                # The float32 BLAS kernel's batched matmul (attention's blocks on CPU).
                z, m, n = eqn.outvars[0].aval.shape
                a = eqn.invars[0].aval.shape
                k = a[1] if dict(eqn.params["attributes"])["transpose_a"] else a[2]
                batched[(z, m, k, n)] += times
            inner = (
                times * int(eqn.params.get("length", 1)) if eqn.primitive.name == "scan" else times
            )
            for value in eqn.params.values():
                for sub in value if isinstance(value, (tuple, list)) else (value,):
                    if isinstance(sub, jcore.ClosedJaxpr):
                        walk(sub.jaxpr, inner)
                    elif isinstance(sub, jcore.Jaxpr):
                        walk(sub, inner)

    walk(jax.make_jaxpr(fn)(*args).jaxpr, 1)
    return shapes, batched


def matmul_flops(shapes: collections.Counter) -> float:
    """FLOPs of a Counter of (M, K, N) or (Z, M, K, N) shapes -> times run."""
    return sum(2.0 * math.prod(shape) * times for shape, times in shapes.items())


def _rate(run: Callable[[], object], flops: float, min_s: float) -> float:
    run()  # warm-up
    best, spent = math.inf, 0.0
    while spent < min_s:
        t = time.perf_counter()
        run()
        dt = time.perf_counter() - t
        best, spent = min(best, dt), spent + dt
    return flops / best


def matmul_peak(shapes: collections.Counter, batched: collections.Counter | None = None,
                min_s: float = 0.5, bf16: bool = False) -> dict:  # fmt: skip
    """GFLOP/s of numpy and of XLA on each shape (best of repeated runs; a batched shape as
    contiguous [Z, M, K] @ [Z, K, N]), and their FLOP-weighted rates over this mix (`mix_peak`):
    `{lib}_gflops` over the non-batched shapes, `{lib}_all_gflops` over all of them. `bf16`
    adds lib 'xla_bf16': XLA's dot of bfloat16 operands accumulated in float32, the form the
    bfloat16 step's matmuls take on a CPU with bfloat16 units (a float32 peak would flatter it:
    such a CPU multiplies bfloat16 about twice as fast)."""
    batched = batched or collections.Counter()
    rows = []
    rng = np.random.default_rng(0)
    mm = jax.jit(jnp.matmul)
    mm_bf16 = jax.jit(functools.partial(jnp.matmul, preferred_element_type=jnp.float32))
    for shape, times in [*sorted(shapes.items()), *sorted(batched.items())]:
        *z, m, k, n = shape
        a = rng.standard_normal((*z, m, k), np.float32)
        b = rng.standard_normal((*z, k, n), np.float32)
        flops = 2.0 * math.prod(shape)
        ja, jb = jnp.asarray(a), jnp.asarray(b)
        rates = {
            "numpy": _rate(lambda: np.matmul(a, b), flops, min_s),
            "xla": _rate(lambda: mm(ja, jb).block_until_ready(), flops, min_s),
        }
        if bf16:
            ha, hb = ja.astype(jnp.bfloat16), jb.astype(jnp.bfloat16)
            rates["xla_bf16"] = _rate(lambda: mm_bf16(ha, hb).block_until_ready(), flops, min_s)
        rows.append({"shape": list(shape), "times": times,
                     **{f"{lib}_gflops": r / 1e9 for lib, r in rates.items()}})  # fmt: skip
    peak = {"shapes": rows}
    return {**peak, **mix_peak(peak, shapes, batched)}


def mix_peak(peak: dict, shapes: collections.Counter, batched: collections.Counter) -> dict:
    """FLOP-weighted rates (total FLOPs / total time at each shape's rate) of one mix of shapes,
    from the per-shape rates of a `peak` measured on a superset of them (several variants'
    shapes timed once): `{lib}_gflops` over `shapes`, `{lib}_all_gflops` over both counters,
    for each lib the peak measured."""
    rates = {tuple(r["shape"]): r for r in peak["shapes"]}
    libs = [lib for lib in ("numpy", "xla", "xla_bf16")
            if all(f"{lib}_gflops" in r for r in peak["shapes"])]  # fmt: skip
    out = {}
    for lib in libs:
        for mix, counters in (("", (shapes,)), ("_all", (shapes, batched))):
            weighted = [(2.0 * math.prod(s) * t, rates[s][f"{lib}_gflops"])
                        for c in counters for s, t in c.items()]  # fmt: skip
            secs = sum(f / rate for f, rate in weighted)
            if secs:
                out[f"{lib}{mix}_gflops"] = sum(f for f, _ in weighted) / secs
    return out


_INSTR = re.compile(r"^\s*(?:ROOT )?%?([\w.\-]+) = \S+.*? ([\w\-]+)\(")
_COMP = re.compile(r"^%?([\w.\-]+) .*\{\s*$")
_CALLS = re.compile(r"calls=%?([\w.\-]+)")
_TARGET = re.compile(r'custom_call_target="([^"]+)"')


def classify_hlo(hlo_text: str) -> dict[str, str]:
    """Instruction name -> 'matmul' | 'movement' | 'elementwise' | 'control', from HLO text."""
    ops: dict[str, list[str]] = {}  # computation -> opcodes (and 'calls:<comp>')
    instrs: dict[str, tuple[str, str | None]] = {}
    current = None
    for line in hlo_text.splitlines():
        if (m := _COMP.match(line)) and "=" not in line.split("{")[0]:
            current = m.group(1)
            ops[current] = []
            continue
        if current and (m := _INSTR.match(line)):
            name, op = m.group(1), m.group(2)
            if op == "custom-call" and (target := _TARGET.search(line)):
                op = target.group(1)  # a kernel is what it computes: llp_batched_matmul_f32
            call = _CALLS.search(line)
            ops[current].append(op)
            if call:
                ops[current].append("calls:" + call.group(1))
            instrs[name] = (op, call.group(1) if call else None)

    def kinds(comp: str, seen=()) -> set[str]:
        out = set()
        for op in ops.get(comp, ()):
            if op.startswith("calls:"):
                if op[6:] not in seen:
                    out |= kinds(op[6:], (*seen, comp))
            else:
                out.add(op)
        return out

    def category(opset: set[str]) -> str:
        if opset & MATMUL_OPS or any("matmul" in o or "gemm" in o for o in opset):
            return "matmul"
        if opset <= MOVEMENT_OPS:
            return "movement"
        return "elementwise"

    out = {}
    for name, (op, called) in instrs.items():
        if op in CONTROL_OPS:
            out[name] = "control"
        elif op in ("fusion", "custom-call") and called:
            out[name] = category(kinds(called) - {"parameter"} or {"copy"})
        else:
            out[name] = category({op})
    return out


def op_spans(
    events: list[dict], async_ops: frozenset[str] = frozenset()
) -> list[tuple[str, float]]:
    """(op name, milliseconds) of every op run in a Perfetto trace of XLA:CPU: each op's own
    event, except the `async_ops` (`eigen_dots`), which run past theirs.

    Why: XLA:CPU leaves a plain dot (a weight gradient x^T @ dy, say) to Eigen, asynchronously.
    Its event is the ~0.1 ms launch while its pool tasks run on for tens of ms beside the next
    ops: counted by its event, the LLP step's ~47 GFLOP of weight-gradient dots were a few ms
    of op time. When such a dot completes, the thread that finished it runs the ops that became
    ready inside a `ThunkExecutor::Execute` event and then marks the dot done (`end: <op>`). So
    an asynchronous op ends where the first Execute event closed by its marker (ending within
    `MARKER_US` of it, starting after the launch) begins, or at the marker if there is none.
    Other ops' markers are not used: the executor may emit them long after the op (a 0.1 ms
    slice's came 68 ms later, once another thread had run a chain of its successors). Repeated
    ops (a loop body's) pair each launch with the first marker of that name after it."""
    starts: dict[str, list[dict]] = collections.defaultdict(list)
    ends: dict[str, list[dict]] = collections.defaultdict(list)
    executes: dict[object, list[tuple[float, float]]] = collections.defaultdict(list)
    for e in events:
        if e.get("ph") != "X" or "name" not in e:
            continue
        if e["name"].startswith("end: "):
            ends[e["name"][5:]].append(e)
        elif e["name"] == "ThunkExecutor::Execute":
            executes[e.get("tid")].append((e["ts"], e["ts"] + e.get("dur", 0)))
        else:
            starts[e["name"]].append(e)

    def completed(marker: dict, launched: float) -> float:
        at = marker["ts"]
        closed = [s for s, t in executes.get(marker.get("tid"), ())
                  if launched <= s <= at <= t + MARKER_US]  # fmt: skip
        return min(closed, default=at)

    spans = []
    for name, opened in starts.items():
        closes, i = sorted(ends.get(name, ()), key=lambda m: m["ts"]), 0
        for e in sorted(opened, key=lambda e: e["ts"]):
            end = e["ts"] + e.get("dur", 0)
            if name in async_ops:
                while i < len(closes) and closes[i]["ts"] < e["ts"]:
                    i += 1
                if i < len(closes):
                    end, i = max(end, completed(closes[i], end)), i + 1
            spans.append((name, (end - e["ts"]) / 1e3))
    return spans


def eigen_dots(hlo_text: str) -> frozenset[str]:
    """Names of the dot and convolution instructions. Those outside a fusion are thunks of their
    own, which XLA:CPU runs on Eigen, asynchronously (a fusion holding a dot goes to YNNPACK and
    returns when done); the names inside fusions never appear in a trace."""
    return frozenset(
        m.group(1) for line in hlo_text.splitlines()
        if (m := _INSTR.match(line)) and m.group(2) in MATMUL_OPS
    )  # fmt: skip


def profile_breakdown(run_once: Callable[[], object], hlo_text: str) -> dict:
    """Milliseconds per category of one profiled call of `run_once`, and the wall time."""
    categories = classify_hlo(hlo_text)
    with tempfile.TemporaryDirectory() as trace_dir:
        jax.profiler.start_trace(trace_dir, create_perfetto_trace=True)
        start = time.perf_counter()
        try:
            jax.block_until_ready(run_once())
            wall = time.perf_counter() - start
        finally:
            jax.profiler.stop_trace()
        (path,) = glob.glob(f"{trace_dir}/**/perfetto_trace.json.gz", recursive=True)
        with gzip.open(path) as f:
            trace = json.load(f)
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    ms: collections.Counter = collections.Counter()
    top: collections.Counter = collections.Counter()
    for name, op_ms in op_spans(events, eigen_dots(hlo_text)):
        kind = categories.get(name)
        if kind and kind != "control":
            ms[kind] += op_ms
            top[(kind, name)] += op_ms
    return {
        "wall_ms": wall * 1e3,
        **{k: ms.get(k, 0.0) for k in ("matmul", "elementwise", "movement")},  # fmt: skip
        "top": [{"kind": k, "op": n, "ms": v} for (k, n), v in top.most_common(8)],
    }
