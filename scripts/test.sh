#!/usr/bin/env bash
# The README's test command: set up ./.venv if needed, then run the whole suite on CPU.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
export JAX_PLATFORMS=cpu
# glibc's default malloc: the suite is mostly XLA compilation, which the launchers' tuned malloc
# (llp_jax/cli/host_allocator.py: one arena) slows ~1.6x; the CLIs it starts keep it too.
export LLP_JAX_HOST_MALLOC=system
exec .venv/bin/python -m pytest -q tests "$@"
