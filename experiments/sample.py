"""`python -m experiments.sample` from a checkout: the absl launcher of llp_jax/cli/sample.py
(installed as the `llp-sample` console script); see that module for its flags."""

from llp_jax.cli import sample as _launcher

__doc__ = _launcher.__doc__  # absl's --help shows the launcher's own usage

if __name__ == "__main__":
    _launcher.entry()
