"""One of our step benchmark's variants, timed one step per request, in its own process — so that
it can run under XLA flags of its own (XLA reads `XLA_FLAGS` once, when the backend starts).

  XLA_FLAGS=... python tools/our_step.py --variant=llp_faithful [--spec='{"batch": 8}']

Serves the line protocol of tools/authors_step.py: prints `ready <flags>` once compiled and
warmed up; each line `step` runs one train step and answers `<seconds> <loss>`; end of input
stops it. The step is `llp_jax.studies.step_benchmark`'s, at the `StepSpec` given as JSON (its
fields; the rest default), as `step_workers.FlagsWorker` passes it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", required=True)
    parser.add_argument("--spec", default="{}", help="StepSpec fields as a JSON object")
    args = parser.parse_args()
    from llp_jax.studies import step_benchmark

    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(args.spec).items()}
    spec = step_benchmark.StepSpec(**fields)
    ours = step_benchmark.Ours(spec, args.variant)
    print(f"ready flags={os.environ.get('XLA_FLAGS', '')!r}", flush=True)
    for line in sys.stdin:
        if line.split()[:1] == ["step"]:
            start = time.perf_counter()
            loss = float(jax.block_until_ready(ours.step()))
            print(f"{time.perf_counter() - start:.6f} {loss:.6f}", flush=True)


if __name__ == "__main__":
    main()
