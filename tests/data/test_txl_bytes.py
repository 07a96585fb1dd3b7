"""`data.tokenizer='txl_bytes'`: Transformer-XL's enwik8 ids, the ids of the authors' default
(character-level) checkpoints, golden against their own `data_utils.Corpus` (fixture written by
tools/golden_txl_vocab.py with their code): the numbering, the id streams through our tfds
enwik8 pipeline, their trained checkpoint's loss on those ids, and a workdir's round trip."""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import optax
import pytest

import llp_jax
from llp_jax.configs import paper_enwik8
from llp_jax.data import DataError, build_datasets, make_tokenizer, workdir_store
from llp_jax.data.txl_bytes import TxlByteTokenizer
from llp_jax.errors import LLPError
from llp_jax.evaluation import runner
from llp_jax.interop import authors, torch_format, vocabulary_note, workdir
from llp_jax.training import trainer
from tests.helpers import REPO, small_config
from tests.helpers.cli import assert_one_line_error, run_cli

FIXTURES = os.path.join(REPO, "tests", "fixtures", "authors")
GOLDEN = np.load(os.path.join(FIXTURES, "txl_enwik8.npz"))
THEIR_CHECKPOINT = os.path.join(FIXTURES, "ECPAttention_txl_enwik8.pt")


def _splits() -> dict[str, bytes]:
    data, (a, b, _) = GOLDEN["data"].tobytes(), GOLDEN["split_bytes"]
    return {"train": data[:a], "valid": data[a : a + b], "test": data[a + b :]}


def test_numbering_and_streams_are_their_corpus():
    splits = _splits()
    tok = TxlByteTokenizer.count(splits.values())
    assert tok.vocab_size == len(GOLDEN["symbols"]) == 108
    np.testing.assert_array_equal(np.frombuffer(tok.symbols, np.uint8), GOLDEN["symbols"])
    for name, raw in splits.items():  # newlines dropped, bytes cut inside a character exact
        np.testing.assert_array_equal(tok.encode_bytes(raw), GOLDEN[name], err_msg=name)


def test_ties_go_to_the_first_seen_and_newlines_are_no_token():
    tok = TxlByteTokenizer.count([b"ba\n", b"\n\ncab"])  # a: 2, b: 2 (b seen first), c: 1
    assert tok.symbols == b"bac" and tok.vocab_size == 3
    np.testing.assert_array_equal(tok.encode("abc\nba"), [1, 0, 2, 0, 1])
    assert tok.decode([1, 0, 2, 7, -1, 0]) == "abcb"  # out-of-range ids dropped
    assert (tok.bos_id, tok.eos_id, tok.pad_id, tok.eod_id) == (-1, -1, -1, -1)
    # str parts count their UTF-8 bytes, as the files' decimal values do.
    assert TxlByteTokenizer.count(["é"]).symbols == "é".encode()
    with pytest.raises(DataError, match="has none but newlines"):
        TxlByteTokenizer.count([b"\n\n", b""])


def test_a_byte_the_corpus_never_held_is_named():
    tok = TxlByteTokenizer.count([b"plain ascii"])
    with pytest.raises(
        DataError, match=r"^characters '☃' \(U\+2603\), 'é' \(U\+00E9\) are not in the 8-byte"
    ):
        tok.encode("plain\n☃ é ☃")
    with pytest.raises(DataError, match=r"^bytes 0x83, 0x98, 0xe2 are not in the 8-byte"):
        tok.encode_bytes("☃".encode())
    np.testing.assert_array_equal(tok.encode("pain\n"), tok.encode_bytes(b"pain"))


@pytest.mark.parametrize(
    "damage,why",
    [
        (b"not json", "is damaged"),
        (b"[1, 2]", "is damaged"),
        (json.dumps({"format": "other", "symbols": [65]}).encode(), "format 'other'"),
        (json.dumps({"format": "llp_jax.txl_bytes.v1", "symbols": "AB"}).encode(), "not a list"),
        (json.dumps({"format": "llp_jax.txl_bytes.v1", "symbols": [65, 10]}).encode(), "holds 10"),
        (json.dumps({"format": "llp_jax.txl_bytes.v1", "symbols": [65, 65]}).encode(), "twice"),
        (json.dumps({"format": "llp_jax.txl_bytes.v1", "symbols": []}).encode(), "is empty"),
        (json.dumps({"format": "llp_jax.txl_bytes.v1", "symbols": [300]}).encode(), "holds 300"),
    ],
)
def test_a_damaged_vocabulary_file_is_one_line(damage, why, tmp_path):
    path = tmp_path / "run.txl_bytes.json"
    path.write_bytes(damage)
    with pytest.raises(DataError, match=why) as e:
        make_tokenizer(str(path))
    assert "\n" not in str(e.value) and str(path) in str(e.value)
    tok = TxlByteTokenizer.count([b"abc"])
    assert TxlByteTokenizer.from_json(tok.file_bytes, source="t").symbols == b"abc"


def _enwik8_config(tmp_path, data: bytes | None = None):
    manual = tmp_path / "manual"
    manual.mkdir(exist_ok=True)
    (manual / "enwik8").write_bytes(GOLDEN["data"].tobytes() if data is None else data)
    config = paper_enwik8.get_config("llp24_txl").data
    config.update(data_dir=str(tmp_path / "tfds"), manual_dir=str(manual),
                  cache_dir=str(tmp_path / "cache"), chunk_tokens=512, shuffle=False)  # fmt: skip
    return config


def test_tfds_enwik8_gives_their_ids(small_enwik8, tmp_path, monkeypatch):
    config = _enwik8_config(tmp_path)
    ds = build_datasets(config, 64, process_index=0, process_count=1)
    assert ds.tokenizer.vocab_size == 108
    np.testing.assert_array_equal(ds.train_tokens[0 : len(ds.train_tokens)], GOLDEN["train"])
    for split, theirs in (("validation", "valid"), ("test", "test")):
        np.testing.assert_array_equal(ds.eval_tokens(split), GOLDEN[theirs])
    # Counted once: later runs read the numbering kept beside the tokens.
    monkeypatch.setattr(TxlByteTokenizer, "count", None)
    again = build_datasets(config, 64, process_index=0, process_count=1)
    assert again.tokenizer.symbols == ds.tokenizer.symbols


def test_their_enwik8_checkpoint_scores_their_loss(small_enwik8, tmp_path):
    """Their ECP model, trained by their code on their ids, imported and evaluated on the ids
    our pipeline makes: their wrapper's loss on their test windows."""
    wd = str(tmp_path / "wd")
    cfg, step = workdir.import_checkpoint(THEIR_CHECKPOINT, wd, seq_len=64, segments=4,
                                          data_config=_enwik8_config(tmp_path))  # fmt: skip
    assert (cfg.vocab_size, step) == (108, 40) and not vocabulary_note(
        cfg, _enwik8_config(tmp_path)
    )
    # llp_jax.load_model: no data record in an import; its tokenizer from the data section.
    np.testing.assert_array_equal(
        np.frombuffer(llp_jax.load_model(wd).tokenizer.symbols, np.uint8), GOLDEN["symbols"]
    )
    setup = runner.setup(wd)  # the workdir's recorded data section
    test = setup.data.eval_tokens("test")
    np.testing.assert_array_equal(test, GOLDEN["test"])
    windows = np.stack([test[s : s + 65] for s in GOLDEN["test_starts"]])
    logits = np.asarray(setup.model(windows[:, :-1]))
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, windows[:, 1:]).mean()
    assert abs(float(loss) - float(GOLDEN["test_loss"])) < 1e-5
    assert float(GOLDEN["test_loss"]) < np.log(108) - 1  # trained: the ids carry meaning


def test_their_checkpoint_on_other_data_is_refused(small_enwik8, tmp_path):
    """Other bytes count to another numbering (here 107 values, not 108): evaluating their
    model on it would score the wrong ids."""
    other = GOLDEN["data"].tobytes().replace(b"Z", b"z")
    wd = str(tmp_path / "wd")
    workdir.import_checkpoint(THEIR_CHECKPOINT, wd, seq_len=64, segments=4,
                              data_config=_enwik8_config(tmp_path, other))  # fmt: skip
    with pytest.raises(LLPError, match="numbers this data's 107 byte values but the model has 108"):
        runner.setup(wd)


def test_import_with_byte_data_notes_their_vocabulary(tmp_path):
    """Their enwik8 checkpoint imported without a data section: the note names the config."""
    result = run_cli("convert", f"--from_authors={THEIR_CHECKPOINT}", f"--workdir={tmp_path}/w",
                     "--seq_len=64", "--segments=4")  # fmt: skip
    assert result.rc == 0, str(result)
    assert "108 token ids are not bytes" in result.stdout, str(result)
    # Evaluated anyway: one line, not a score of their ids read as bytes.
    result = run_cli("evaluate", f"--workdir={tmp_path}/w")
    assert_one_line_error(result, "holds the authors'", "with 108 token ids, but tokenizer byte "
                          "has 259; import it again with experiments.convert --overwrite and the --config "
                          "whose data.tokenizer gives its ids")  # fmt: skip
    cfg = authors.infer_config(authors.read_checkpoint(THEIR_CHECKPOINT), seq_len=64, segments=4)
    cfg = cfg.replace(vocab_size=204)
    assert "paper_enwik8.py:llp24_txl" in vocabulary_note(cfg)


def test_own_text_round_trip_through_a_workdir(corpus_file, tmp_path):
    """Trained on own text with txl_bytes: the workdir keeps the numbering; evaluation and a
    resumed run read it back from there (the corpus is not counted again)."""
    config = small_config(corpus_file, num_steps=2, checkpoint_every=2)
    config.data.update(tokenizer="txl_bytes", document_boundaries="none")
    wd = str(tmp_path / "wd")
    trainer.train(config, wd)
    record = workdir_store.read_record(wd)
    assert record["tokenizer"].startswith("txl_bytes:")
    own = workdir_store.tokenizer(wd, record)
    with open(corpus_file, "rb") as f:
        text = f.read()
    np.testing.assert_array_equal(own.encode_bytes(text[:500]), make_tokenizer(
        "txl_bytes", split_texts=[text.decode()]).encode_bytes(text[:500]))  # fmt: skip
    assert runner.setup(wd).data.tokenizer.symbols == own.symbols
    # --text: other documents, joined by newlines as the run's were (it has no end token).
    docs = tmp_path / "docs.jsonl"
    docs.write_text('{"text": "Emma said"}\n{"text": "she would"}\n')
    got = runner.setup(wd, text=str(docs)).data.eval_tokens("text")
    np.testing.assert_array_equal(got, own.encode("Emma said\nshe would"))
    # The run's file as data.tokenizer: other text read with the run's ids.
    kept = os.path.join(wd, "data", own.file_name)
    assert make_tokenizer(kept).symbols == own.symbols
    loaded = llp_jax.load_model(wd)
    imported = dataclasses.replace(loaded, data_config={"tokenizer": kept}, workdir=str(tmp_path))
    assert imported.tokenizer.symbols == own.symbols  # a workdir without a record names a file
    # Fine-tuned on other text (other counts: another numbering if counted again), the run
    # keeps the source's ids.
    other = tmp_path / "other.txt"
    other.write_bytes(text[len(text) // 3 :] + text[-len(text) // 2 :])
    fine = small_config(str(other), num_steps=1, checkpoint_every=1)
    fine.data.update(tokenizer="txl_bytes", document_boundaries="none")
    fine.train.init_from = wd
    trainer.train(fine, str(tmp_path / "fine"))
    assert workdir_store.tokenizer(str(tmp_path / "fine")).symbols == own.symbols
    assert TxlByteTokenizer.count([other.read_bytes()]).symbols != own.symbols
    other.write_text(text.decode().swapcase())  # letters the source never saw: no ids for them
    with pytest.raises(DataError, match="'X' .*are not in the 73-byte 'txl_bytes' vocabulary"):
        trainer.train(fine, str(tmp_path / "fine2"))
    os.remove(os.path.join(wd, "data", own.file_name))
    with pytest.raises(DataError, match="the run's tokenizer.*is missing"):
        workdir_store.tokenizer(wd, record)


def test_eod_boundaries_need_none_in_one_line(corpus_file, tmp_path):
    result = run_cli("train", "--config=llp_jax/configs/tiny.py:llp", f"--workdir={tmp_path}/w",
                     f"--config.data.corpus={corpus_file}", "--config.data.tokenizer=txl_bytes")  # fmt: skip
    assert_one_line_error(result, "has no end-of-document token",
                          "--config.data.document_boundaries=none")  # fmt: skip


def test_their_bert_sized_checkpoint_is_not_scored_as_bytes(tmp_path):
    """A checkpoint of their WikiText-103 runs (28,996 bert-base-cased ids) imported with the
    default data: 259 byte ids fit inside its vocabulary, so only its origin says the ids are
    wrong; evaluation refuses, naming the tokenizer to give."""
    saved = torch_format.load(os.path.join(FIXTURES, "ECPAttention.pt"))
    state = dict(saved["state_dict"])
    for key in ("model.token_emb.weight", "model.to_logits.1.weight", "model.to_logits.1.bias"):
        rows = state[key]
        state[key] = np.concatenate([rows, np.zeros((28_996 - 259, *rows.shape[1:]), rows.dtype)])
    path = str(tmp_path / "wt103.pt")
    torch_format.save({"epoch": 3, "state_dict": state}, path)
    wd = str(tmp_path / "wd")
    cfg, _ = workdir.import_checkpoint(path, wd, seq_len=64, segments=4)
    assert "bert-base-cased's ids" in vocabulary_note(cfg)
    with pytest.raises(LLPError, match="with 28996 token ids .bert-base-cased.s ids.*has 259; "
                       "import it again with experiments.convert --overwrite and "
                       "--config.data.tokenizer=bert-base-cased/"):  # fmt: skip
        runner.setup(wd)
