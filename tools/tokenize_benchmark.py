"""How fast a corpus is tokenised: a Hugging Face tokenizer.json and SentencePiece, side by side.

  python tools/tokenize_benchmark.py [--chars=16100000] [--rounds=3]
      [--out=experiments/results/tokenize_benchmark.md]

Two tables, each way timed in turn within a round (A, B, C, A, B, C, ...), the median of the
rounds, on Austen repeated to `--chars` characters:

- a tokenizer.json (GPT-2's byte-level BPE and Llama 2's byte-fallback BPE as the test helpers
  build them, tests/helpers/hf_tokenizers.py) three ways: llp_jax's (the library's ids for the
  whole text, encoded in pieces: hf_tokenizer.py), each line on its own joined by the newline
  id (what llp_jax did before: not the library's ids), and the library's `encode` of the whole
  text (the reference ids);
- the same text as JSON-Lines-sized paragraphs, with a SentencePiece model trained on it: one
  `encode` call per paragraph against `tokenizers.encode_texts` (many per call).

Needs a checkout with the dev requirements (tokenizers). The table says the machine's load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from llp_jax.data import load_austen, make_tokenizer, tokenizers  # noqa: E402
from tests.helpers.hf_tokenizers import save_family  # noqa: E402


def _line_by_line(tok, text: str) -> np.ndarray:
    """The old way, as hf_tokenizer.py had it: each line encoded on its own (4,096 lines a
    call), the lines joined by the newline id."""
    lines = text.split("\n")
    out: list[int] = []
    for start in range(0, len(lines), 4096):
        batch = lines[start : start + 4096]
        for i, encoding in enumerate(tok._tok.encode_batch(batch, add_special_tokens=False)):
            if start + i:
                out.append(tok.newline_id)
            out.extend(encoding.ids)
    return np.asarray(out, np.int32)


def _timed(ways: dict, rounds: int) -> dict:
    """{way: (median seconds, tokens)}, the ways alternated within each round."""
    seconds: dict = {name: [] for name in ways}
    tokens = {}
    for _ in range(rounds):
        for name, run in ways.items():
            start = time.perf_counter()
            tokens[name] = len(run())
            seconds[name].append(time.perf_counter() - start)
    return {name: (statistics.median(s), tokens[name]) for name, s in seconds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chars", type=int, default=16_100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default="experiments/results/tokenize_benchmark.md")
    args = parser.parse_args()
    austen = load_austen().splits["train"]
    text = (austen * (args.chars // len(austen) + 1))[: args.chars]
    load = os.getloadavg()[0]
    rows = [f"# Tokenising {len(text):,} characters of Austen ({os.cpu_count()} CPUs, load "
            f"average {load:.2f} at the start; median of {args.rounds} rounds)", "",
            "| tokenizer.json | way | seconds | tokens | the library's ids |",
            "|---|---|---:|---:|---|"]  # fmt: skip
    folder = tempfile.mkdtemp()
    for family in ("gpt2", "llama2-legacy"):
        tok = make_tokenizer(save_family(family, folder))
        reference = tok._tok.encode(text, add_special_tokens=False).ids
        ways = {
            "llp_jax (pieces)": lambda: tok.encode(text),
            "each line alone (before)": lambda: _line_by_line(tok, text),
            "library, whole text": lambda: tok._tok.encode(text, add_special_tokens=False).ids,
        }
        same = {name: np.array_equal(np.asarray(run()), reference) for name, run in ways.items()}
        for name, (secs, count) in _timed(ways, args.rounds).items():
            rows.append(f"| {family} | {name} | {secs:.2f} | {count:,} | {same[name]} |")
    paragraphs = [p for p in text.split("\n\n") if p.strip()]
    sp = make_tokenizer("sentencepiece", vocab_size=1024, train_text=text[:5_000_000],
                        cache_dir=folder)  # fmt: skip
    rows += ["", f"{len(paragraphs):,} paragraphs (documents), SentencePiece unigram 1,024:", "",
             "| way | seconds | tokens |", "|---|---:|---:|"]  # fmt: skip
    ways = {
        "tokenizers.encode_texts (many per call)": lambda: np.concatenate(
            list(tokenizers.encode_texts(sp, paragraphs))),
        "one encode call per document (before)": lambda: np.concatenate(
            [sp.encode(p) for p in paragraphs]),
    }  # fmt: skip
    for name, (secs, count) in _timed(ways, args.rounds).items():
        rows.append(f"| {name} | {secs:.2f} | {count:,} |")
    rows += ["", f"load average {os.getloadavg()[0]:.2f} at the end", ""]
    table = "\n".join(rows)
    print(table)
    with open(args.out, "w") as f:
        f.write(table)


if __name__ == "__main__":
    main()
