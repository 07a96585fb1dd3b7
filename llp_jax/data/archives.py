"""Archives as corpora: a `.zip`, or a tar (plain or compressed), read as the folder it holds.

Text datasets ship as archives: WikiText-103 as `wikitext-103-raw-v1.zip`, a Kaggle download as
`archive.zip` around a CSV, Project Gutenberg's books as `.zip`, IMDB's reviews as
`aclImdb_v1.tar.gz`. Each was read as one binary file ("looks binary"), so the user had to
unpack it first. Now its members are the files of a folder walk: sorted by name, hidden ones
and macOS's `__MACOSX/` forks left out, each decompressed and decoded like a file, those that
are not text skipped with a count (`user_text.read_spec_documents`).

A zip is known by its bytes and its name: the `.zip` suffix, or no suffix at all (standard
input, a cache blob). Other zips are documents or models, not folders of text (`.docx`,
`.epub`, `.jar`, `.npz`, a torch `.pt`), and stay the binary files they are. A tar is known by
its header ("ustar"), after any gzip / bzip2 / xz / Zstandard layer (`.tar.gz`, `.tgz`, ...).
A damaged or encrypted archive is one `DataError` line naming it.
"""

from __future__ import annotations

import io
import tarfile
import zipfile
from collections.abc import Iterator

from llp_jax.data import text_bytes
from llp_jax.data.corpus import DataError
from llp_jax.data.remote_corpus import hidden
from llp_jax.errors import first_line

# Archives inside archives are read too (a Kaggle zip around a .tar.gz), down to this depth.
MAX_DEPTH = 3


def kind(path: str, raw: bytes) -> str | None:
    """'zip', 'tar', or None: what `raw` (the decompressed bytes of `path`) is read as."""
    if raw[257:262] == b"ustar":
        return "tar"
    name = path
    for suffix in text_bytes.COMPRESSED_SUFFIXES:
        name = name.removesuffix(suffix)
    leaf = name.rsplit("/", 1)[-1]
    zip_named = leaf.lower().endswith(".zip") or "." not in leaf
    if zip_named and raw[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    return None


def members(path: str, raw: bytes, archive: str) -> Iterator[tuple[str, bytes]]:
    """(`path`/member name, its bytes) of each file of an archive, sorted by name, hidden names
    (`.git/`, `._notes.txt`) and `__MACOSX/` left out.

    Raises:
      DataError: a damaged or encrypted archive, or a member in a compression Python cannot read.
    """
    reader = _zip_members if archive == "zip" else _tar_members
    try:
        yield from reader(path, raw)
    except DataError:
        raise
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, ValueError) as e:
        raise DataError(f"Corpus file {path} is a damaged {archive} archive ({first_line(e)}); "
                        "download it again or leave it out.") from None  # fmt: skip


def _wanted(name: str) -> bool:
    return not name.startswith("__MACOSX/") and not hidden(name)


def _zip_members(path: str, raw: bytes) -> Iterator[tuple[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        infos = sorted((i for i in archive.infolist() if not i.is_dir() and _wanted(i.filename)),
                       key=lambda i: i.filename)  # fmt: skip
        for info in infos:
            where = f"{path}/{info.filename}"
            if info.flag_bits & 0x1:
                raise DataError(f"Corpus file {where} is encrypted; unzip it with its password "
                                "and pass the folder.")  # fmt: skip
            try:
                data = archive.read(info)
            except NotImplementedError as e:  # Deflate64 (Windows' zips of large files), ...
                raise DataError(f"Corpus file {where} is compressed in a way Python cannot read "
                                f"({first_line(e)}); unzip it and pass the folder.") from None  # fmt: skip
            yield where, data


def _tar_members(path: str, raw: bytes) -> Iterator[tuple[str, bytes]]:
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as archive:
        infos = sorted((i for i in archive.getmembers()
                        if (i.isfile() or i.islnk()) and _wanted(i.name)),
                       key=lambda i: i.name)  # fmt: skip
        for info in infos:
            file = archive.extractfile(info)
            yield f"{path}/{info.name.removeprefix('./')}", file.read()
