"""A workdir has one owner: the exclusive lock a training run holds, the checks a workdir path
must pass before anything is written there, and setting a previous run aside (`--noresume`).

The lock is `<workdir>/.lock`. Locally it is an `fcntl.flock` on that file, which the kernel
releases whenever the process ends, however it ends (kill -9 included): a stale lock cannot
exist. Object stores have no locks, so there the file holds its owner and a heartbeat that a
thread refreshes; a lock whose heartbeat is older than `STALE_S`, or whose owner is a dead
process on this host, is taken over. Readers (evaluate, sample) never take it.

Within one process the lock is re-entrant (a notebook that calls `trainer.setup` twice on one
workdir is one owner); another process gets `WorkdirBusyError` at once, naming the owner.
"""

from __future__ import annotations

import datetime
import errno
import json
import logging
import os
import socket
import threading
import time

from llp_jax import paths
from llp_jax.errors import LLPError
from llp_jax.storage.steps import inside_a_run

LOCK_NAME = ".lock"
PREVIOUS = "previous_runs"  # where --noresume sets an earlier run aside
STALE_S = 300.0  # a remote lock not refreshed for this long belongs to no one
HEARTBEAT_S = 30.0
log = logging.getLogger(__name__)


class WorkdirError(LLPError):
    """A workdir that cannot be used (bad path, not writable)."""


class WorkdirBusyError(WorkdirError):
    """Another live process holds the workdir."""


def check_path(workdir: str) -> None:
    """One-line errors for a workdir path no filesystem call should ever see."""
    if not isinstance(workdir, (str, os.PathLike)):
        raise WorkdirError(f"workdir={workdir!r} must be a folder path (or a gs:// URL)")
    text = os.fspath(workdir)
    if not text.strip():
        raise WorkdirError("--workdir is empty; give a folder (or a gs:// URL) for the run")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        shown = os.fsencode(text).decode("utf-8", "backslashreplace")
        raise WorkdirError(
            f"--workdir {shown} is not valid UTF-8; choose a path of valid characters"
        ) from None
    if "\x00" in text:
        raise WorkdirError("--workdir contains a NUL character")
    paths.check_client(text)
    blocker = paths.file_in_the_way(text)
    if blocker is not None:
        raise WorkdirError(
            f"--workdir {text}: {blocker} is not a folder; give a folder for the run"
        )
    inside = inside_a_run(text)
    if inside is not None:
        mixed = "steps" if inside.folder == "checkpoints" else "data record"
        raise WorkdirError(
            f"--workdir {text} is inside the {inside.folder} folder of the run {inside.run}, "
            f"where a run's files would mix with its {mixed}; give a folder of its own (or "
            f"--workdir={inside.run} to resume that run)"
        )


def _owner() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}


def _describe(owner: dict) -> str:
    since = datetime.datetime.fromtimestamp(owner.get("since", 0)).strftime("%Y-%m-%d %H:%M:%S")
    return f"process {owner.get('pid', '?')} on {owner.get('host', '?')} (since {since})"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_held: dict[str, list] = {}  # path -> [count, handle], the locks this process holds
_guard = threading.Lock()


class WorkdirLock:
    """`with WorkdirLock(workdir):` the run owns `workdir`; or `acquire()` / `release()`."""

    def __init__(self, workdir: str):
        self.workdir = os.fspath(paths.resolve(workdir))
        self.path = paths.join(self.workdir, LOCK_NAME)
        self._acquired = False

    def acquire(self) -> "WorkdirLock":
        with _guard:
            if self.path in _held:
                _held[self.path][0] += 1
            else:
                handle = _RemoteLock(self.path) if paths.is_url(self.path) else _local(self.path)
                _held[self.path] = [1, handle]
        self._acquired = True
        return self

    def release(self) -> None:
        if not self._acquired:
            return
        self._acquired = False
        with _guard:
            entry = _held.get(self.path)
            if entry is None:
                return
            entry[0] -= 1
            if entry[0] == 0:
                del _held[self.path]
                entry[1].close()

    def __enter__(self) -> "WorkdirLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _busy(path: str, owner: dict) -> WorkdirBusyError:
    return WorkdirBusyError(
        f"{os.path.dirname(path)} is in use by another training run, {_describe(owner)}; wait "
        f"for it to finish, stop it, or use another --workdir (the lock is {path})"
    )


# What flock() returns on filesystems without file locks: Lustre mounted without -o flock
# (ENOSYS), NFS without its lock daemon (ENOLCK), some FUSE and SMB mounts (EOPNOTSUPP, EINVAL).
_NO_FLOCK = frozenset({errno.ENOSYS, errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL})


class _NoFlock(Exception):
    pass


def _local(path: str):
    """The kernel's flock where the filesystem has it; else the owner record with a heartbeat
    that object stores use (a dead owner on this host is taken over at once, one elsewhere
    after STALE_S)."""
    try:
        return _LocalLock(path)
    except _NoFlock as e:
        log.warning(
            "%s: this filesystem has no file locks (flock: %s); the workdir's lock is an owner "
            "record with a heartbeat instead",
            path,
            e,
        )
        return _RemoteLock(path)


class _LocalLock:
    def __init__(self, path: str):
        import fcntl  # noqa: PLC0415  (POSIX only; remote workdirs never need it)

        try:
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            folder = os.path.dirname(path)
            raise WorkdirError(
                f"--workdir {folder} cannot hold the run's files (creating its lock "
                f"{os.path.basename(path)}: {e.strerror.lower()}); give a folder on a disk this "
                "user can write to"
            ) from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                owner = json.loads(os.pread(self._fd, 4096, 0) or b"{}")
            except ValueError:
                owner = {}
            os.close(self._fd)
            raise _busy(path, owner) from None
        except OSError as e:
            if e.errno not in _NO_FLOCK:
                raise
            os.close(self._fd)
            raise _NoFlock(e.strerror or str(e)) from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, json.dumps(_owner()).encode(), 0)

    def close(self) -> None:
        os.close(self._fd)  # releases the flock


class _RemoteLock:
    """A lock object with a heartbeat: object stores have no locks or leases."""

    def __init__(self, path: str):
        self._path, self._stop = path, threading.Event()
        p = paths.resolve(path)
        if p.exists():
            try:
                held = json.loads(p.read_text())
            except ValueError:
                held = {}
            fresh = time.time() - float(held.get("heartbeat", 0)) < STALE_S
            same_host_dead = held.get("host") == socket.gethostname() and not _pid_alive(
                int(held.get("pid", -1))
            )
            if fresh and not same_host_dead:
                raise _busy(path, held)
        self._record = {**_owner(), "heartbeat": time.time()}
        paths.write_text(path, json.dumps(self._record))
        time.sleep(0.5)  # two runs that start together: the last write wins, the other yields
        if json.loads(p.read_text()).get("since") != self._record["since"]:
            raise _busy(path, json.loads(p.read_text()))
        self._thread = threading.Thread(target=self._beat, daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            self._record["heartbeat"] = time.time()
            try:
                paths.write_text(self._path, json.dumps(self._record))
            except Exception:  # noqa: BLE001  (a missed beat is retried; staleness takes 300 s)
                continue

    def close(self) -> None:
        self._stop.set()
        try:
            paths.resolve(self._path).unlink()
        except Exception:  # noqa: BLE001  (gone already: nothing to release)
            pass


def previous_run(workdir: str) -> list[str]:
    """The names in `workdir` that a previous run left (checkpoints, metrics, plots, data
    record), sorted: all but `previous_runs/` and the lock."""
    root = paths.resolve(workdir)
    if not root.exists():
        return []
    return sorted(e.name for e in root.iterdir() if e.name not in (PREVIOUS, LOCK_NAME))


def set_aside(workdir: str) -> str | None:
    """Moves everything of a previous run in `workdir` (`previous_run`) into
    `<workdir>/previous_runs/<UTC time>/` and returns that folder (None: nothing there).
    Nothing is deleted: `--noresume` starts a fresh run without losing the old one."""
    root = paths.resolve(workdir)
    entries = [root / name for name in previous_run(workdir)]
    if not entries:
        return None
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    target = root / PREVIOUS / stamp
    target.mkdir(parents=True, exist_ok=True)
    for entry in entries:
        paths.move(entry, target / entry.name)
    return os.fspath(target)
