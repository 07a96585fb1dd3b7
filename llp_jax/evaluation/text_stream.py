"""Text of a growing token sequence, piece by piece, that adds up to `tokenizer.decode(all)`.

A sample printed as it is generated (`experiments.sample`) must read exactly as the one decoded
at the end. Decoding each new block alone is not that: a UTF-8 character or a SentencePiece word
may straddle two blocks, and SentencePiece drops the space that opens a text. So the stream
decodes the current line whole (the ids from the last newline token on: this project's
tokenizers decode line by line, a line after its newline token, see `newline_id`), prints what
it did not print yet, and holds back what may still change: trailing U+FFFD (bytes of a
character yet to come) and a trailing carriage return (a Windows newline is shown as '\\n'), and
the text of a trailing run of a tokenizer's `pending_ids` (Llama 2's byte pieces: its decoder
writes a run of bytes that is not UTF-8 as one U+FFFD per byte, the valid ones too). A tokenizer
without a newline token is decoded from its first id each time: exact, quadratic in the length.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

_HELD = "\ufffd\r"


class TextStream:
    """`feed(ids)` returns the text they add; `finish()` what was held back."""

    def __init__(self, tokenizer):
        self._tokenizer = tokenizer
        self._newline = getattr(tokenizer, "newline_id", None)
        self._pending = getattr(tokenizer, "pending_ids", frozenset())
        self._line: list[int] = []  # ids from the last newline token on
        self._printed = 0  # characters of the current line's text already returned

    def feed(self, ids: Sequence[int] | np.ndarray) -> str:
        ids = [int(i) for i in np.asarray(ids).reshape(-1)]
        out = []
        while self._newline is not None and self._newline in ids:
            cut = ids.index(self._newline)
            self._line += ids[:cut]
            out.append(self._rest() + "\n")
            self._line, ids = [self._newline], ids[cut + 1 :]  # decoded '\n' + the line
            self._printed = len(self._tokenizer.decode(self._line))
        self._line += ids
        text = self._tokenizer.decode(self._line)
        stable = len(text.rstrip(_HELD))
        run = len(self._line)  # a trailing run of ids whose text the next ids may change
        while run and self._line[run - 1] in self._pending:
            run -= 1
        if run < len(self._line):
            head = self._tokenizer.decode(self._line[:run])
            stable = min(stable, len(os.path.commonprefix([head, text])))
        out.append(text[self._printed : stable])
        self._printed = max(self._printed, stable)
        return "".join(out)

    def finish(self) -> str:
        """The held-back end of the text (after the last block)."""
        return self._rest()

    def _rest(self) -> str:
        return self._tokenizer.decode(self._line)[self._printed :]
