"""One of our step benchmark's variants, timed one step per request, in its own process — so that
it can run under XLA flags of its own (XLA reads `XLA_FLAGS` once, when the backend starts).

  XLA_FLAGS=... python tools/our_step.py --variant=llp_faithful --batch=8

Serves the line protocol of tools/authors_step.py: prints `ready <flags>` once compiled and
warmed up; each line `step` runs one train step and answers `<seconds> <loss>`; end of input
stops it. The step is `llp_jax.studies.step_benchmark`'s, at its default config.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", required=True)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq_len", type=int, default=1024)
    parser.add_argument("--segments", type=int, default=4)
    args = parser.parse_args()
    from llp_jax.studies import step_benchmark

    spec = step_benchmark.StepSpec(batch=args.batch, seq_len=args.seq_len,
                                   segments=args.segments)  # fmt: skip
    ours = step_benchmark.Ours(spec, args.variant)
    print(f"ready flags={os.environ.get('XLA_FLAGS', '')!r}", flush=True)
    for line in sys.stdin:
        if line.split()[:1] == ["step"]:
            start = time.perf_counter()
            loss = float(jax.block_until_ready(ours.step()))
            print(f"{time.perf_counter() - start:.6f} {loss:.6f}", flush=True)


if __name__ == "__main__":
    main()
