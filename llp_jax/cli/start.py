"""How every launcher starts (`python -m experiments.<name>` and the `llp-*` console scripts):
the host-allocator restart first, then the launcher's own module.

Why a module of its own: `host_allocator.ensure()` restarts the process with `execve`, which
throws away everything imported so far. Called from a launcher module it ran after jax, flax,
orbax and the rest were loaded (~1.9 s on the 2-core EPYC), so each launch imported them twice;
from here it runs before anything heavy is imported (this module and `host_allocator` import
only the standard library). tests/experiments/test_host_allocator.py checks that jax is
imported once per launch.
"""

from __future__ import annotations

import functools
import importlib
import sys

from llp_jax.cli import host_allocator, streams


def launch(name: str) -> None:
    """Restarts with the tuned malloc if it applies, then runs `llp_jax.cli.<name>.entry()`."""
    streams.standard_streams()  # before anything opens a file that could take descriptor 1 or 2
    host_allocator.ensure()
    launcher = importlib.import_module(f"llp_jax.cli.{name}")
    main = sys.modules.get("__main__")
    if main is not None:
        main.__doc__ = launcher.__doc__  # absl's --help prints the main module's docstring
    _list_own_flags_in_help()
    launcher.entry()


def _list_own_flags_in_help() -> None:
    """`--help` / `--helpshort` list the flags of the main module (absl names it by sys.argv[0]),
    and a launcher's are defined in llp_jax/cli/, so help listed none (and --helpfull buried
    them among grain's, orbax's and absl's). Registering llp_jax's flags as the main module's
    key flags lists exactly the tool's: each process imports one launcher."""
    from absl import flags

    for name, flag in flags.FLAGS._flags().items():
        module = flags.FLAGS.find_module_defining_flag(name, "")
        if name == flag.name and module.startswith("llp_jax."):
            flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)


# The console scripts (pyproject.toml [project.scripts]): `start.train()` runs `launch("train")`.
LAUNCHERS = ("train", "evaluate", "sample", "convert", "prepare_data", "compare", "benchmark",
             "benchmark_step", "benchmark_decode", "benchmark_sequence_parallel", "model_summary")  # fmt: skip
globals().update({name: functools.partial(launch, name) for name in LAUNCHERS})
