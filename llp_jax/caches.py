"""Where llp_jax keeps what it can rebuild: SentencePiece models trained on a corpus, the
compiled CPU BLAS kernel, JAX's compilation cache (and matplotlib's config, where its own
folder cannot be written).

The usual place is `$XDG_CACHE_HOME/llp_jax` or `~/.cache/llp_jax`. A container often runs under
a user whose home cannot be written (`docker run -u 1000`, a random Kubernetes / OpenShift UID
with HOME=/): there a SentencePiece run ended in `error: /.cache: permission denied` and the BLAS
kernel was off. A cache is never a reason to stop, so `folder` falls back to a private folder
under the system's temporary folder, and where none can be had the caller goes on without one.

The fallback is created with mode 0700 and used only if this user owns it and no one else may
write it: the kernel cache holds a shared library the process loads.
"""

from __future__ import annotations

import logging
import os
import stat
import tempfile

_log = logging.getLogger(__name__)
_warned: set[str] = set()


def home_root() -> str:
    """`$XDG_CACHE_HOME/llp_jax`, else `~/.cache/llp_jax`."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "llp_jax")


def fallback_root() -> str:
    """The private folder under the temporary folder, one per user."""
    return os.path.join(tempfile.gettempdir(), f"llp_jax-{os.getuid()}")


def folder(kind: str, preferred: str = "") -> str | None:
    """A writable folder for the cache `kind` ('sentencepiece', 'kernels', ...): `preferred` (a
    configured location) or `<home_root>/<kind>`, else `<fallback_root>/<kind>` (said once in
    a warning), else None: go on without a cache."""
    first = os.path.expanduser(preferred) if preferred else os.path.join(home_root(), kind)
    if _usable(first):
        return first
    root = fallback_root()
    if _private(root) and _usable(os.path.join(root, kind)):
        _warn_once(root, f"cache folder {os.path.dirname(first)} cannot be written; caches go "
                         f"to {root}")  # fmt: skip
        return os.path.join(root, kind)
    _warn_once(kind, f"cache folder {first} cannot be written (nor {root}); going on without a "
                     f"{kind} cache")  # fmt: skip
    return None


def matplotlib_config() -> None:
    """Points MPLCONFIGDIR at `folder('matplotlib')` where matplotlib's own config folder cannot
    be written (it would make a fresh temporary one in every process, with a warning of five
    lines); left alone where it can, or where MPLCONFIGDIR is set. Call before matplotlib
    loads."""
    if "MPLCONFIGDIR" in os.environ:
        return
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    if not _usable(os.path.join(base, "matplotlib")):
        found = folder("matplotlib")
        if found:
            os.environ["MPLCONFIGDIR"] = found


def _usable(path: str) -> bool:
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:
        return False
    return os.path.isdir(path) and os.access(path, os.W_OK | os.X_OK)


def _private(root: str) -> bool:
    """`root` exists or is made with mode 0700, owned by this user, writable by no one else."""
    try:
        os.makedirs(root, mode=0o700, exist_ok=True)
        info = os.lstat(root)
    except OSError:
        return False
    shared = info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not shared


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        _log.warning(message)
