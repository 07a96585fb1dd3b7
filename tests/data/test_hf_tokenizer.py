"""A Hugging Face tokenizer.json as a run's tokenizer (`--config.data.tokenizer=<file or folder>`),
for each family's file as the `tokenizers` library writes it (tests/helpers/hf_tokenizers.py):
bert-base-cased's WordPiece gives the paper's own token stream (its code's `[SEP]` at every line
end); byte-level BPE (GPT-2, Llama 3) and the byte-fallback BPE of Llama 2 and Gemma give the
library's ids for the whole text (Llama 2's and Gemma's are SentencePiece's own) and its text
back, in pieces or not; T5's Unigram (no newline token) gives the library's ids; and through the
real CLIs a run keeps its tokenizer.json in the workdir, so evaluation, sampling and resuming
need nothing else. Bad files, folders and a missing library are one-line errors."""

from __future__ import annotations

import shutil
import sys

import numpy as np
import pytest

tokenizers = pytest.importorskip("tokenizers")

import sentencepiece as spm  # noqa: E402

from llp_jax.data import (  # noqa: E402
    DataConfig,
    DataError,
    hf_tokenizer,
    load_austen,
    make_tokenizer,
)
from llp_jax.errors import ConfigError  # noqa: E402
from tests.helpers import hf_tokenizers as hf_families  # noqa: E402
from tests.helpers.cli import assert_one_line_error, cli_env, run_cli  # noqa: E402
from tests.helpers.hf_tokenizers import FAMILIES, TEXTS  # noqa: E402
from tests.helpers.real_formats import wiki_split_text  # noqa: E402
from tests.reliability.conftest import tiny_args  # noqa: E402


def _library(folder):
    return tokenizers.Tokenizer.from_file(f"{folder}/tokenizer.json")


def test_each_family_gives_its_special_ids(families):
    """The end of a text and the newline are the family's own tokens; BERT has one [SEP] for
    both, so it ends lines (as in the paper's code) and documents have no token of their own."""
    expect = {"bert-base-cased": ("[SEP]", None), "gpt2": ("\u010a", "<|endoftext|>"),
              "llama3": ("\u010a", "<|end_of_text|>"), "t5": (None, "</s>"),
              "llama2": ("<0x0A>", "</s>"), "llama2-legacy": ("<0x0A>", "</s>"),
              "gemma": ("\n", "</s>")}  # fmt: skip
    for name, folder in families.items():
        for spec in (folder, f"{folder}/tokenizer.json"):
            tok = make_tokenizer(spec)
            assert tok.name == f"hf:{name}"
            lib = _library(folder)
            assert tok.vocab_size == lib.get_vocab_size(with_added_tokens=True)
            newline, end = expect[name]
            assert tok.newline_id == (None if newline is None else lib.token_to_id(newline))
            assert tok.eod_id == (-1 if end is None else lib.token_to_id(end))


def _long_text() -> str:
    """Austen with what tokenisers treat apart: runs of blank lines, lines opening with spaces,
    tabs and CRLF, a space before a newline, characters outside the tokenizers' vocabularies."""
    text, _ = wiki_split_text("valid", 3)  # WikiText's ' = Title = ' and ' \n' lines
    odd = "\n\n\n  indented\n \n\t\ttab\r\nCRLF \U0001f600 caf\u00e9 \u4e2d\u6587 \n\n"
    return load_austen().splits["validation"][:60_000] + odd + text + odd


@pytest.mark.parametrize("name", ["gpt2", "llama3", "llama2", "llama2-legacy", "gemma"])
def test_families_with_a_newline_token_give_the_librarys_ids_for_the_whole_text(families, name):
    """Not each line's: Llama 2 prepends '▁' to a text (so each line would open with an extra
    token), GPT-2 and Llama 3 have tokens for runs of newlines. Llama 2's decoder strips the space
    opening a text, so only the legacy file (as SentencePiece itself) gives back a line opening
    with one."""
    tok, lib = make_tokenizer(families[name]), _library(families[name])
    specials = [t.content for t in lib.get_added_tokens_decoder().values() if t.special]
    plain = _long_text().replace("<unk>", "<u>")  # (a special's name in a text is its id)
    for text in [*TEXTS, _long_text(), plain]:
        ids = tok.encode(text)
        assert ids.dtype == np.int32
        assert ids.tolist() == lib.encode(text, add_special_tokens=False).ids, text[:60]
        assert tok.decode(ids) == lib.decode(ids.tolist())
        if not any(x in text for x in specials) and (name != "llama2" or text[:1] != " "):
            assert tok.decode(ids) == text
    assert tok.decode(tok.encode("\ud800 lone surrogate")) == tok.decode(
        tok.encode("? lone surrogate")
    )
    assert tok.decode([-5, tok.vocab_size, 10**9]) == ""  # ids a model cannot mean: dropped
    if name.startswith(("llama2", "gemma")):  # the hub folder also holds the SentencePiece model
        sp = spm.SentencePieceProcessor(model_file=f"{families[name]}/tokenizer.model")
        assert tok.encode(plain).tolist() == sp.encode(plain)


@pytest.mark.parametrize("name", ["gpt2", "llama3", "llama2", "llama2-legacy", "gemma", "bare"])
def test_pieces_give_the_same_ids_and_a_tokenizer_whose_tokens_cross_lines_encodes_whole(
    families, name, monkeypatch
):
    """Long texts are encoded in pieces cut at line starts, where every family's pre-tokeniser
    cuts (or no token holds a newline and more after it: Llama 2, Gemma). A BPE without a
    pre-tokeniser, trained on text with its newlines, learns tokens such as 'e\\n' and '\\n"':
    its texts are encoded whole, and so they are if a token crosses a cut all the same."""
    if name == "bare":
        lib = tokenizers.Tokenizer(tokenizers.models.BPE())
        lib.train_from_iterator(hf_families._paragraphs(),
                                tokenizers.trainers.BpeTrainer(vocab_size=600))  # fmt: skip
        tok = hf_tokenizer.HFTokenizer(lib.to_str().encode(), "hf:bare", source="bare")
    else:
        tok, lib = make_tokenizer(families[name]), _library(families[name])
    assert tok._in_pieces == (name != "bare")
    monkeypatch.setattr(hf_tokenizer, "PIECE_CHARS", 64)
    monkeypatch.setattr(hf_tokenizer, "PIECES_PER_BATCH", 5)
    pieces, encode = [], hf_tokenizer._encode_in_pieces
    monkeypatch.setattr(hf_tokenizer, "_encode_in_pieces",
                        lambda *args: pieces.append(list(got := encode(*args))) or got)  # fmt: skip
    text = _long_text()
    assert tok.encode(text).tolist() == lib.encode(text, add_special_tokens=False).ids
    assert (pieces[0][0] is not None) if name != "bare" else pieces == []
    if name == "bare":  # told (wrongly) that its texts may be cut, it finds a token that crosses
        tok._in_pieces = True
        assert tok.encode(text).tolist() == lib.encode(text, add_special_tokens=False).ids
        assert pieces == [[None]]


def test_a_file_saved_with_truncation_and_padding_keeps_every_token(families, tmp_path):
    """sentence-transformers' tokenizer.json files hold `truncation` (max_length 128 or 512) and
    `padding`: every text (and every piece of one) was cut to 16 ids and padded to 32 here."""
    lib = _library(families["gpt2"])
    lib.enable_truncation(max_length=16)
    lib.enable_padding(length=32, pad_id=0, pad_token="<|endoftext|>")
    lib.save(str(tmp_path / "tokenizer.json"))
    tok, plain = make_tokenizer(str(tmp_path)), make_tokenizer(families["gpt2"])
    text = _long_text()
    assert tok.encode(text).tolist() == plain.encode(text).tolist()
    assert tok.decode(tok.encode(text)) == text
    bert = _library(families["bert-base-cased"])  # lines, not pieces
    bert.enable_truncation(max_length=4)
    bert.save(str(tmp_path / "bert.json"))
    tok, plain = (
        make_tokenizer(str(tmp_path / "bert.json")),
        make_tokenizer(families["bert-base-cased"]),
    )
    assert tok.encode(text).tolist() == plain.encode(text).tolist()


def test_t5_without_a_newline_token_encodes_as_its_library_does(families):
    tok, lib = make_tokenizer(families["t5"]), _library(families["t5"])
    for text in TEXTS:
        assert tok.encode(text).tolist() == lib.encode(text, add_special_tokens=False).ids


def test_bert_gives_the_papers_token_stream(families):
    """The paper's code tokenises WikiText-103 line by line with bert-base-cased, each line's
    '\\n' replaced by '[SEP]' and '<unk>' by '[UNK]' (WikitextDataset.py); the same text with
    '<unk>' written as '[UNK]' gives exactly that stream here, and decodes to its lines."""
    tok, lib = make_tokenizer(families["bert-base-cased"]), _library(families["bert-base-cased"])
    text, _ = wiki_split_text("valid", 3)
    theirs = [i for line in text.splitlines(keepends=True)
              for i in lib.encode(line.strip(" ").replace("\n", "[SEP]").replace("<unk>", "[UNK]"),
                                  add_special_tokens=False).ids]  # fmt: skip
    ours = tok.encode(text.replace("<unk>", "[UNK]"))
    assert ours.tolist() == theirs
    assert tok.decode(ours).count("\n") == text.count("\n")


def test_wikitext_through_tfds_with_bert_is_the_papers_stream(families, wikitext_dir, tmp_path):
    """`--config.data.corpus=tfds:wikitext103 --config.data.tokenizer=<bert-base-cased>`: each
    split is, id for id, what WikitextDataset.py builds from the same file (its '<unk>' written
    '[UNK]', a '[SEP]' at every line end)."""
    from tests.data.test_tfds_pipeline import build, config_for  # noqa: PLC0415

    folder = families["bert-base-cased"]
    manual, texts, _ = wikitext_dir
    data = build(config_for("tfds:wikitext103", tmp_path, manual, tokenizer=folder))
    lib = _library(folder)
    for split, text in texts.items():
        theirs = [i for line in text.splitlines(keepends=True) for i in lib.encode(
            line.strip(" ").replace("\n", "[SEP]").replace("<unk>", "[UNK]"),
            add_special_tokens=False).ids]  # fmt: skip
        ours = data.train_tokens[0 : len(data.train_tokens)] if split == "train" else None
        ours = data.eval_tokens(split) if ours is None else ours
        assert np.asarray(ours).tolist() == theirs, split
    assert data.tokenizer.name == "hf:bert-base-cased"


def test_a_document_mask_needs_a_tokenizer_with_a_document_end(families):
    """BERT's [SEP] ends lines, so on WikiText (whose articles are one stream, no document token)
    a document mask would find nothing to keep attention inside."""
    from llp_jax.training.setup import resolve_model_config  # noqa: PLC0415

    tok = make_tokenizer(families["bert-base-cased"])
    fields = {"name": "llp", "seq_len": 64, "segment_len": 16, "document_mask": True}
    with pytest.raises(ConfigError, match="tokenizer hf:bert-base-cased has none of its own"):
        resolve_model_config(fields, tok.vocab_size, tok.eod_id, f"tokenizer {tok.name}")
    gpt2 = make_tokenizer(families["gpt2"])
    assert resolve_model_config(fields, gpt2.vocab_size, gpt2.eod_id).eod_id == gpt2.eod_id


def test_bad_tokenizer_files_are_one_line_errors(families, tmp_path, monkeypatch):
    cut = tmp_path / "cut.json"
    cut.write_bytes(open(f"{families['gpt2']}/tokenizer.json", "rb").read()[:500])
    config = tmp_path / "config.json"
    config.write_text('{"architectures": ["BertForMaskedLM"], "vocab_size": 28996}')
    cases = {str(cut): "is damaged or not a Hugging Face tokenizer.json",
             str(config): "is a JSON file but not a tokenizer.json",
             str(tmp_path / "gone.json"): "does not exist"}  # fmt: skip
    for spec, fragment in cases.items():
        with pytest.raises(DataError, match=fragment) as e:
            make_tokenizer(spec)
        assert "\n" not in str(e.value)
    with pytest.raises(DataError, match="is a folder without a tokenizer.json"):
        make_tokenizer(str(tmp_path))
    with pytest.raises(DataError, match="gone.json' does not exist; give 'byte'"):
        make_tokenizer(str(tmp_path / "gone.json"))
    with pytest.raises(ConfigError, match="must be one of"):
        DataConfig(tokenizer="gpt2").validate()  # a name, not a path: there is no hub here
    monkeypatch.setitem(sys.modules, "tokenizers", None)  # not installed
    with pytest.raises(DataError, match="pip install tokenizers"):
        make_tokenizer(families["gpt2"])


def test_the_clis_train_evaluate_sample_and_resume_with_a_tokenizer_json(
    families, tmp_path, corpus_file
):
    """Through the real programs; the workdir keeps the tokenizer.json, so with the hub folder
    gone evaluation, sampling and resuming still work, and so does resuming with the folder at
    another path (the same bytes; another tokenizer is refused). BERT needs documents joined by a
    newline ([SEP]); fine-tuning from it with another tokenizer is refused, naming its file."""
    hub = tmp_path / "hub"
    shutil.copytree(families["gpt2"], hub / "gpt2")
    env = cli_env(str(tmp_path / "xla"))
    run = tmp_path / "run"
    args = [*tiny_args(run, corpus_file, steps=2), f"--config.data.tokenizer={hub / 'gpt2'}"]
    result = run_cli("train", *args, env=env)
    assert result.rc == 0, str(result)
    assert "tokenizer hf:gpt2 vocab 800" in result.stdout
    assert (run / "data" / "tokenizer.json").read_bytes() == (
        hub / "gpt2" / "tokenizer.json"
    ).read_bytes()
    shutil.rmtree(hub)
    evaluated = run_cli("evaluate", f"--workdir={run}", "--protocols=standard", env=env)
    assert evaluated.rc == 0 and "| standard |" in evaluated.stdout, str(evaluated)
    sampled = run_cli("sample", f"--workdir={run}", "--prompt=It is a truth", env=env)
    assert sampled.rc == 0 and "It is a truth" in sampled.stdout, str(sampled)
    resumed = run_cli("train", *tiny_args(run, corpus_file, steps=4), args[-1], env=env)
    assert resumed.rc == 0 and "resumed from step 2" in resumed.stdout, str(resumed)
    moved = shutil.copytree(families["gpt2"], tmp_path / "elsewhere" / "gpt2")  # same bytes
    again = [*tiny_args(run, corpus_file, steps=6), f"--config.data.tokenizer={moved}"]
    resumed = run_cli("train", *again, env=env)
    assert resumed.rc == 0 and "resumed from step 4" in resumed.stdout, str(resumed)
    again[-1] = f"--config.data.tokenizer={families['llama3']}"
    assert_one_line_error(run_cli("train", *again, env=env), "trained on other data",
                          f"vs '{families['llama3']}'")  # fmt: skip

    bert = [*tiny_args(tmp_path / "bert", corpus_file, steps=2),
            f"--config.data.tokenizer={families['bert-base-cased']}"]  # fmt: skip
    assert_one_line_error(run_cli("train", *bert, env=env), "a BERT [SEP] ends every line",
                          "--config.data.document_boundaries=none")  # fmt: skip
    result = run_cli("train", *bert, "--config.data.document_boundaries=none", env=env)
    assert result.rc == 0, str(result)
    other = [*tiny_args(tmp_path / "tuned", corpus_file, steps=2),
             f"--config.data.tokenizer={families['t5']}",
             f"--config.train.init_from={tmp_path / 'bert'}"]  # fmt: skip
    assert_one_line_error(run_cli("train", *other, env=env), "token ids differ",
                          str(tmp_path / "bert" / "data" / "tokenizer.json"))  # fmt: skip


def test_a_token_stream_is_each_documents_ids_and_its_end(families):
    """`encode_documents` writes each document's ids into one stream as they come (sized by the
    UTF-8 bytes, grown where a tokenizer has more ids than bytes) instead of concatenating them
    all: the same stream as the concatenation, for byte tokens and every family with an
    end-of-document token, whether the bytes bound holds or not."""
    from llp_jax.data.datasets import encode_documents
    from llp_jax.data.tokenizers import ByteTokenizer

    texts = [*[t for t in TEXTS if t.strip()], "\U0001f600", "a", "\u00e9\u00e9", "\ud800 lone"]
    grew = []
    for docs in (texts, ["\U0001f600 \U0001f9ea"] * 50):  # emoji only: more ids than bytes
        for tok in [ByteTokenizer(), *(make_tokenizer(families[n]) for n in FAMILIES[1:])]:
            want = np.concatenate([np.append(tok.encode(d), tok.eod_id) for d in docs])
            got = encode_documents(tok, docs)
            assert got.dtype == np.int32 and np.array_equal(got, want), tok.name
            assert np.array_equal(encode_documents(tok, iter(docs)), want)  # any iterable
            bound = sum(len(d.encode("utf-8", "replace")) + 1 for d in docs)
            grew.append((tok.name, len(want) > bound))
    assert any(g for _, g in grew) and not any(g for name, g in grew if name == "byte"), grew
