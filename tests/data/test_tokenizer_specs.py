"""What a `data.tokenizer` names (llp_jax/data/tokenizer_specs.py): a name, a file, or the
folder holding one; a bad one is a one-line error before any text is read."""

import pytest
import sentencepiece as spm

from llp_jax.data import DataError
from llp_jax.data import tokenizers as tk
from tests.data.test_tokenizers import small_text


def _model(tmp_path) -> tk.SentencePieceTokenizer:
    spm.SentencePieceTrainer.train(sentence_iterator=iter(small_text(lines=2000).splitlines()),
                                   model_prefix=str(tmp_path / "sp"), vocab_size=40,
                                   minloglevel=2)  # fmt: skip
    return tk.make_tokenizer(str(tmp_path / "sp.model"))


def test_make_tokenizer_errors():
    with pytest.raises(ValueError, match="Unknown tokenizer"):
        tk.make_tokenizer("wordpiece")
    with pytest.raises(ValueError, match="needs train_text"):
        tk.make_tokenizer("sentencepiece")
    with pytest.raises(ValueError, match="unigram' or 'bpe"):
        tk.make_tokenizer("sentencepiece", train_text="x", model_type="char")


def test_a_folder_holding_one_model_file_is_that_model(tmp_path):
    """Meta's Llama 2 download is a folder with `tokenizer.model` and no tokenizer.json: the
    folder means its one .model file (a tokenizer.json beside it would win); two .model files,
    or none, are one line naming what is there."""
    sp_tok = _model(tmp_path)
    folder = tmp_path / "llama-2-7b"
    folder.mkdir()
    (folder / "tokenizer.model").write_bytes(sp_tok._sp.serialized_model_proto())
    tok = tk.make_tokenizer(str(folder))
    assert (
        isinstance(tok, tk.SentencePieceTokenizer) and tok.name == "sentencepiece:tokenizer.model"
    )
    text = small_text(seed=5)
    assert tok.encode(text).tolist() == sp_tok.encode(text).tolist()
    (folder / "other.model").write_bytes(sp_tok._sp.serialized_model_proto())
    with pytest.raises(
        DataError, match=r"folder of 2 .model files \(other.model, tokenizer.model\)"
    ):
        tk.make_tokenizer(str(folder))
    (tmp_path / "empty").mkdir()
    with pytest.raises(
        DataError,
        match="is a folder without a tokenizer.json, a .model, a vocab.txt or a vocab.json",
    ):
        tk.check_spec(str(tmp_path / "empty"))
