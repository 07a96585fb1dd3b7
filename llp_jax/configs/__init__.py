"""Experiment config files: each defines `get_config(arg)` returning a ConfigDict with model,
data, train and mesh sections, what `--config=llp_jax/configs/tiny.py:llp` loads on the command
line. `load(spec)` is the same from Python: `llp_jax.configs.load("llp_jax/configs/tiny.py:llp")`.
"""

from __future__ import annotations

import importlib.util
import os
import traceback

from llp_jax.errors import ConfigError

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def load(spec: str):
    """The ConfigDict of `path.py[:arg]`, as `--config=` gives it: `get_config(arg)`, or
    `get_config()` without an argument. `llp_jax/configs/X.py` means the installed package's
    file where the checkout's is not there (a run from another folder)."""
    path, _, arg = str(spec).partition(":")
    path = resolve_path(path)
    if not os.path.isfile(path):
        raise ConfigError(f"config file {path} does not exist; e.g. llp_jax/configs/tiny.py:llp")
    module_spec = importlib.util.spec_from_file_location("llp_jax_config_file", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"{path} defines no get_config(); a config file needs "
                          "`def get_config(arg=None)` returning a ConfigDict")  # fmt: skip
    try:
        return module.get_config(arg) if arg else module.get_config()
    except TypeError as e:
        if line := arity_error(e, path, arg):
            raise ConfigError(line) from None
        raise


def resolve_path(path: str) -> str:
    """`llp_jax/configs/X.py` is the checkout's file, or the installed package's where the
    checkout's is not there; any other path is itself."""
    if not os.path.exists(path) and path.startswith("llp_jax/configs/"):
        return os.path.join(PACKAGE_DIR, path[len("llp_jax/configs/") :])
    return path


def arity_error(error: TypeError, path: str, arg: str) -> str | None:
    """The line for a config file's get_config() called with an argument it does not take, or
    without one it needs (`demo.py:foo`, `from_workdir.py`); None for a TypeError raised inside
    it. Python's own message names neither the file nor the ':arg' spelling that fixes it."""
    frames = traceback.extract_tb(error.__traceback__)
    inside = [f for f in frames if os.path.abspath(f.filename) == os.path.abspath(path)]
    if inside or "get_config()" not in str(error):
        return None
    if arg:
        return (f"--config={path}:{arg}: its get_config() takes no argument; give "
                f"--config={path} without ':{arg}'")  # fmt: skip
    return (f"--config={path}: its get_config() needs an argument, given after ':' "
            f"(--config={path}:ARG; see the file's docstring)")  # fmt: skip
