"""The tfds builders on fixture files in the real layouts: examples, offline errors, TF errors."""

import time

import pytest
import tensorflow_datasets as tfds

from llp_jax.data import builder_utils, wikitext
from llp_jax.data.corpus import DataError
from llp_jax.data.tfds_sources import parse_spec, prepare_builder
from tests.helpers.real_formats import PG19_BOOKS, WIKI_FILES, enwik8_expected, wiki_split_text


def read_split(builder, split):
    source = builder.as_data_source()[split]
    return source.__getitems__(list(range(len(source))))


def test_split_articles_cuts_at_level_one_headings_and_rejoins_exactly():
    text, titles = wiki_split_text("train", 5)
    articles = list(wikitext.split_articles(text))
    assert [t for t, _ in articles] == titles
    assert "".join(a for _, a in articles) == text
    assert all(a.startswith(f" \n = {t} = \n") for t, a in articles)
    # Streaming over file lines gives the same cut; a preamble joins the first article.
    lines = ("intro\n" + text).splitlines(keepends=True)
    streamed = list(wikitext.split_articles(iter(lines)))
    assert [t for t, _ in streamed] == titles and streamed[0][1] == "intro\n" + articles[0][1]
    assert list(wikitext.split_articles("no headings at all\n")) == [("", "no headings at all\n")]


def test_wikitext_builder_reads_the_standard_files(wikitext_dir, tmp_path):
    manual, texts, titles = wikitext_dir
    builder = prepare_builder(parse_spec("tfds:wikitext103"), str(tmp_path), str(manual))
    assert builder.info.file_format == tfds.core.FileFormat.ARRAY_RECORD
    for split in ("train", "validation", "test"):
        examples = read_split(builder, split)
        assert [e["title"].decode() for e in examples] == titles[split]  # File order kept.
        assert b"".join(e["text"] for e in examples) == texts[split].encode("utf-8")
    # Readable later with plain tfds, no llp_jax class needed.
    ds = tfds.data_source("llp_wikitext103/tokens", data_dir=str(tmp_path))
    assert ds["validation"][1]["title"] == titles["validation"][1].encode()


def test_wikitext_raw_release(wikitext_dir, tmp_path):
    _, texts, _ = wikitext_dir
    manual = tmp_path / "raw"
    manual.mkdir()
    for split, stem in WIKI_FILES.items():
        (manual / f"{stem}.raw").write_text(texts[split], encoding="utf-8")
    builder = prepare_builder(parse_spec("tfds:wikitext103/raw"), str(tmp_path / "d"), str(manual))
    assert b"".join(e["text"] for e in read_split(builder, "test")) == texts["test"].encode()


@pytest.mark.parametrize("release", ["tokens", "raw"])
def test_wikitext_zip_as_downloaded_in_the_manual_folder(wikitext_dir, tmp_path, release):
    """The release zips nest their files in a folder (wikitext-103/wiki.train.tokens)."""
    import zipfile

    _, texts, _ = wikitext_dir
    suffix = ".raw" if release == "raw" else ".tokens"
    zip_name = "wikitext-103-raw-v1.zip" if release == "raw" else "wikitext-103-v1.zip"
    manual = tmp_path / "manual"
    manual.mkdir()
    with zipfile.ZipFile(manual / zip_name, "w") as archive:
        for split, stem in WIKI_FILES.items():
            folder = "wikitext-103-raw" if release == "raw" else "wikitext-103"
            archive.writestr(f"{folder}/{stem}{suffix}", texts[split])
    spec = "tfds:wikitext103" + ("/raw" if release == "raw" else "")
    builder = prepare_builder(parse_spec(spec), str(tmp_path / "d"), str(manual))
    for split in ("train", "validation", "test"):
        assert b"".join(e["text"] for e in read_split(builder, split)) == texts[split].encode()


def test_pg19_builder_reads_the_standard_tree(pg19_dir, tmp_path):
    builder = prepare_builder(parse_spec("tfds:pg19"), str(tmp_path), str(pg19_dir))
    train = read_split(builder, "train")
    assert [int(e["book_id"]) for e in train] == sorted(PG19_BOOKS["train"])  # README skipped.
    by_id = {int(e["book_id"]): e for e in train}
    assert by_id[4]["book_title"] == b"A Title, With a Comma"  # Quoted CSV field.
    assert by_id[4]["publication_date"] == b"1850"
    assert by_id[4]["book_link"] == b"http://www.gutenberg.org/ebooks/4"
    assert by_id[123]["book_title"] == b""  # Not in metadata.csv.
    for split, books in PG19_BOOKS.items():
        got = {int(e["book_id"]): e["book_text"].decode() for e in read_split(builder, split)}
        assert got == {i: t.strip() for i, t in books.items()}


def test_enwik8_builder_splits_90_5_5_in_order(small_enwik8, enwik8_dirs, tmp_path):
    plain, zipped, data = enwik8_dirs
    for i, manual in enumerate((plain, zipped)):
        builder = prepare_builder(parse_spec("tfds:enwik8"), str(tmp_path / str(i)), str(manual))
        for split, expected in enwik8_expected(data).items():
            examples = read_split(builder, split)
            assert b"".join(e["text"] for e in examples) == expected
            assert len(examples) == -(-len(expected) // small_enwik8.CHUNK_BYTES)


def test_enwik8_wrong_size_is_one_line_error(small_enwik8, tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "enwik8").write_bytes(b"too short")
    with pytest.raises(DataError, match="has 9 bytes, not the 10,000 of enwik8") as e:
        prepare_builder(parse_spec("tfds:enwik8"), str(tmp_path / "d"), str(tmp_path / "m"))
    assert "\n" not in str(e.value)


def assert_offline_message(message: str):
    assert "\n" not in message
    assert "--config.data.manual_dir=" in message and "--config.data.data_dir=" in message


@pytest.mark.parametrize("corpus", ["tfds:wikitext103", "tfds:wikitext103/raw", "tfds:enwik8"])
def test_offline_download_fails_at_once_naming_manual_and_data_dir(corpus, monkeypatch, tmp_path):
    # Port 9 on localhost refuses connections: what an offline machine answers, without network.
    monkeypatch.setattr(wikitext, "URLS", {k: "http://127.0.0.1:9/w.zip" for k in wikitext.URLS})
    monkeypatch.setattr("llp_jax.data.enwik8.URL", "http://127.0.0.1:9/enwik8.zip")
    start = time.perf_counter()
    with pytest.raises(DataError, match="Could not download") as e:
        prepare_builder(parse_spec(corpus), str(tmp_path))
    assert time.perf_counter() - start < 60  # a hang guard, not a timing target
    assert_offline_message(str(e.value))


def test_pg19_without_manual_dir_says_what_to_pass(tmp_path):
    with pytest.raises(DataError, match="PG-19 cannot be downloaded without TensorFlow") as e:
        prepare_builder(parse_spec("tfds:pg19"), str(tmp_path))
    assert_offline_message(str(e.value))
    assert "gs://deepmind-gutenberg" in str(e.value) and "tfds-catalog:pg19" in str(e.value)


@pytest.mark.skipif(builder_utils.tensorflow_available(), reason="TensorFlow is installed")
def test_catalog_pg19_needs_tensorflow_with_install_command(tmp_path):
    with pytest.raises(DataError, match="needs TensorFlow") as e:
        prepare_builder(parse_spec("tfds-catalog:pg19"), str(tmp_path))
    assert "\n" not in str(e.value)
    assert "pip install 'llp_jax[tf]'" in str(e.value) and "'tfds:pg19'" in str(e.value)


@pytest.mark.parametrize(
    "corpus, match",
    [
        ("tfds:nope", "Unknown dataset"),
        ("tfds:wikitext103/xl", "has configs"),
        ("tfds-catalog:no_such_dataset_xyz", "tfds has no dataset"),
    ],
)
def test_bad_dataset_names(corpus, match, tmp_path):
    with pytest.raises(DataError, match=match):
        prepare_builder(parse_spec(corpus), str(tmp_path))


def test_download_reuses_a_finished_download(tmp_path):
    (tmp_path / "x.zip").write_bytes(b"done")  # No network touched: the file is there.
    path = builder_utils.download("http://127.0.0.1:9/x.zip", str(tmp_path), hint="h")
    assert path == str(tmp_path / "x.zip")


@pytest.mark.parametrize(
    "corpus, match",
    [("tfds:wikitext103", "wiki.train.tokens not found"), ("tfds:enwik8", "No enwik8")],
)
def test_manual_folder_without_the_files_is_an_error_not_a_download(corpus, match, tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "other.txt").write_text("unrelated")
    with pytest.raises(DataError, match=match) as e:
        prepare_builder(parse_spec(corpus), str(tmp_path / "d"), str(tmp_path / "m"))
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("corpus", ["tfds:wikitext103", "tfds:pg19", "tfds:enwik8"])
def test_a_manual_dir_that_does_not_exist_is_named(corpus, monkeypatch, tmp_path):
    """A mistyped --config.data.manual_dir: wikitext tried the download and said "Could not
    download ...; pass --config.data.manual_dir=DIR", as if none had been given."""
    monkeypatch.setattr(wikitext, "URLS", {k: "http://127.0.0.1:9/w.zip" for k in wikitext.URLS})
    missing = tmp_path / "dwonloads"
    with pytest.raises(DataError) as e:
        prepare_builder(parse_spec(corpus), str(tmp_path / "d"), str(missing))
    message = str(e.value)
    assert message.startswith(f"--config.data.manual_dir={missing} does not exist"), message
    assert "\n" not in message
