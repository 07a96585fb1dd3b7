"""Corpus files behind a URL (gs://bucket/books/, s3://..., through fsspec): on a TPU VM or in
Colab the text usually lives in a bucket. A folder is walked, a glob matched, a file read; the
network, a missing client library, a bad bucket name or no access is one `DataError` line.
"""

from __future__ import annotations

import os
import re

from llp_jax import paths
from llp_jax.data import run_folders
from llp_jax.data.corpus import DataError
from llp_jax.errors import first_line

GLOB = re.compile(r"[*?[]")


def hidden(relative: str) -> bool:
    """A dot-file, or a file under a dot-folder (.git/, .ipynb_checkpoints/), of a walk."""
    return any(c.startswith(".") and c != "." for c in relative.replace(os.sep, "/").split("/"))


def _url_fs(url: str):
    """(fsspec filesystem, path within it) of a URL; a missing client is one line."""
    paths.check_client(url)
    import fsspec  # noqa: PLC0415  (URLs only; gcsfs, s3fs and friends depend on it)

    return fsspec.core.url_to_fs(url)


def _url_trouble(url: str, e: Exception) -> DataError:
    why = first_line(e) or type(e).__name__
    return DataError(f"Corpus path {url} cannot be read ({why}); check the URL and your access.")


def expand_url(part: str) -> tuple[list[str], list[str]]:
    """`expand_paths` of one URL: (its files, those found by a walk or a glob)."""
    fs, root = _url_fs(part)
    try:
        if fs.isdir(root):
            base = root.rstrip("/") + "/"
            every = [p for p in fs.find(root) if p.startswith(base)]
            relatives = [p[len(base) :] for p in every]
            if run_folders.is_workdir("", relatives):
                raise DataError(f"Corpus folder {part} is an llp_jax workdir (a run's "
                                "checkpoints and logs), not text; name the text's own folder.")  # fmt: skip
            workdirs = run_folders.workdirs_among(relatives)
            run_folders.note([fs.unstrip_protocol(base + w.rstrip("/")) for w in workdirs])
            walk = sorted(fs.unstrip_protocol(p) for p, rel in zip(every, relatives)
                          if not hidden(rel) and not rel.startswith(tuple(workdirs)))  # fmt: skip
            if not walk:
                raise DataError(f"Corpus folder {part} holds no files; add some or pass files.")
            return walk, walk
        if fs.isfile(root):
            return [part], []
        if GLOB.search(part):
            matches = [p for p in fs.glob(root) if fs.isfile(p)]
            if "**" in root:  # a walk below the pattern's fixed folders, as on disk: workdirs
                # left out, and dot-names unless the pattern names them
                base = "/".join(root.split("**", 1)[0].split("/")[:-1]) + "/"
                workdirs = run_folders.workdirs_among([p[len(base) :] for p in fs.find(base)])
                run_folders.note([fs.unstrip_protocol(base + w.rstrip("/")) for w in workdirs])
                dots = "/." in "/" + root[len(base) :]
                matches = [p for p in matches if not p[len(base) :].startswith(tuple(workdirs))
                           and (dots or not hidden(p[len(base) :]))]  # fmt: skip
            matches = sorted(fs.unstrip_protocol(p) for p in matches)
            if not matches:
                raise DataError(f"Corpus pattern {part!r} matches no files.")
            return matches, matches
    except DataError:
        raise
    except (OSError, ValueError) as e:  # the network, permissions, a bad bucket name
        raise _url_trouble(part, e) from None
    raise DataError(f"Corpus path {part} does not exist; pass an existing file or folder.")


def read_url(url: str) -> bytes:
    fs, path = _url_fs(url)
    try:
        if not fs.isfile(path):
            what = "is not a file; pass a file or a folder" if fs.isdir(path) else "does not exist"
            raise DataError(f"Corpus path {url} {what}.")
        return fs.cat_file(path)
    except DataError:
        raise
    except (OSError, ValueError) as e:
        raise _url_trouble(url, e) from None
