#!/usr/bin/env bash
# The accelerator check (GPU or TPU machine; < 5 min): cuDNN/splash attention == XLA for every
# model, and the bf16 train step of the paper's 172M LLP with tokens/s and MFU, as one table in
# experiments/results/device_check.md. Uses the machine's own jax (GPU: jax[cuda12]; TPU:
# jax[tpu]) with llp_jax's other dependencies; nothing here is needed on CPU.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
"$PY" -c "import jax; print('jax', jax.__version__, 'on', jax.default_backend(), jax.devices())"
exec "$PY" tools/device_check.py "$@"
