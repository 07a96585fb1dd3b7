"""`python -m experiments.convert` from a checkout: the absl launcher of llp_jax/cli/convert.py
(installed as the `llp-convert` console script); see that module for its flags."""

from llp_jax.cli import convert as _launcher

__doc__ = _launcher.__doc__  # absl's --help shows the launcher's own usage

if __name__ == "__main__":
    _launcher.entry()
