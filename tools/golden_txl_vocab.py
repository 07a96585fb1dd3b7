"""Golden fixture for `data.tokenizer='txl_bytes'`: Transformer-XL's enwik8 ids, as the authors'
own `data_utils.Corpus` assigns them.

  python tools/golden_txl_vocab.py --authors=PATH/TO/ECPTransformer \
      [--out=tests/fixtures/authors/txl_enwik8.npz]

Needs a checkout of GitHub MetaMain/ECPTransformer and a Python with PyTorch and numpy (their
data_utils imports torch). It
  1. makes 10,000 bytes shaped like enwik8 (Wikipedia XML, Austen's prose, multi-byte UTF-8,
     tabs, carriage returns, runs of newlines, a byte that is no UTF-8, and many symbols whose
     counts tie, so the tie order is tested);
  2. writes them as Transformer-XL's `prep_enwik8.py` does into train.txt / valid.txt /
     test.txt (each byte its decimal value joined by spaces, a newline byte a line break;
     the standard 90M / 5M / 5M split scaled to 9,000 / 500 / 500 bytes);
  3. runs their `Corpus(folder, 'enwik8')` (the path `get_lm_corpus` takes when no cache.pt
     exists) and saves the bytes, its `vocab.idx2sym` (as byte values) and its train, valid
     and test id streams to the .npz;
  4. trains their ECPAttentionTransformer (golden_from_authors.py's small config, V = the
     vocabulary's size) for 40 AdamW steps on windows of their train ids, saves it as their
     `save_model` does to `ECPAttention_txl_enwik8.pt` beside the .npz, and stores their
     wrapper's eval loss on two windows of their test ids (`test_starts`, `test_loss`).
tests/data/test_txl_bytes.py checks `TxlByteTokenizer` and the tfds enwik8 pipeline against it,
and evaluates the imported checkpoint on the ids our pipeline makes.
"""

from __future__ import annotations

import argparse
import lzma
import os
import sys
import tempfile

import numpy as np

SPLIT_BYTES = (9_000, 500, 500)  # tests/helpers/real_formats.ENWIK8_SPLIT_BYTES
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sample_bytes() -> bytes:
    """The fixture's 10,000 bytes (deterministic)."""
    with lzma.open(os.path.join(ROOT, "llp_jax/data/corpora/austen_novels.txt.xz")) as f:
        prose = f.read(200_000)[100_000:105_000]  # mid-novel: dialogue, punctuation, newlines
    page = (
        "<page><title>Zürich</title><text>'''Zürich''' is a city. 日本語 [[link]]</text></page>\n"
    )
    odd = b"\t|\r\n\n\n  \xe2\x80\x94 \xc3\xa9\n\xff"  # tab, CR, blank lines, em dash, é, no UTF-8
    data = prose + odd + (page * 40).encode("utf-8")
    rng = np.random.default_rng(0)
    data += bytes(rng.integers(32, 127, 200, dtype=np.uint8))  # ASCII noise: counts that tie
    total = sum(SPLIT_BYTES)
    data = (data * 2)[:total]
    assert len(data) == total
    return data


def write_txl_files(data: bytes, folder: str) -> None:
    """train.txt, valid.txt, test.txt as Transformer-XL's prep_enwik8.py writes them."""
    train, valid, _ = SPLIT_BYTES
    parts = {"train": data[:train], "valid": data[train : train + valid],
             "test": data[train + valid :]}  # fmt: skip
    for name, part in parts.items():
        text = " ".join(str(c) if c != ord("\n") else "\n" for c in part)
        with open(os.path.join(folder, f"{name}.txt"), "w") as f:
            f.write(text)


def train_their_model(corpus, vocab: int, out: str) -> tuple[list[int], float]:
    """Their ECP model at V = `vocab`, trained a little on their train ids and saved as their
    save_model does; (test window starts, their wrapper's eval loss on those windows)."""
    import golden_from_authors as golden  # noqa: PLC0415  (beside this file)
    import torch  # noqa: PLC0415

    golden.VOCAB = vocab
    torch.manual_seed(0)
    torch.set_num_threads(1)
    _, wrapper = golden.build("ECPAttention")
    optim = golden.configure_optimizers(wrapper, lr=3e-3)
    rng = np.random.default_rng(1)
    n = golden.SEQ + 1
    wrapper.train()
    for _ in range(40):
        starts = rng.integers(0, len(corpus.train) - n, 4)
        loss = wrapper(torch.stack([corpus.train[s : s + n] for s in starts]))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(wrapper.parameters(), 1.0)
        optim.step()
        optim.zero_grad()
    torch.save({"epoch": 40, "state_dict": wrapper.state_dict(), "optimizer": optim.state_dict()},
               os.path.join(out, "ECPAttention_txl_enwik8.pt"))  # fmt: skip
    wrapper.eval()
    starts = [0, 300]
    with torch.no_grad():
        loss = float(wrapper(torch.stack([corpus.test[s : s + n] for s in starts])))
    return starts, loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--authors", required=True, help="checkout of MetaMain/ECPTransformer")
    parser.add_argument(
        "--out", default=os.path.join(ROOT, "tests/fixtures/authors/txl_enwik8.npz")
    )
    args = parser.parse_args()
    sys.path.insert(0, os.path.abspath(args.authors))
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from data_utils import Corpus  # noqa: PLC0415  (their code, from their checkout)

    data = sample_bytes()
    with tempfile.TemporaryDirectory() as folder:
        write_txl_files(data, folder)
        corpus = Corpus(folder, "enwik8")
    symbols = np.asarray([int(s) for s in corpus.vocab.idx2sym], np.int32)
    starts, loss = train_their_model(corpus, len(symbols), os.path.dirname(args.out))
    np.savez_compressed(
        args.out,
        data=np.frombuffer(data, np.uint8),
        split_bytes=np.asarray(SPLIT_BYTES, np.int64),
        symbols=symbols,
        train=corpus.train.numpy().astype(np.int32),
        valid=corpus.valid.numpy().astype(np.int32),
        test=corpus.test.numpy().astype(np.int32),
        test_starts=np.asarray(starts, np.int64),
        test_loss=np.float32(loss),
    )
    print(f"wrote {args.out}: {len(symbols)} symbols, train/valid/test "
          f"{len(corpus.train)}/{len(corpus.valid)}/{len(corpus.test)} ids")  # fmt: skip


if __name__ == "__main__":
    main()
