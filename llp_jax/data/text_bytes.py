"""From a corpus file's bytes to its text: decompression and encoding.

Real corpora rarely come as plain UTF-8 `.txt`: C4 ships JSON Lines as `.json.gz`, the Pile as
`.jsonl.zst`, dumps come as `.xz` or `.bz2`, and a Windows editor saves "Unicode" text as UTF-16
with a byte-order mark. So a file is decompressed by its first bytes (gzip, bzip2, xz,
Zstandard; an extension is often missing or wrong) and decoded as UTF-8 (a few invalid bytes
tolerated) or, after a UTF-16/32 byte-order mark, as that. `records.py` splits the text into
documents. Every problem is a one-line `DataError` naming the file.
"""

from __future__ import annotations

import bz2
import codecs
import gzip
import logging
import lzma
import os
import re

from llp_jax.data.corpus import DataError
from llp_jax.errors import first_line

# A file with more invalid UTF-8 bytes than this fraction is not text.
MAX_INVALID_FRACTION = 0.01
COMPRESSED_SUFFIXES = (".gz", ".bz2", ".xz", ".zst")

_log = logging.getLogger(__name__)
_SURROGATE_RE = re.compile("[\udc80-\udcff]")
# Byte-order marks, longest first (UTF-32 LE's starts with UTF-16 LE's).
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))  # fmt: skip


class NotText(DataError):
    """A file that is not text, or holds none (raised for named files; folder and glob walks
    skip them). `what`: what it is instead, where its bytes say (`_NOT_TEXT`), with the way
    to get its text."""

    what: str = ""


def _zstd(raw: bytes) -> bytes:
    """Every frame of `raw`. Not `decompress()`: a frame written by a stream (the Pile's) has no
    content size in its header; not a stream reader either: it ends a truncated file silently."""
    import zstandard  # noqa: PLC0415  (only Zstandard files need it)

    parts, rest = [], raw
    while rest:
        frame = zstandard.ZstdDecompressor().decompressobj()
        parts.append(frame.decompress(rest))
        if not frame.eof:
            raise EOFError("the data ends inside a frame (a truncated file)")
        rest = frame.unused_data
    return b"".join(parts)


def _bzip2_magic(raw: bytes) -> bool:
    return raw[:3] == b"BZh" and raw[3:4] in b"123456789" and raw[4:10] == b"1AY&SY"


# (format, how to recognise it, how to decompress it)
_FORMATS = (
    ("gzip", lambda raw: raw[:2] == b"\x1f\x8b", gzip.decompress),
    ("bzip2", _bzip2_magic, bz2.decompress),
    ("xz", lambda raw: raw[:6] == b"\xfd7zXZ\x00", lzma.decompress),
    ("Zstandard", lambda raw: raw[:4] == b"\x28\xb5\x2f\xfd", _zstd),
)


# Files people keep their text in that are not text, known by their bytes: (what it is, how to
# recognise it, how to get its text). Named as such, not as "looks binary".
_NOT_TEXT = (
    ("a PDF document", lambda raw: raw[:5] == b"%PDF-", "pdftotext {f} {stem}.txt"),
    ("an EPUB book", lambda raw: raw[:2] == b"PK" and b"application/epub+zip" in raw[:100],
     "pandoc {f} -t plain -o {stem}.txt, or Calibre's ebook-convert {f} {stem}.txt"),
    ("an Office document (.docx, .xlsx, .odt, ...)", lambda raw: raw[:2] == b"PK" and (
        b"[Content_Types].xml" in raw[:4096] or b"application/vnd.oasis" in raw[:100]),
     "pandoc {f} -t plain -o {stem}.txt, or save it as plain text"),
    ("an Office 97-2003 document (.doc, .xls)", lambda raw: raw[:8] == bytes.fromhex(
        "d0cf11e0a1b11ae1"), "save it as plain text from its program"),
    ("a 7-Zip archive", lambda raw: raw[:6] == b"7z\xbc\xaf\x27\x1c",
     "unpack it (7z x {f}) and pass the folder"),
    ("a RAR archive", lambda raw: raw[:6] == b"Rar!\x1a\x07", "unpack it (unrar x {f}) and pass the folder"),
    ("LZ4-compressed", lambda raw: raw[:4] == b"\x04\x22\x4d\x18",
     "decompress it (lz4 -d {f}), or recompress it as .gz, .bz2, .xz or .zst"),
)  # fmt: skip


def not_text_format(raw: bytes) -> tuple[str, str] | None:
    """(what the bytes are, how to get their text) for a format `_NOT_TEXT` knows, or None."""
    return next(((what, fix) for what, matches, fix in _NOT_TEXT if matches(raw)), None)


def decompress(path: str, raw: bytes) -> bytes:
    """`raw`, or its content if it is gzip, bzip2, xz or Zstandard data."""
    for name, matches, expand in _FORMATS:
        if matches(raw):
            try:
                return expand(raw)
            except ImportError:
                raise DataError(f"Corpus file {path} is {name}-compressed, which needs the "
                                "zstandard package: pip install zstandard") from None  # fmt: skip
            except Exception as e:  # noqa: BLE001  OSError, EOFError, LZMAError, ZstdError, ...
                raise DataError(f"Corpus file {path} is a damaged {name} file ({first_line(e)}); "
                                "download it again or leave it out.") from None  # fmt: skip
    return raw


def decode(path: str, raw: bytes) -> str:
    """The text of a file's (decompressed) bytes; NotText for binary or non-UTF-8 data."""
    for bom, codec in _BOMS:
        if raw.startswith(bom):
            try:
                return newlines(raw.decode(codec))
            except UnicodeDecodeError as e:
                raise NotText(f"Corpus file {path} starts with a {codec.upper()} byte-order "
                              f"mark but is not {codec.upper()} ({e.reason}); convert it to "
                              "UTF-8.") from None  # fmt: skip
    if found := not_text_format(raw):
        what, fix = found
        fix = fix.format(f=path, stem=os.path.splitext(path)[0])
        error = NotText(f"Corpus file {path} is {what}, not text; get its text first: {fix}.")
        error.what = f"{what}, not text; get its text first: {fix}."
        raise error
    if b"\x00" in raw:
        raise NotText(
            f"Corpus file {path} looks binary (contains NUL bytes); pass a plain UTF-8 text file."
        )
    # surrogateescape maps each undecodable byte to exactly one lone surrogate: they can be counted.
    text = raw.decode("utf-8", errors="surrogateescape")
    text, num_bad = _SURROGATE_RE.subn("\ufffd", text)
    if num_bad > MAX_INVALID_FRACTION * len(raw):
        raise NotText(
            f"Corpus file {path} is not UTF-8 text ({num_bad / len(raw):.0%} of its bytes are "
            "invalid UTF-8); convert it to UTF-8 or leave it out."
        )
    if num_bad:
        # A few stray Latin-1 bytes in a scraped book should not stop a run.
        _log.warning("%s: replaced %d invalid UTF-8 bytes with U+FFFD.", path, num_bad)
    return newlines(text.removeprefix("\ufeff"))


def newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")
