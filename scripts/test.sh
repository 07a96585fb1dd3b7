#!/usr/bin/env bash
# The README's test command: set up ./.venv if needed, then run the whole suite on CPU.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
export JAX_PLATFORMS=cpu
# glibc malloc tuned as the launchers tune it (llp_jax/cli/host_allocator.py, TUNED; a test keeps
# the two equal): the suite and the CLIs it starts run as users' launches do, without re-exec.
export MALLOC_ARENA_MAX=1 MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=17179869184 \
  MALLOC_TOP_PAD_=1073741824
exec .venv/bin/python -m pytest -q tests "$@"
