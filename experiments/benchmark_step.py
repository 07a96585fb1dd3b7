"""`python -m experiments.benchmark_step` from a checkout: the absl launcher of llp_jax/cli/benchmark_step.py
(installed as the `llp-benchmark-step` console script); see that module for its flags."""

from llp_jax.cli import benchmark_step as _launcher

__doc__ = _launcher.__doc__  # absl's --help shows the launcher's own usage

if __name__ == "__main__":
    _launcher.entry()
