"""Files people keep their text in that are not text (a PDF, an EPUB book, a Word document, a
7-Zip or RAR archive, an LZ4 file): named, one line each, with the command that gets their
text, instead of "looks binary"; a folder walk skips them with a count, as any binary file."""

from __future__ import annotations

import zipfile

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from llp_jax.data import load_corpus  # noqa: E402
from llp_jax.data.text_bytes import NotText  # noqa: E402

TEXT = "It is a truth universally acknowledged.\n" * 50


def _pdf(path):  # a real PDF, written by matplotlib
    fig = plt.figure()
    fig.text(0.1, 0.5, "It is a truth universally acknowledged.")
    fig.savefig(path)
    plt.close(fig)


def _epub(path):  # the EPUB container: 'mimetype' first and stored, then the XHTML
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("mimetype", "application/epub+zip", compress_type=zipfile.ZIP_STORED)
        z.writestr("META-INF/container.xml", "<container/>")
        z.writestr("OEBPS/ch1.xhtml", f"<html><body><p>{TEXT}</p></body></html>")


def _docx(path):  # OOXML: [Content_Types].xml first, as Word writes it
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("word/document.xml", f"<w:document><w:t>{TEXT}</w:t></w:document>")


def _magic(head: bytes):
    return lambda path: path.write_bytes(head + bytes(range(256)) * 8)


CASES = {
    "book.pdf": (_pdf, "is a PDF document, not text; get its text first: pdftotext {p} {s}.txt"),
    "book.epub": (_epub, "is an EPUB book, not text; get its text first: pandoc {p} -t plain"),
    "notes.docx": (_docx, "is an Office document (.docx, .xlsx, .odt, ...), not text"),
    "old.doc": (_magic(bytes.fromhex("d0cf11e0a1b11ae1")), "is an Office 97-2003 document"),
    "books.7z": (_magic(b"7z\xbc\xaf\x27\x1c"), "is a 7-Zip archive, not text; get its text "
                 "first: unpack it (7z x {p}) and pass the folder"),
    "books.rar": (_magic(b"Rar!\x1a\x07\x00"), "is a RAR archive, not text"),
    "dump.txt.lz4": (_magic(b"\x04\x22\x4d\x18"), "is LZ4-compressed, not text; get its text "
                     "first: decompress it (lz4 -d {p})"),
}  # fmt: skip


@pytest.mark.parametrize("name", list(CASES))
def test_a_named_file_that_is_not_text_says_what_it_is(name, tmp_path):
    make, says = CASES[name]
    path = tmp_path / name
    make(path)
    stem = str(path).rsplit(".", 1)[0]
    with pytest.raises(NotText) as caught:
        load_corpus(str(path))
    message = str(caught.value)
    assert "\n" not in message and "looks binary" not in message
    assert f"Corpus file {path} {says.format(p=path, s=stem)}" in message


def test_a_folder_walk_skips_them_with_a_count(tmp_path, capsys):
    for name, (make, _) in CASES.items():
        make(tmp_path / name)
    (tmp_path / "book.txt").write_text(TEXT)
    corpus = load_corpus(str(tmp_path))
    assert "".join(corpus.splits.values()).count("universally") == 50
    assert f"skipped {len(CASES)} file(s) that are not text" in capsys.readouterr().out


def test_a_prompt_file_that_is_a_pdf_says_so(tmp_path):
    """Read before the model loads: named as what it is (was 'holds no text (empty or binary)')."""
    from tests.helpers.cli import assert_one_line_error, run_cli  # noqa: PLC0415

    _pdf(tmp_path / "chapter.pdf")
    done = run_cli("sample", f"--workdir={tmp_path}", f"--prompt_file={tmp_path / 'chapter.pdf'}")
    assert_one_line_error(done, f"--prompt_file={tmp_path / 'chapter.pdf'} is a PDF document, "
                          f"not text; get its text first: pdftotext")  # fmt: skip
