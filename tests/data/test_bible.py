"""The embedded World English Bible: checksum, split by whole book; and its extractor run on a
SWORD zText module packed into a .deb exactly as Debian ships sword-text-web."""

from __future__ import annotations

import lzma
import os
import struct
import subprocess
import sys
import zlib

import pytest

from llp_jax.data import DataError, bible, datasets

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import extract_web_bible  # noqa: E402


def test_embedded_bible_splits_by_whole_book():
    corpus = datasets.load_corpus("web_bible")
    assert corpus.name == "web_bible"
    assert [len(corpus.split_documents(s)) for s in ("train", "validation", "test")] == [
        54,
        4,
        23,
    ]  # 53 books + the preface
    assert corpus.split_documents("validation")[0].startswith(
        "The Good News According to\n\nMatthew"
    )
    assert "In the beginning, God created the heavens and the earth." in corpus.splits["train"]
    assert "<" not in corpus.splits["test"] and "strong:" not in corpus.splits["test"]
    assert corpus.words["validation"] == 80_193


def test_damaged_bible_is_one_line_error(tmp_path):
    path = tmp_path / "web_bible.txt.xz"
    with lzma.open(path, "wb") as f:
        f.write(b"#### Gen\nchanged\n")
    with pytest.raises(DataError, match="Checksum mismatch"):
        bible.load_web_bible(path)
    path.write_bytes(b"not xz")
    with pytest.raises(DataError, match="not a valid .xz"):
        bible.load_web_bible(path)


def _ztext(verses_by_block):
    """(bzs, bzv, bzz) of a zText testament: one zlib block per list of verses."""
    bzs, bzv, bzz = b"", b"", b""
    bzv += struct.pack("<IIH", 0, 0, 0)  # SWORD's empty leading entries
    for b, block in enumerate(verses_by_block):
        raw = b"".join(v.encode() for v in block)
        packed = zlib.compress(raw)
        bzs += struct.pack("<III", len(bzz), len(packed), len(raw))
        bzz += packed
        offset = 0
        for v in block:
            bzv += struct.pack("<IIH", b, offset, len(v.encode()))
            offset += len(v.encode())
    return bzs, bzv, bzz


def test_extractor_reads_a_sword_deb(tmp_path):
    ot = [['<div canonical="true" osisID="Gen" sID="g1" type="book"/><title type="main">Genesis'
           '</title><div sID="p1" type="x-p"/>',
           '<w lemma="strong:H1">In</w> <w>the</w> <w>beginning</w>, <w>God</w><note '
           'placement="foot"><reference>1:1 </reference>Elohim.</note><w>created</w> it.'
           '<div eID="p1" type="x-p"/>'],
          ['<div eID="g1" osisID="Gen" type="book"/><div osisID="Ps" sID="g2" type="book"/>'
           '<l sID="l1"/>Blessed is the man<l eID="l1"/><l sID="l2"/>who doesn&apos;t walk'
           '<l eID="l2"/>']]  # fmt: skip
    nt = [['<div osisID="Matt" sID="g3" type="book"/>The book of the genealogy.']]
    root = tmp_path / "pkg"
    module = root / "usr/share/sword/modules/texts/ztext/engWEB2015eb"
    module.mkdir(parents=True)
    for name, testament in (("ot", ot), ("nt", nt)):
        for ext, data in zip(("bzs", "bzv", "bzz"), _ztext(testament)):
            (module / f"{name}.{ext}").write_bytes(data)
    (root / "DEBIAN").mkdir()
    (root / "DEBIAN/control").write_text(
        "Package: sword-text-web\nVersion: 426.0-1\nArchitecture: all\n"
        "Maintainer: t <t@example.org>\nDescription: test\n"
    )
    deb = tmp_path / "sword-text-web.deb"
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(root), str(deb)],
                   check=True, capture_output=True)  # fmt: skip
    extract_web_bible.main(str(deb), str(tmp_path))
    with lzma.open(tmp_path / "web_bible.txt.xz") as f:
        text = f.read().decode()
    assert text == (
        "#### Gen\n\nGenesis\n\nIn the beginning, God created it.\n\n"
        "#### Ps\n\nBlessed is the man\nwho doesn't walk\n\n#### Matt\n\nThe book of the genealogy.\n"
    )
    assert list(bible.books(text)) == ["Preface", "Gen", "Ps", "Matt"]
