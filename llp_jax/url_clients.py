"""URL clients: which filesystem client a URL needs, and whether its store answers.

A URL whose client is missing (gcsfs for gs://, s3fs, adlfs; for any other URL whatever fsspec's
registry names: huggingface_hub for hf://, paramiko for sftp://) is a one-line error with the
install hint, and so is a protocol fsspec does not know; a store that cannot be reached or
refuses the credentials is one line saying which, in seconds (the clients retry for minutes).
"""

from __future__ import annotations

import importlib.util
import os
import re
import socket
import urllib.parse

from llp_jax.errors import LLPError, first_line

_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
# URL scheme -> (module its etils/fsspec filesystem needs, pip package).
CLIENTS = {"gs": ("gcsfs", "gcsfs"), "s3": ("s3fs", "s3fs"), "az": ("adlfs", "adlfs")}


class StorageError(LLPError):
    """A workdir location that cannot be used; the message says why and what to install."""


def is_url(path: str | os.PathLike) -> bool:
    return bool(_URL.match(os.fspath(path)))


def check_client(path: str | os.PathLike) -> None:
    """One-line StorageError if `path` is a URL whose filesystem client is not installed, or
    whose store cannot be reached or refuses access (`_check_reachable`)."""
    path = os.fspath(path)
    if not is_url(path):
        return
    scheme = path.split("://", 1)[0].lower()
    if scheme in CLIENTS:
        module, package = CLIENTS[scheme]
        has_client = _importable(module)
        if not has_client and not _importable("tensorflow"):
            raise StorageError(
                f"{path}: {scheme}:// paths need the {package} client: pip install {package} "
                f"(or pip install 'llp_jax[cloud]')"
            )
        if has_client:  # (tensorflow's gfile alone: nothing to probe with)
            _check_reachable(path, scheme)
    else:
        _check_fsspec_client(path, scheme)


def _check_fsspec_client(path: str, scheme: str) -> None:
    """Any other URL goes through fsspec (hf://, sftp://, abfs://, http://): a client it lacks,
    or a protocol it does not know, is one line (it raised ImportError from its registry)."""
    try:
        import fsspec  # noqa: PLC0415

        fsspec.get_filesystem_class(scheme)
    except ImportError as e:
        raise StorageError(f"{path}: {scheme}:// paths need a client: {first_line(e)}") from None
    except ValueError:
        raise StorageError(f"{path}: {scheme}:// is not a storage protocol fsspec knows; use a "
                           "local path or gs://, s3://, hf://, http(s)://...") from None  # fmt: skip


def _connect(path: str, scheme: str, endpoint) -> None:
    """Opens a TCP connection to the store's endpoint: no network, a wrong host or a refused port
    fails here in seconds, where the client would retry each request for most of a minute."""
    if not isinstance(endpoint, str) or "://" not in endpoint:
        return
    url = urllib.parse.urlsplit(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=15).close()
    except OSError as e:
        raise StorageError(f"{path}: cannot reach the {scheme}:// store at {url.hostname}:{port} "
                           f"({e.strerror or e}); check the network (or STORAGE_EMULATOR_HOST "
                           "for an emulator)") from None  # fmt: skip


_REACHED: set[str] = set()  # 'gs://bucket' a probe got an answer from, in this process


def _check_reachable(path: str, scheme: str) -> None:
    """Asks the store about `path` once per bucket: when it cannot be reached at all (no network,
    a wrong endpoint) or refuses this identity, a one-line StorageError says so. Without it the
    clients' `exists()` answers False to any failure, so a run printed the client's retry
    tracebacks for a minute and then 'no checkpoint' or 'does not exist'."""
    bucket = f"{scheme}://{path.split('://', 1)[1].split('/', 1)[0]}"
    if bucket in _REACHED:
        return
    import fsspec  # noqa: PLC0415  (URLs only; gcsfs, s3fs and friends depend on it)

    fs, inner = fsspec.core.url_to_fs(path)
    _connect(path, scheme, getattr(fs, "_location", None))  # gcsfs's endpoint
    try:
        fs.info(inner)
    except FileNotFoundError:
        pass  # an answer: what is missing is the caller's to say
    except Exception as e:  # noqa: BLE001  each client has its own errors; sorted below
        why = first_line(e) or type(e).__name__
        # gcsfs raises a 403 as OSError('Forbidden: <path>\n<GCS's reason>'), a 401 as HttpError
        if (isinstance(e, PermissionError) or getattr(e, "code", None) in (401, 403)
                or why.startswith("Forbidden")):  # fmt: skip
            why = " ".join(str(e).split())[:300]
            raise StorageError(f"{path}: access denied ({why}); check the credentials "
                               "(gcloud auth application-default login) and the bucket's "
                               "permissions") from None  # fmt: skip
        if isinstance(e, (OSError, TimeoutError)):  # aiohttp's connection errors are OSErrors
            raise StorageError(f"{path}: cannot reach the {scheme}:// store ({why}); check the "
                               "network (or STORAGE_EMULATOR_HOST for an emulator)") from None  # fmt: skip
    _REACHED.add(bucket)


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a module blocked or half-installed
        return False
