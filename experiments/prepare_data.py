"""`python -m experiments.prepare_data` from a checkout: the absl launcher of
llp_jax/cli/prepare_data.py (installed as the `llp-prepare-data` console script); see that module
for its flags."""

from llp_jax.cli import prepare_data as _launcher

__doc__ = _launcher.__doc__  # absl's --help shows the launcher's own usage

if __name__ == "__main__":
    _launcher.entry()
