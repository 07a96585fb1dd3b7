"""What the tfds builders of llp_jax share: manual folders, downloads that fail fast, TF checks.

Our builders write ArrayRecord with `download_and_prepare(file_format='array_record')` and never
import TensorFlow. Downloads use `requests` directly instead of tfds' download manager because
tfds retries a refused or unresolvable connection for minutes before failing, and because the
Wikitext mirror rejects requests without a browser-like User-Agent. Connection errors are not retried (offline fails at once); 5xx answers and broken
reads are, a few times.
"""

from __future__ import annotations

import importlib.util
import os
import zipfile
from collections.abc import Sequence

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from llp_jax.data.corpus import DataError
from llp_jax.errors import STORAGE_ERRNOS

TF_INSTALL = "pip install 'llp_jax[tf]' (or pip install tensorflow-cpu)"
_USER_AGENT = "Mozilla/5.0 (compatible; llp_jax dataset builder)"
_CHUNK_BYTES = 1 << 20


def manual_dir_or_none(dl_manager) -> str | None:
    """The `DownloadConfig(manual_dir=...)` folder if it exists and is non-empty, else None."""
    try:
        return os.fspath(dl_manager.manual_dir)
    except (AssertionError, ValueError):  # tfds' way of saying "no (usable) manual dir".
        return None


def find_file(root: str | None, names: Sequence[str]) -> str | None:
    """First file called one of `names` in `root` or its subfolders (archives nest one level)."""
    if not root or not os.path.isdir(root):
        return None
    for name in names:
        for folder, _, files in sorted(os.walk(root)):
            if name in files:
                return os.path.join(folder, name)
    return None


def download(url: str, dest_dir: str, *, hint: str) -> str:
    """Downloads `url` into `dest_dir` (once; reused afterwards) and returns the file path.

    Args:
      url: http(s) URL.
      dest_dir: folder for the download (tfds' download dir of the dataset).
      hint: the one-line advice appended to any failure (which manual files to provide).

    Raises:
      DataError: one line naming the URL, the cause and `hint`.
      OSError: the download could not be written (a full disk, ...), naming the file.
    """
    os.makedirs(dest_dir, exist_ok=True)
    path = os.path.join(dest_dir, os.path.basename(url.split("?")[0]))
    if os.path.isfile(path):
        return path
    retry = Retry(total=3, connect=0, backoff_factor=1.0, status_forcelist=[500, 502, 503, 504])
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with requests.Session() as session:
            session.mount("http://", HTTPAdapter(max_retries=retry))
            session.mount("https://", HTTPAdapter(max_retries=retry))
            headers = {"User-Agent": _USER_AGENT}
            with session.get(url, stream=True, timeout=(10, 60), headers=headers) as response:
                response.raise_for_status()
                with open(tmp, "wb") as f:
                    f.writelines(response.iter_content(chunk_size=_CHUNK_BYTES))
        os.replace(tmp, path)
    except (requests.RequestException, OSError) as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(e, OSError) and e.errno in STORAGE_ERRNOS:  # not the download's fault
            raise OSError(e.errno, e.strerror, path) from None
        cause = type(e).__name__ + (": offline?" if _is_connection_error(e) else f": {e}")
        raise DataError(f"Could not download {url} ({cause}); {hint}") from e
    return path


def _is_connection_error(e: Exception) -> bool:
    return isinstance(e, (requests.ConnectionError, requests.Timeout))


def extract_zip(path: str, dest_dir: str) -> str:
    """Extracts a zip archive once into `dest_dir/<archive name>/`; returns that folder."""
    out = os.path.join(dest_dir, os.path.basename(path) + ".extracted")
    if not os.path.isdir(out):
        tmp = f"{out}.tmp{os.getpid()}"
        try:
            with zipfile.ZipFile(path) as z:
                z.extractall(tmp)
        except zipfile.BadZipFile as e:
            raise DataError(f"{path} is not a valid zip archive ({e}); delete it and retry.")
        os.replace(tmp, out)
    return out


def tensorflow_available() -> bool:
    """Whether TensorFlow can be imported (checked without importing it: that takes seconds)."""
    return importlib.util.find_spec("tensorflow") is not None


def offline_hint(name: str, manual_files: str) -> str:
    """The advice of every 'cannot get the data' error: a manual folder or a prepared data_dir."""
    return (
        f"pass --config.data.manual_dir=DIR holding {manual_files}, or "
        f"--config.data.data_dir=DIR where {name} is already prepared"
    )
