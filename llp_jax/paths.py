"""Paths that may be local folders or remote URLs (gs://, s3://, any etils.epath path).

Everything a run writes goes through here or through Orbax: local paths are made absolute (Orbax
needs that), URLs stay URLs (never a local folder named 'gs:'). Small files are written whole
and atomically (a temporary file renamed into place locally; an object store's write is atomic
already). Which client a URL needs, and whether its store answers: url_clients.py.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import re
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator
from typing import BinaryIO

from etils import epath

from llp_jax.url_clients import CLIENTS, StorageError, check_client, is_url  # noqa: F401


def resolve(path: str | os.PathLike) -> epath.Path:
    """An absolute local path or the URL itself, as an epath.Path."""
    text = os.fspath(path)
    check_client(text)
    return epath.Path(text if is_url(text) else os.path.abspath(os.path.expanduser(text)))


def join(path: str | os.PathLike, *parts: str) -> str:
    """`os.path.join` that keeps URLs URLs."""
    return os.fspath(resolve(path).joinpath(*parts))


def makedirs(path: str | os.PathLike) -> epath.Path:
    """Creates a folder (a no-op on object stores, where folders are prefixes)."""
    p = resolve(path)
    p.mkdir(parents=True, exist_ok=True)
    return p


def move(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Moves a file or a whole folder to `dst` (its parent is created). Locally a rename; object
    stores have no rename and no empty folders (epath's rename refuses a missing parent), so
    there fsspec copies every object under `src` server-side (GCS rewrite, S3 copy) and then
    deletes them."""
    src_p, dst_p = resolve(src), resolve(dst)
    if not is_url(os.fspath(src_p)):
        dst_p.parent.mkdir(parents=True, exist_ok=True)
        src_p.rename(dst_p)
        return
    import fsspec  # noqa: PLC0415  (remote paths only; gcsfs and friends depend on it)

    fs, src_path = fsspec.core.url_to_fs(os.fspath(src_p))
    _, dst_path = fsspec.core.url_to_fs(os.fspath(dst_p))
    # copy + rm rather than fs.mv: gcsfs's mv first tries GCS's moveTo, which not every server
    # offers (the emulator), and logs a traceback before falling back to exactly this.
    recursive = fs.isdir(src_path)
    fs.copy(src_path, dst_path, recursive=recursive)
    fs.rm(src_path, recursive=recursive)
    # Every client of this store (epath's, Orbax's) keeps its own listing cache, which would
    # still show `src`: Orbax would then try to delete a step folder that is no longer there.
    for client in list(getattr(type(fs), "_cache", {}).values()):
        client.invalidate_cache()


# What a folder where a file belongs (an output flag's, or a workdir file's) is told.
FOLDER_IN_THE_WAY = "is a folder where a file belongs; move it away, or name another file"


def unwritable(path: str | os.PathLike) -> str | None:
    """Why no file can be written at local `path` ('is a folder', a file where a parent folder
    must be, a read-only parent), or None; URLs are not checked (their store says so). Output
    flags are checked with it before a program's work starts, not after it (a benchmark's
    minutes, an evaluation's hour)."""
    text = os.fspath(path)
    if not text or is_url(text):
        return None
    target = os.path.abspath(os.path.expanduser(text))
    if os.path.isdir(target):
        return "is a folder; give a file path"
    parent = _nearest_existing(os.path.dirname(target))
    if not os.path.isdir(parent):
        return f"{parent} is a file, not a folder"
    if not os.access(parent, os.W_OK | os.X_OK):
        if os.statvfs(parent).f_flag & os.ST_RDONLY:
            return f"{parent} is on a read-only file system"
        return f"{parent} is not writable by this user (permission denied)"
    return None


def file_in_the_way(path: str | os.PathLike) -> str | None:
    """What stands where a folder must be: local `path` itself, or the nearest existing path
    above it, when that is a file (or a dangling link); None when nothing does. URLs: None (an
    object store's 'folders' are name prefixes, which an object may share)."""
    text = os.fspath(path)
    if not text or is_url(text):
        return None
    at = _nearest_existing(os.path.abspath(os.path.expanduser(text)))
    return None if os.path.isdir(at) else at


def missing(path: str | os.PathLike) -> str:
    """Why a local path that `os.path.exists` denies cannot be read: 'does not exist', or, when
    a folder above it is one this user may not enter, that folder: such a path may well exist
    (another user's folder, a pytest or /root tree)."""
    at = _nearest_existing(os.path.abspath(os.path.expanduser(os.fspath(path))))
    if os.path.isdir(at) and not os.access(at, os.X_OK):
        return f"cannot be reached: this user may not enter {at} (permission denied)"
    return "does not exist"


def _nearest_existing(absolute: str) -> str:
    while not os.path.lexists(absolute) and os.path.dirname(absolute) != absolute:
        absolute = os.path.dirname(absolute)
    return absolute


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Writes a whole file atomically (`atomic_file`; an object store's write is atomic
    already): readers see the old content or the new, never a part. A failure names `path`,
    never the temporary file beside it."""
    with atomic_file(resolve(path)) as f:
        f.write(data)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A local file open for writing that becomes `path` whole when the block ends without an
    error (a temporary file beside it, renamed into place; removed if the block fails). A
    failure names `path`.

    Not every path names a file to replace: a device, pipe or socket (--out=/dev/null, a FIFO)
    and the stream links (/dev/stdout, /dev/fd/N, /proc/...) are written into, appended to, as
    they are; a rename over them would put a regular file in their place, and run as root
    (Docker, Colab) that replaced the machine's /dev/null. A symbolic link to a file keeps
    pointing at it: the file it names is replaced. A URL's object is written when the block
    ends, from a local temporary file (an object store's write is atomic)."""
    if is_url(os.fspath(path)):  # written whole to a local file, then uploaded in one write
        check_client(os.fspath(path))
        with tempfile.TemporaryFile() as f:
            yield f
            f.seek(0)
            with resolve(path).open("wb") as out:
                shutil.copyfileobj(f, out, _CHUNK)
        return
    target = os.path.abspath(os.path.expanduser(os.fspath(path)))
    stream = _stream_path(target)
    if not stream and os.path.islink(target):
        target = os.path.realpath(target)
    folder, name = os.path.split(target)
    tmp = os.path.join(folder, f".{name}.tmp{os.getpid()}")
    try:
        if stream:
            _flush_standard_streams()  # what was printed before comes first on /dev/stdout
            own = _own_descriptor(target)  # shares its offset with the program's own prints
            with os.fdopen(os.dup(own), "wb") if own is not None else open(target, "ab") as f:
                yield f
            return
        if os.path.isdir(target):
            raise IsADirectoryError(errno.EISDIR, FOLDER_IN_THE_WAY, target)
        os.makedirs(folder, exist_ok=True)
        try:
            with open(tmp, "wb") as f:
                yield f
            os.replace(tmp, target)
        finally:
            if os.path.lexists(tmp):
                os.unlink(tmp)  # a failed write leaves nothing behind
    except OSError as e:
        if e.filename and os.fspath(e.filename) != tmp:
            raise
        raise OSError(e.errno, e.strerror or str(e), os.fspath(path)) from None


@contextlib.contextmanager
def local_copy(path: str | os.PathLike) -> Iterator[str]:
    """A local file holding `path`'s bytes, for readers that need one (zipfile seeks): the path
    itself, or for a URL a temporary copy, removed when the block ends. A missing object raises
    FileNotFoundError, as a missing local file does."""
    text = os.fspath(path)
    if not is_url(text):
        yield text
        return
    with tempfile.NamedTemporaryFile(suffix=os.path.splitext(text)[1]) as copy:
        with resolve(text).open("rb") as f:
            shutil.copyfileobj(f, copy, _CHUNK)
        copy.flush()
        yield copy.name


_CHUNK = 16 * 2**20


def _stream_path(path: str) -> bool:
    """A path `atomic_file` writes into rather than replaces: an existing device, pipe or
    socket, or a link into a process's descriptors."""
    if path.startswith(("/proc/", "/dev/fd/", "/dev/stdout", "/dev/stderr")):
        return True
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def _own_descriptor(path: str) -> int | None:
    """The descriptor a stream link names in this process (/dev/stdout: 1, /dev/fd/N,
    /proc/self/fd/N), written through as it is: reopened, a log file redirected with `>` would
    get a second offset, and the program's next print would overwrite what was written."""
    named = {"/dev/stdin": 0, "/dev/stdout": 1, "/dev/stderr": 2}
    if path in named:
        return named[path]
    match = re.fullmatch(rf"/(?:dev|proc/self|proc/{os.getpid()})/fd/(\d+)", path)
    return int(match.group(1)) if match else None


def _flush_standard_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def read_text(path: str | os.PathLike) -> str:
    return resolve(path).read_text(encoding="utf-8")


def exists(path: str | os.PathLike) -> bool:
    return resolve(path).exists()


def write_figure(path: str | os.PathLike, fig, **savefig_kwargs) -> None:
    """Saves a matplotlib figure like `write_bytes` (atomically, local or remote; a failed write
    names the path), in the format the path's extension names."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format=os.path.splitext(os.fspath(path))[1].lstrip(".") or "png",
                **savefig_kwargs)  # fmt: skip
    write_bytes(path, buffer.getvalue())
