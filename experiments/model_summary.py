"""`python -m experiments.model_summary` from a checkout: the absl launcher of llp_jax/cli/model_summary.py
(installed as the `llp-model-summary` console script); see that module for its flags."""

from llp_jax.cli import model_summary as _launcher

__doc__ = _launcher.__doc__  # absl's --help shows the launcher's own usage

if __name__ == "__main__":
    _launcher.entry()
