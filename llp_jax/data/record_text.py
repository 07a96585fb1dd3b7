"""The text a record's field holds, as datasets shape it: beyond a string, a list of strings
(sentences, paragraphs), a chat (a list of messages: OpenAI's and Hugging Face's
{'role', 'content'}, ShareGPT's {'from', 'value'}), and a field inside a nested object named by
a dotted path ('content.text', as `datasets` flattens nested features). The same for JSON
records and for Parquet / Arrow rows (`records.py`).

A chat is one document, a line per message, `role: text` (the role where the message names
one): a plain language model has no chat template, and this is the rendering that keeps who
said what. A list of strings is one document, a line per string.
"""

from __future__ import annotations

from typing import Any

MISSING = object()
_MESSAGE_TEXT = ("content", "value", "text")  # a chat message's text, by format
_MESSAGE_ROLE = ("role", "from", "speaker")


def lookup(record: dict, text_field: str) -> Any:
    """`record[text_field]`, or a nested object's field by a dotted path; MISSING if neither."""
    if text_field in record:
        return record[text_field]
    value: Any = record
    for part in text_field.split("."):
        if not isinstance(value, dict) or part not in value:
            return MISSING
        value = value[part]
    return value


def as_text(value: Any) -> str | None:
    """A field's value as a document's text (see the module docstring); None where it holds
    none: a number, an object, a list of anything else."""
    if isinstance(value, str):
        return value
    if not isinstance(value, list) or not value:
        return None
    if all(isinstance(item, str) for item in value):
        return "\n".join(value)
    lines = []
    for message in value:
        if not isinstance(message, dict):
            return None
        text = next((message[k] for k in _MESSAGE_TEXT if isinstance(message.get(k), str)), None)
        if text is None:
            return None
        role = next((message[k] for k in _MESSAGE_ROLE if isinstance(message.get(k), str)), "")
        lines.append(f"{role}: {text}" if role else text)
    return "\n".join(lines)


def text_fields(record: dict, prefix: str = "", depth: int = 3) -> list[str]:
    """The (dotted) names of a record's fields that hold text, nested objects searched to
    `depth`: the choices for text_field."""
    out = []
    for name, value in record.items():
        if as_text(value) is not None:
            out.append(prefix + str(name))
        elif isinstance(value, dict) and depth > 1:
            out += text_fields(value, f"{prefix}{name}.", depth - 1)
    return out
