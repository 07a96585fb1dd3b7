"""`python -m experiments.prepare_data` from a checkout: the absl launcher of
llp_jax/cli/prepare_data.py (installed as the `llp-prepare-data` console script); see that module
for its flags."""

if __name__ == "__main__":  # llp_jax/cli/start.py: restart first, then import
    from llp_jax.cli import start

    start.launch("prepare_data")
