"""Tests for llp_jax.data.tokenizers: round trips, SentencePiece caching, the unigram baseline."""

import random

import numpy as np
import pytest
import sentencepiece as spm

from llp_jax.data import DataError, sentencepiece_trainer
from llp_jax.data import tokenizers as tk

SAMPLES = [
    "",
    "It is a truth universally acknowledged.",
    "  leading and trailing spaces  \n\n\tTabs\r and CR\n",
    "Ünïcödé: 日本語, emoji 🙂🚀, math ∑∫, RTL עברית, combining é",
    "\x00\x01 control \x7f chars",
]


def small_text(seed: int = 0, lines: int = 400) -> str:
    rng = random.Random(seed)
    words = (
        "the of and to a in that it was her she not be he his as had with for you but at".split()
    )
    return (
        "\n".join(
            " ".join(rng.choice(words) for _ in range(rng.randint(0, 14))) for _ in range(lines)
        )
        + "\nCapital Letters, punctuation; and 12345!"
    )


@pytest.fixture(scope="module")
def sp_cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("sp_cache"))


@pytest.fixture(scope="module")
def sp_tok(sp_cache):
    return tk.make_tokenizer(
        "sentencepiece", vocab_size=320, train_text=small_text(), cache_dir=sp_cache
    )


@pytest.mark.parametrize("text", SAMPLES)
def test_byte_round_trip(text):
    tok = tk.ByteTokenizer()
    ids = tok.encode(text)
    assert ids.dtype == np.int32 and ids.ndim == 1
    assert ids.size == len(text.encode("utf-8")) and ids.max(initial=0) < 256
    assert tok.decode(ids) == text


def test_byte_specials_and_invalid_sequences_decode():
    tok = tk.ByteTokenizer()
    assert isinstance(tok, tk.Tokenizer)
    assert (tok.vocab_size, tok.pad_id, tok.bos_id, tok.eos_id) == (259, 256, 257, 258)
    assert tok.decode([tok.bos_id, 104, 105, tok.eos_id, tok.pad_id]) == "hi"
    assert tok.decode([0xFF, 0xC3, 104, -3, 10**6]) == "\ufffd\ufffdh"
    assert tok.decode(np.zeros((0,), np.int32)) == ""
    assert tok.decode(tok.encode("a\udc80b")) == "a?b"  # Lone surrogates cannot crash encode.


@pytest.mark.parametrize("text", SAMPLES)
def test_sentencepiece_round_trip(sp_tok, text):
    ids = sp_tok.encode(text)
    assert ids.dtype == np.int32 and ids.ndim == 1
    assert ids.size == 0 or (ids.min() >= 0 and ids.max() < sp_tok.vocab_size)
    assert sp_tok.decode(ids) == text


def test_sentencepiece_model_properties(sp_tok):
    assert isinstance(sp_tok, tk.Tokenizer)
    assert 300 <= sp_tok.vocab_size <= 320
    assert len({sp_tok.bos_id, sp_tok.eos_id, sp_tok.pad_id, sp_tok.newline_id}) == 4
    ids = sp_tok.encode("the of and\nthe")
    assert list(ids).count(sp_tok.newline_id) == 1
    # Compresses its own training text: fewer tokens than bytes.
    text = small_text()
    assert sp_tok.encode(text).size < 0.7 * len(text.encode())
    assert sp_tok.decode([sp_tok.bos_id, -1, 10**6, sp_tok.eos_id, sp_tok.pad_id]) == ""


def test_sentencepiece_cache_hit_and_invalidation(sp_cache, sp_tok, monkeypatch):
    calls = []
    real_train = sentencepiece_trainer.train_proto
    monkeypatch.setattr(sentencepiece_trainer, "train_proto",
                        lambda *a: calls.append(a) or real_train(*a))  # fmt: skip
    again = tk.make_tokenizer(
        "sentencepiece", vocab_size=320, train_text=small_text(), cache_dir=sp_cache
    )
    assert not calls, "second call with the same text and settings must not retrain"
    assert again.model_proto == sp_tok.model_proto
    tk.make_tokenizer(
        "sentencepiece", vocab_size=320, train_text=small_text(seed=1), cache_dir=sp_cache
    )
    assert len(calls) == 1, "a changed corpus must retrain"
    tk.make_tokenizer(
        "sentencepiece",
        vocab_size=320,
        train_text=small_text(),
        cache_dir=sp_cache,
        model_type="bpe",
    )
    assert len(calls) == 2, "changed settings must retrain"


def test_sentencepiece_training_is_deterministic(tmp_path, sp_tok):
    fresh = tk.train_sentencepiece(small_text(), vocab_size=320, cache_dir=str(tmp_path))
    assert fresh.model_proto == sp_tok.model_proto


def test_sentencepiece_from_model_file(sp_cache, sp_tok, tmp_path):
    path = tmp_path / "my.model"
    path.write_bytes(sp_tok.model_proto)
    loaded = tk.make_tokenizer(str(path))
    text = "the of and to\nher she"
    np.testing.assert_array_equal(loaded.encode(text), sp_tok.encode(text))
    assert loaded.name == "sentencepiece:my.model"


def test_foreign_sentencepiece_model_without_newline_piece(tmp_path):
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(small_text().split("\n")),
        model_prefix=str(tmp_path / "plain"),
        vocab_size=40,
        minloglevel=2,
    )
    tok = tk.make_tokenizer(str(tmp_path / "plain.model"))
    assert tok.newline_id is None
    assert tok.decode(tok.encode("the of and to")) == "the of and to"
    assert isinstance(tok.decode(tok.encode("a\nb 日本")), str)


def test_foreign_sentencepiece_model_without_an_eos_piece(tmp_path):
    """A model trained elsewhere with eos_id=-1 put -1 after every document (then 'ids in
    [-1, ...] outside the vocabulary'); it is one line naming the way out, which works."""
    from llp_jax.data import build_datasets  # noqa: PLC0415

    spm.SentencePieceTrainer.train(sentence_iterator=iter(small_text().split("\n")),
                                   model_prefix=str(tmp_path / "no_eos"), vocab_size=40,
                                   eos_id=-1, minloglevel=2)  # fmt: skip
    corpus = tmp_path / "c.txt"
    corpus.write_text(small_text() * 3)
    data = dict(corpus=str(corpus), tokenizer=str(tmp_path / "no_eos.model"))
    with pytest.raises(DataError, match="no end-of-sequence piece .* set --config.data.document_"
                       "boundaries=none") as e:  # fmt: skip
        build_datasets(data, 32, process_index=0, process_count=1)
    assert "\n" not in str(e.value)
    joined = build_datasets({**data, "document_boundaries": "none"}, 32, process_index=0,
                            process_count=1)  # fmt: skip
    assert joined.tokens["validation"].min() >= 0


def test_sentencepiece_bpe_and_long_lines(tmp_path):
    long_line = (
        " ".join(small_text().split()) * 3
    )  # One line far longer than SentencePiece's limit.
    assert len(long_line) > 20000
    tok = tk.make_tokenizer(
        "sentencepiece",
        vocab_size=300,
        train_text=long_line,
        cache_dir=str(tmp_path),
        model_type="bpe",
    )
    assert tok.decode(tok.encode(long_line[:5000])) == long_line[:5000]
    assert tok.encode(long_line[:5000]).size < 4000  # Learned merges, not just bytes.


# ----------------------------------------------------------------------------- any script
def _zipf_text(alphabet: list[str], lines: int, seed: int = 0) -> str:
    import random

    rng = random.Random(seed)
    weights = [1 / (i + 1) for i in range(len(alphabet))]
    return "\n".join("".join(rng.choices(alphabet, weights=weights, k=40)) for _ in range(lines))


SCRIPTS = {
    "chinese": [chr(0x4E00 + i) for i in range(3000)],  # 3,000 distinct characters
    "emoji": [chr(0x1F300 + i) for i in range(600)] + list(" abc"),
    "cyrillic": [chr(0x0410 + i) for i in range(64)] + list(" ,."),
    "mixed": [chr(0x4E00 + i) for i in range(800)]
    + [chr(0x0410 + i) for i in range(64)]
    + list("abcdefghij ,.!?")
    + [chr(0x1F600 + i) for i in range(80)],
}


@pytest.mark.parametrize("script", sorted(SCRIPTS))
@pytest.mark.parametrize("vocab", [2048, 512])
def test_sentencepiece_trains_on_any_unicode(tmp_path, script, vocab):
    """Far more distinct characters than the vocabulary holds: the rare ones are bytes, and
    every text still round-trips (the quoted failure: 3,000 Chinese characters at 2,048)."""
    text = _zipf_text(SCRIPTS[script], 1500)
    tok = tk.train_sentencepiece(text, vocab_size=vocab, cache_dir=str(tmp_path))
    assert tok.vocab_size <= vocab
    unseen = "".join(SCRIPTS[script][-50:]) + " \u0f00\U0001f9ff"  # rare and never-seen
    for sample in (text[:3000], unseen):
        assert tok.decode(tok.encode(sample)) == sample


def test_a_too_small_vocabulary_names_the_minimum(tmp_path):
    with pytest.raises(DataError, match="the minimum is 300") as e:
        tk.train_sentencepiece("some text\n" * 50, vocab_size=280, cache_dir=str(tmp_path))
    assert "\n" not in str(e.value)


def test_a_vocabulary_the_text_cannot_fill_says_what_it_got(tmp_path, capsys):
    """SentencePiece gives a small text fewer pieces than asked (no error, by design); the
    message says how many, not the size asked for."""
    tok = tk.train_sentencepiece("abc " * 5000, vocab_size=100_000, cache_dir=str(tmp_path))
    out = capsys.readouterr().out
    assert tok.vocab_size < 300
    assert f"vocab {tok.vocab_size:,} (of the 100,000 asked" in out, out
    full = tk.train_sentencepiece(small_text(), vocab_size=300, cache_dir=str(tmp_path))
    assert full.vocab_size == 300 and "vocab 300 on" in capsys.readouterr().out


@pytest.mark.parametrize(
    "damage, why",
    [
        (lambda proto: proto[: len(proto) // 2], "it does not parse"),
        (lambda proto: b"", "it is empty"),
        (lambda proto: b"xx", "unk is not defined"),
        (lambda proto: b"<html>403 Forbidden</html>", ""),
    ],
    ids=["truncated", "empty", "two-bytes", "an-html-page"],
)
def test_a_damaged_model_file_is_one_line(sp_tok, tmp_path, damage, why):
    path = tmp_path / "my.model"
    path.write_bytes(damage(sp_tok.model_proto))
    with pytest.raises(DataError, match="is damaged or not a SentencePiece model") as e:
        tk.make_tokenizer(str(path))
    assert str(path) in str(e.value) and why in str(e.value) and "\n" not in str(e.value)


def test_a_damaged_cached_model_is_trained_again(sp_tok, tmp_path, capsys):
    """The cache is written atomically, but a disk or a user can still damage it: it is a
    cache, so it is trained again (the same bytes) and replaced, not an error."""
    first = tk.train_sentencepiece(small_text(), vocab_size=320, cache_dir=str(tmp_path))
    [cached] = (tmp_path / "sentencepiece").glob("*.model")
    cached.write_bytes(first.model_proto[:100])
    capsys.readouterr()
    again = tk.train_sentencepiece(small_text(), vocab_size=320, cache_dir=str(tmp_path))
    assert again.model_proto == first.model_proto == cached.read_bytes()
    assert "is damaged or not a SentencePiece model" in capsys.readouterr().out


def test_the_data_summary_says_a_vocabulary_is_smaller_than_asked(tmp_path, capsys):
    """Trained, the tokenizer's line said 'vocab 4,142 (of the 50,000 asked ...)'; from the
    cache (every later run) only 'tokenizer sp_unigram50000_... vocab 4142'."""
    from llp_jax.data import build_datasets

    corpus = tmp_path / "small.txt"
    corpus.write_text(small_text() * 3)
    config = {"corpus": str(corpus), "tokenizer": "sentencepiece", "vocab_size": 50_000,
              "cache_dir": str(tmp_path / "cache")}  # fmt: skip
    for _ in ("trained", "cached"):
        data = build_datasets(config, 16, process_index=0, process_count=1)
        assert data.tokenizer.vocab_size < 50_000
        assert (f"vocab {data.tokenizer.vocab_size:,} (of the 50,000 asked: this text holds no "
                "more pieces)") in data.summary().splitlines()[0]  # fmt: skip


def test_texts_encoded_in_batches_give_each_texts_own_ids(sp_tok, tmp_path, monkeypatch):
    """`encode_texts` hands a tokenizer many documents at once (one call per paragraph spent
    most of its time starting), in batches of about BATCH_CHARS: every text gets its own ids
    (SentencePiece's for each line joined by the newline piece, or for the text where the model
    has none; its bytes), empty ones and ones with lone surrogates too, across batch ends, and a
    user's tokenizer object without `encode_batch` is asked text by text."""
    rng = random.Random(3)
    texts = [*SAMPLES, "\ud800 lone", ""] + [small_text(seed=s, lines=rng.randint(0, 30))
                                             for s in range(40)]  # fmt: skip
    foreign = tmp_path / "foreign"
    spm.SentencePieceTrainer.train(sentence_iterator=iter(small_text(lines=2000).splitlines()),
                                   model_prefix=str(foreign), vocab_size=40, minloglevel=2)  # fmt: skip
    without_newline = tk.make_tokenizer(f"{foreign}.model")
    assert without_newline.newline_id is None and sp_tok.newline_id is not None
    sp = lambda tok, text: tok._sp.encode(text.encode("utf-8", "replace").decode())  # noqa: E731
    expected = {
        "lines": lambda text: [i for k, line in enumerate(text.split("\n"))
                               for i in ([sp_tok.newline_id] if k else []) + sp(sp_tok, line)],
        "whole": lambda text: sp(without_newline, text),
        "bytes": lambda text: list(text.encode("utf-8", "replace")),
    }  # fmt: skip

    class Theirs:  # only `encode`: as a user's own tokenizer object may have
        encode = staticmethod(tk.ByteTokenizer().encode)

    monkeypatch.setattr(tk, "BATCH_CHARS", 500)
    cases = [(sp_tok, "lines"), (without_newline, "whole"), (tk.ByteTokenizer(), "bytes"),
             (Theirs(), "bytes")]  # fmt: skip
    for tok, how in cases:
        got = list(tk.encode_texts(tok, iter(texts)))
        assert len(got) == len(texts) and all(ids.dtype == np.int32 for ids in got)
        assert [ids.tolist() for ids in got] == [expected[how](text) for text in texts], how
