#!/usr/bin/env bash
# The README's test command: set up ./.venv if needed, then run the whole suite on CPU.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
export JAX_PLATFORMS=cpu
exec .venv/bin/python -m pytest -q tests "$@"
