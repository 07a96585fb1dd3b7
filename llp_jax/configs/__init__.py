"""Experiment config files: each defines `get_config(arg)` returning a ConfigDict with model,
data, train and mesh sections, what `--config=llp_jax/configs/tiny.py:llp` loads on the command
line. `load(spec)` is the same from Python: `llp_jax.configs.load("llp_jax/configs/tiny.py:llp")`.
"""

from __future__ import annotations

import importlib.util
import os

from llp_jax.errors import ConfigError

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def load(spec: str):
    """The ConfigDict of `path.py[:arg]`, as `--config=` gives it: `get_config(arg)`, or
    `get_config()` without an argument. `llp_jax/configs/X.py` means the installed package's
    file where the checkout's is not there (a run from another folder)."""
    path, _, arg = str(spec).partition(":")
    if not os.path.exists(path) and path.startswith("llp_jax/configs/"):
        path = os.path.join(PACKAGE_DIR, path[len("llp_jax/configs/") :])
    if not os.path.isfile(path):
        raise ConfigError(f"config file {path} does not exist; e.g. llp_jax/configs/tiny.py:llp")
    module_spec = importlib.util.spec_from_file_location("llp_jax_config_file", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"{path} defines no get_config(); a config file needs "
                          "`def get_config(arg=None)` returning a ConfigDict")  # fmt: skip
    return module.get_config(arg) if arg else module.get_config()
