#!/usr/bin/env bash
# The README's test command: set up ./.venv if needed, then run the whole suite on CPU.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
export JAX_PLATFORMS=cpu
# glibc's default malloc: the suite is mostly XLA compilation, which the launchers' tuned malloc
# (llp_jax/cli/host_allocator.py: one arena) slows ~1.6x; the CLIs it starts keep it too.
export LLP_JAX_HOST_MALLOC=system
# Two worker processes (pytest-xdist; at most the CPU count, LLP_JAX_TEST_WORKERS overrides): most
# of the suite's time is single-threaded XLA compilation and subprocesses starting the CLIs, so a
# second worker fills the second core. Each file runs whole in one worker (its module fixtures
# once), handed out in collection order (tests/conftest.py puts files holding a slow test first;
# xdist's default order, most tests first, left the long files to the end); `-n 0` after the
# command runs everything in this process.
workers=${LLP_JAX_TEST_WORKERS:-$(( $(nproc) < 2 ? $(nproc) : 2 ))}
exec .venv/bin/python -m pytest -q -n "$workers" --dist loadfile --no-loadscope-reorder tests "$@"
