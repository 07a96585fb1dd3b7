"""`python -m experiments.train` from a checkout: the absl launcher of llp_jax/cli/train.py
(installed as the `llp-train` console script); see that module for its flags."""

from llp_jax.cli import train as _launcher

__doc__ = _launcher.__doc__  # absl's --help shows the launcher's own usage

if __name__ == "__main__":
    _launcher.entry()
