"""What every absl main shares: no stray arguments, quiet logs, one-line errors (bad flags, a
config file that fails to load, bad data, storage faults, Ctrl-C, a closed pipe), and config
paths that work from a checkout and from an installed package alike."""

import contextlib
import errno
import logging as pylogging
import os
import shlex
import sys

from absl import app, flags, logging

from llp_jax import caches, paths
from llp_jax.cli import (
    background_errors,
    flag_parsing,
    host_allocator,
    log_lines,
    signals,
    streams,
)
from llp_jax.errors import STORAGE_ERRNOS, LLPError

# Storage faults a user can cause and fix (a path, a permission, a full disk): one line each.
USER_ERRNOS = STORAGE_ERRNOS | {errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG,
                               errno.EIO, errno.EEXIST}  # fmt: skip


class UsageError(LLPError):
    """A bad combination of flags."""


def run(main) -> None:
    """`app.run(main)` whose flag errors are one line: a config file that fails to load (a bad
    `--config=file.py:arg`, a ConfigError from the preset) otherwise prints its whole traceback.
    Ctrl-C or SIGTERM outside the training loop (which saves first) exits 130 or 143 with one line
    (signals.py); a closed
    stdout (`| head`) ends the program quietly. On CPU hosts the program first re-executes itself
    once with glibc's malloc tuned (host_allocator.py); the launchers have done so already, before
    their imports (start.py), so this only restarts an `entry()` called some other way. The
    standard streams are made safe first (streams.py): closed, unencodable or failing, they cost
    no work."""
    streams.standard_streams()
    host_allocator.ensure()
    streams.encodable_output()
    _, err = streams.guard_output()
    one_log_handler()
    caches.matplotlib_config()
    signals.interrupt_on_signals()

    def guarded(argv):
        with one_line_errors():  # a ConfigError or other LLPError from any program's body
            result = main(argv)
        lost = streams.lost_output()
        if lost:
            if err.lost:  # stderr is gone: the line goes where the rest of the output went
                print(lost)
            sys.exit(1 if err.lost else lost)
        return result

    try:
        app.run(guarded, flags_parser=flag_parsing.parse)
    except KeyboardInterrupt as e:
        streams.quiet_stdout()
        trains = main.__module__.rsplit(".", 1)[-1] in ("train", "compare")
        kept = "; checkpoints already written are intact" if trains else ""
        terminated = isinstance(e, signals.Terminated)
        how = f"stopped by {e}" if terminated else "interrupted (Ctrl-C)"
        sys.stderr.write(f"error: {how}{kept}\n")
        # Not sys.exit: the interpreter's exit would tear down the XLA client, which waits for
        # the computation under way (a long sample is one call) before the process may end.
        pylogging.shutdown()
        sys.stderr.flush()
        os._exit(128 + e.signum if terminated else 130)
    except BrokenPipeError:
        streams.quiet_stdout()
        sys.exit(141)  # what a shell reports for a process ended by SIGPIPE


def command_line(program: str) -> str:
    """How this run was started, for a results page: `python -m experiments.<program>` and the
    arguments quoted as a shell needs them (a label such as 'llp (bf16)' stays one argument)."""
    return f"python -m experiments.{program} {shlex.join(sys.argv[1:])}".strip()


# Sizes and counts become array dimensions, positions and int32 counters: past 2**31 - 1 each
# was a traceback from numpy (array too big) or jit's lowering, found by the first array built.
MAX_COUNT = 2**31 - 1


def count_flag(name: str, default: int | None, help: str, *, lower_bound: int | None = 1):
    """An integer flag for a size or a count: in [lower_bound, 2**31 - 1] at parse time (None:
    no lower bound, left to the program's own check and message)."""
    holder = flags.DEFINE_integer(name, default, help, lower_bound=lower_bound)
    flags.register_validator(name, lambda value: value is None or value <= MAX_COUNT,
                             f"--{name} must be below 2**31 (sizes and counts are int32)")  # fmt: skip
    return holder


def int_list_flag(name: str, default, help: str, *, minimum: int = 1, count: int | None = None):
    """A comma-separated list of integers in [`minimum`, 2**31 - 1] (exactly `count` of them when
    given); anything else is a one-line flag error at parse time."""
    holder = flags.DEFINE_list(name, [str(v) for v in default], help)

    def check(values) -> bool:
        try:
            ints = [int(v) for v in values]
        except (TypeError, ValueError):
            return False
        return all(minimum <= v <= MAX_COUNT for v in ints) and (
            count is None or len(ints) == count
        )

    many = f"{count} " if count else ""
    flags.register_validator(name, check, f"--{name} must be {many}comma-separated integers "
                                          f"from {minimum} to 2**31 - 1")  # fmt: skip
    return holder


def output_flag(name: str, default: str | None, help: str, *, also: tuple[str, ...] = ()):
    """A file path the program writes at the end: refused at parse time, before the work, when
    no file can be written there (a folder, a file for a parent folder, a read-only place).
    `also`: extensions of files written beside it ('.json', '.png')."""
    holder = flags.DEFINE_string(name, default, help)

    def check(value) -> bool:
        for path in [value] + [os.path.splitext(value)[0] + ext for ext in also] if value else []:
            why = paths.unwritable(path)
            if why is not None:  # absl prefixes 'flag --name=value: '
                beside = f"{path} (written beside it) " if path != value else ""
                raise flags.ValidationError(f"{beside}{why}")
        return True

    flags.register_validator(name, check)
    return holder


def compilation_cache_flag():
    """--compilation_cache for the programs that compile many models (benchmark, compare)."""
    return flags.DEFINE_string(
        "compilation_cache",
        "auto",
        "JAX compilation cache folder ('auto': ~/.cache/llp_jax/"
        "jax_cache, or a private temporary folder where the home cannot be written; '' = off).",
    )


def use_compilation_cache(folder: str) -> None:
    """JAX's persistent compilation cache in `folder`, also for the processes this one starts
    (through the environment); '' turns it off, here and in them, even where the caller's
    JAX_COMPILATION_CACHE_DIR names one (JAX would otherwise use that)."""
    import jax

    if folder == "auto":  # per entry, JAX warns of every cache read and write that fails
        folder = caches.folder("jax_cache") or ""
    if folder:
        folder = os.environ["JAX_COMPILATION_CACHE_DIR"] = os.path.expanduser(folder)
        jax.config.update("jax_compilation_cache_dir", folder)
    else:
        os.environ.pop("JAX_COMPILATION_CACHE_DIR", None)
        jax.config.update("jax_enable_compilation_cache", False)


def start(argv, *, devices: bool = True) -> None:
    """Rejects positional arguments and a --config file that could not be read, unless
    --verbosity is given logs at WARNING (Orbax logs every file operation at INFO), and with
    `devices` starts JAX's backend: one line if the platform asked for cannot start. A program
    that must start `jax.distributed` first (train), or needs no device, passes False."""
    if len(argv) > 1:  # e.g. an unquoted value with a space: --prompt=It was
        sys.exit(f"error: unexpected argument(s) {' '.join(map(shlex.quote, argv[1:]))}: every "
                 "setting is a --flag=value; quote a value that has spaces (--prompt='It was')")  # fmt: skip
    if "config" in flags.FLAGS and flags.FLAGS["config"].present:
        try:
            # config_flags defers an unreadable file to the first attribute access.
            value = flags.FLAGS["config"].value
            _ = value.keys
        except OSError as e:
            sys.exit(f"error: --config: {flag_parsing.last_line(e)}")
        except AttributeError:
            kind = type(value).__name__
            sys.exit(
                f"error: --config: get_config() returned {'an' if kind[0] in 'aeiou' else 'a'} "
                f"{kind}, not a ConfigDict with model, data, train and mesh sections"
            )
    one_log_handler()  # again: a module imported since may have logged through absl
    log_lines.plain_warnings()
    background_errors.quiet()
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
        # gcsfs warns on every gs:// access without default credentials (emulators, anonymous
        # buckets) that it cannot look up the bucket type; it then works as it should.
        pylogging.getLogger("gcsfs").addFilter(
            lambda record: "Could not determine bucket type" not in record.getMessage()
        )
    if devices:
        from llp_jax import backend  # noqa: PLC0415

        with one_line_errors():
            backend.check()


def one_log_handler() -> None:
    """Each log record printed once. absl's logging functions, called before app.run sets absl
    up (Orbax logs as it is imported), call `logging.basicConfig()`: the root logger got a plain
    stderr handler beside absl's, and every warning (a damaged checkpoint set aside, invalid
    UTF-8 replaced) was printed twice, first as `WARNING:llp_jax.data.text_bytes:...`. That
    handler goes; a warning before app.run prints as its bare message (logging's last resort)."""
    for handler in list(pylogging.root.handlers):
        if type(handler) is pylogging.StreamHandler:
            pylogging.root.removeHandler(handler)


@contextlib.contextmanager
def one_line_errors():
    """Bad flags, config, data or checkpoint, a diverged run, a path that cannot be read or
    written, running out of memory: `error: ...`, exit 1, no traceback."""
    try:
        yield
    except LLPError as e:
        sys.exit(f"error: {e}")
    except OSError as e:
        if e.errno not in USER_ERRNOS:
            raise
        where = f"{e.filename}: " if e.filename else ""
        what = (paths.FOLDER_IN_THE_WAY if e.errno == errno.EISDIR else
                (e.strerror or str(e)).lower())  # fmt: skip
        sys.exit(f"error: {where}{what}")
    except Exception as e:  # running out of memory where no library call named the fix
        from llp_jax.backend import out_of_memory  # noqa: PLC0415

        memory = out_of_memory(e)
        if memory is None:
            raise
        sys.exit(f"error: out of memory ({memory}); use smaller batches or a smaller model")
