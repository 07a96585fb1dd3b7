#!/usr/bin/env bash
# The README's main job: set up ./.venv if needed, then train a tiny LLP on the embedded Jane
# Austen corpus, evaluate it, sample from it and write a loss plot (all on CPU; see README.md).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
exec .venv/bin/python -m experiments.train --config=llp_jax/configs/demo.py --workdir="${WORKDIR:-workdir/demo}" "$@"
