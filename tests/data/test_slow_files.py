"""A tokenizer.json made from a "slow" tokenizer's files (`llp_jax/data/slow_files.py`), checked
against the tokenizer.json the files came from: BERT's vocab.txt as the hub cache keeps it (the
authors' code), and GPT-2's vocab.json + merges.txt."""

from __future__ import annotations

import json

import numpy as np
import pytest

tokenizers = pytest.importorskip("tokenizers")

from llp_jax.data import DataError, make_tokenizer  # noqa: E402
from tests.helpers.hf_tokenizers import TEXTS  # noqa: E402
from tests.helpers.real_formats import wiki_split_text  # noqa: E402


def test_a_bert_vocab_txt_is_the_tokenizer_the_authors_code_loads(families, tmp_path):
    """`BertTokenizer.from_pretrained('bert-base-cased')` (the authors' code) keeps vocab.txt and
    tokenizer_config.json in the hub cache, no tokenizer.json: that folder (or its vocab.txt)
    gives the same ids as the tokenizer.json, cased as the config says (lowercased without one,
    as BertTokenizer's default); a vocab.txt that is not one is one line."""
    lib = tokenizers.Tokenizer.from_file(f"{families['bert-base-cased']}/tokenizer.json")
    vocab = sorted(lib.get_vocab().items(), key=lambda item: item[1])
    cache = tmp_path / "snapshots" / "5532cc56"
    cache.mkdir(parents=True)
    (cache / "vocab.txt").write_text("".join(f"{word}\n" for word, _ in vocab), "utf-8")
    (cache / "tokenizer_config.json").write_text('{"do_lower_case": false}')
    reference = make_tokenizer(families["bert-base-cased"])
    text, _ = wiki_split_text("valid", 3)
    text = text.replace("<unk>", "[UNK]")
    for spec in (cache, cache / "vocab.txt"):
        tok = make_tokenizer(str(spec))
        assert tok.name == "hf:5532cc56" and tok.newline_id == reference.newline_id
        assert tok.encode(text).tolist() == reference.encode(text).tolist()
    (cache / "tokenizer_config.json").unlink()
    lower = make_tokenizer(str(cache)).encode("It Was")
    assert (
        lower.tolist() == reference.encode("it was").tolist() != reference.encode("It Was").tolist()
    )
    (cache / "vocab.txt").write_text("a\na\n")
    with pytest.raises(DataError, match="cannot be read .not a BERT vocabulary"):
        make_tokenizer(str(cache))


def _slow_files(tokenizer_json, folder, prefix=""):
    """GPT-2's vocab.json and merges.txt (with its '#version' line), as its hub repository holds
    them beside its tokenizer.json, from that tokenizer.json."""
    model = json.loads(open(tokenizer_json, encoding="utf-8").read())["model"]
    folder.mkdir(exist_ok=True)
    (folder / f"{prefix}vocab.json").write_text(json.dumps(model["vocab"]), encoding="utf-8")
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    (folder / f"{prefix}merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n",
                                                encoding="utf-8")  # fmt: skip
    return folder


def test_gpt2_vocab_json_and_merges_txt_are_a_tokenizer(families, tmp_path):
    """A download with vocab.json + merges.txt and no tokenizer.json (older hub snapshots;
    Megatron-LM's gpt2-vocab.json + gpt2-merges.txt) was 'a folder without a tokenizer.json'.
    Converted as transformers' GPT2Converter does, it gives the ids of the tokenizer.json they
    came from (and of transformers' slow GPT2Tokenizer, checked side by side when written)."""
    source = make_tokenizer(families["gpt2"])
    text = wiki_split_text("valid", 3)[0] + "".join(TEXTS) + " <|endoftext|> after"
    folder = _slow_files(f"{families['gpt2']}/tokenizer.json", tmp_path / "gpt2-old")
    megatron = _slow_files(f"{families['gpt2']}/tokenizer.json", tmp_path / "megatron", "gpt2-")
    for spec in (folder, folder / "vocab.json", megatron / "gpt2-vocab.json"):
        tok = make_tokenizer(str(spec))
        assert np.array_equal(tok.encode(text), source.encode(text)), spec
        assert (tok.vocab_size, tok.eod_id, tok.newline_id) == (
            source.vocab_size, source.eod_id, source.newline_id)  # fmt: skip
        assert tok.decode(tok.encode(text)) == source.decode(source.encode(text))
    (folder / "merges.txt").unlink()
    with pytest.raises(DataError, match="is a folder without a tokenizer.json, a .model, a "
                       "vocab.txt or a vocab.json with its merges.txt"):  # fmt: skip
        make_tokenizer(str(folder))
    with pytest.raises(DataError, match="vocab.json is a JSON file but not a tokenizer.json"):
        make_tokenizer(str(folder / "vocab.json"))
