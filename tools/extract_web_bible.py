"""Extracts the World English Bible as plain text from Debian's `sword-text-web` package.

  apt-get download sword-text-web          # sword-text-web_426.0-1_all.deb (3,956,428 bytes)
  python tools/extract_web_bible.py sword-text-web_426.0-1_all.deb llp_jax/data/corpora/

The package holds the SWORD module engWEB2015eb ("World English Bible with Deuterocanon", public
domain) in SWORD's zText format: per testament a block index `.bzs` (12 bytes per block: offset,
compressed and uncompressed size, little-endian u32), zlib blocks `.bzz`, and a verse index `.bzv`
(10 bytes per verse: block, offset in the block u32, size u16). Each verse is OSIS XML; this keeps
the text a reader sees — verse text, headings on their own lines, a blank line between paragraphs,
one line per line of poetry — and drops footnotes, Strong's lemmas and every other tag. Each book
starts with a line `#### <OSIS book id>` so that `llp_jax.data.bible` can split by whole book.
Writes web_bible.txt.xz and prints its text's sha256 (for bible.py and PROVENANCE.md). Only the
standard library; the .deb is read with `dpkg-deb --fsys-tarfile`.
"""

from __future__ import annotations

import hashlib
import html
import io
import lzma
import os
import re
import struct
import subprocess
import sys
import tarfile
import zlib

MODULE = "./usr/share/sword/modules/texts/ztext/engWEB2015eb/"


def module_files(deb: str) -> dict[str, bytes]:
    tar_bytes = subprocess.run(["dpkg-deb", "--fsys-tarfile", deb], check=True,
                               capture_output=True).stdout  # fmt: skip
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        return {m.name[len(MODULE):]: tar.extractfile(m).read()
                for m in tar.getmembers() if m.name.startswith(MODULE) and m.isfile()}  # fmt: skip


def verses(files: dict[str, bytes]):
    """Every non-empty verse entry's OSIS text, Old Testament then New, in module order."""
    for testament in ("ot", "nt"):
        bzs, bzv, bzz = (files[f"{testament}.{ext}"] for ext in ("bzs", "bzv", "bzz"))
        blocks = [struct.unpack_from("<III", bzs, i) for i in range(0, len(bzs), 12)]
        cache: dict[int, bytes] = {}
        for i in range(0, len(bzv), 10):
            block, offset, size = struct.unpack_from("<IIH", bzv, i)
            if size == 0:
                continue
            if block not in cache:
                start, compressed, _ = blocks[block]
                cache = {block: zlib.decompress(bzz[start : start + compressed])}
            yield cache[block][offset : offset + size].decode("utf-8")


RULES = [
    (re.compile(r"<note\b.*?</note>", re.S), " "),  # footnotes (they sit between words)
    (
        re.compile(r'<div\b(?=[^>]*\bsID=)[^>]*osisID="([^"]+)"[^>]*type="book"[^>]*/>'),
        "\n\n#### \\1\n\n",
    ),
    (re.compile(r"<title\b[^>]*>(.*?)</title>", re.S), "\n\n\\1\n\n"),
    (re.compile(r"<milestone\b[^>]*/>"), ""),  # running heads, tables of contents
    (re.compile(r'<div\b[^>]*eID="[^"]*"[^>]*type="x-p"[^>]*/>'), "\n\n"),  # paragraph ends
    (re.compile(r"<chapter\b[^>]*sID[^>]*/>"), "\n\n"),
    (re.compile(r"<l\b[^>]*eID[^>]*/>|<lb\b[^>]*/>|</l>|<lg\b[^>]*eID[^>]*/>"), "\n"),
    (re.compile(r"<[^>]+>"), ""),  # every other tag: its text stays
]


def plain_text(osis: str) -> str:
    for pattern, replacement in RULES:
        osis = pattern.sub(replacement, osis)
    text = html.unescape(osis)
    lines = [re.sub(r"[ \t]+", " ", line).strip() for line in text.split("\n")]
    lines = [re.sub(r" ([,.;:!?)\]])", r"\1", line) for line in lines]  # where a note was
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"


def main(deb: str, out_dir: str) -> None:
    text = plain_text(" ".join(verses(module_files(deb))))
    raw = text.encode("utf-8")
    path = os.path.join(out_dir, "web_bible.txt.xz")
    with lzma.open(path, "wb", preset=9 | lzma.PRESET_EXTREME) as f:
        f.write(raw)
    books = text.count("\n#### ") + text.startswith("#### ")
    print(
        f"{path}: {len(raw):,} bytes of text, {books} books, sha256 {hashlib.sha256(raw).hexdigest()}"
    )


if __name__ == "__main__":
    main(*sys.argv[1:3])
