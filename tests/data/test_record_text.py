"""A record's text as datasets shape it: a chat (OpenAI's and Hugging Face's `messages`,
ShareGPT's `conversations`), a list of strings, a nested field by a dotted path; in JSON Lines
and in Parquet and Arrow files (written by pyarrow, as `datasets` writes them). The hint for a
missing field lists these too."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llp_jax.data import DataError, user_text

CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Who is Emma?"},
        {"role": "assistant", "content": "Emma Woodhouse,\nhandsome, clever, and rich."}]  # fmt: skip
CHAT_TEXT = (
    "system: Be brief.\nuser: Who is Emma?\nassistant: Emma Woodhouse,\nhandsome, clever, and rich."
)
SHAREGPT = [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello."}]
ROWS = [
    {"id": 1, "messages": CHAT, "conversations": SHAREGPT, "sentences": ["One.", "Two."],
     "meta": {"source": {"text": "Nested text."}, "n": 3}, "scores": [1, 2]},
]  # fmt: skip
EXPECTED = {
    "messages": CHAT_TEXT,
    "conversations": "human: Hi\ngpt: Hello.",
    "sentences": "One.\nTwo.",
    "meta.source.text": "Nested text.",
}


def _write(kind: str, tmp_path) -> str:
    rows = ROWS * 3
    if kind == "jsonl":
        path = tmp_path / "data.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif kind == "parquet":
        path = tmp_path / "train-00000-of-00001.parquet"
        pq.write_table(pa.Table.from_pylist(rows), path)
    else:  # the Arrow stream `datasets` caches a split in
        path = tmp_path / "data-00000-of-00001.arrow"
        table = pa.Table.from_pylist(rows)
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as w:
            w.write_table(table)
    return str(path)


@pytest.mark.parametrize("field", list(EXPECTED))
@pytest.mark.parametrize("kind", ["jsonl", "parquet", "arrow"])
def test_a_chat_a_list_and_a_nested_field_are_text(kind, field, tmp_path):
    docs = user_text.read_documents(_write(kind, tmp_path), text_field=field)
    assert docs == [EXPECTED[field]] * 3


@pytest.mark.parametrize("kind", ["jsonl", "parquet", "arrow"])
def test_the_missing_field_hint_names_them(kind, tmp_path):
    with pytest.raises(DataError) as caught:
        user_text.read_documents(_write(kind, tmp_path))  # no 'text' field
    for field in EXPECTED:
        assert repr(field) in str(caught.value)
    assert "'scores'" not in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(DataError, match="'scores'"):  # a list of numbers holds no text
        user_text.read_documents(_write(kind, tmp_path), text_field="scores")
