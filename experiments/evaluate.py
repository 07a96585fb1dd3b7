"""`python -m experiments.evaluate` from a checkout: the absl launcher of llp_jax/cli/evaluate.py
(installed as the `llp-evaluate` console script); see that module for its flags."""

from llp_jax.cli import evaluate as _launcher

__doc__ = _launcher.__doc__  # absl's --help shows the launcher's own usage

if __name__ == "__main__":
    _launcher.entry()
