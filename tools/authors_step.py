"""The authors' ECP training step, timed one step per request (for experiments.benchmark_step).

  python tools/authors_step.py --authors=PATH/TO/ECPTransformer --dim=256 --layers=4 \
      --heads=4 --seq_len=1024 --segments=4 --vocab=8192 --batch=8 --dropout=0.0

Needs a checkout of GitHub MetaMain/ECPTransformer and a Python with PyTorch and einops (the
optional extra; never in the default install). Builds their ECPAttentionTransformer and
AutoRegressiveWrapper as their training script does, with their AdamW grouping
(tools/golden_from_authors.py), then serves a line protocol on stdin/stdout so that the
benchmark can alternate its own steps with theirs in one run: each line `step` runs one training
step on fixed random tokens (forward, backward, gradient clipping at 1.0, AdamW update) and
answers `<seconds> <loss>`; `generate P G` times their `AutoRegressiveWrapper.generate` of G
tokens after a random P-token prompt (it re-runs the model on the last n tokens for each token)
and answers `<seconds> 0`; end of input stops it. It prints `ready` once built and warmed up.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--authors", required=True)
    for name, default in (("dim", 256), ("layers", 4), ("heads", 4), ("seq_len", 1024),
                          ("segments", 4), ("vocab", 8192), ("batch", 8), ("threads", 0)):  # fmt: skip
        parser.add_argument(f"--{name}", type=int, default=default)
    parser.add_argument("--dropout", type=float, default=0.0)
    args = parser.parse_args()
    sys.path.insert(0, os.path.abspath(args.authors))
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from golden_from_authors import configure_optimizers
    from models.AutoRegressiveWrapper import AutoRegressiveWrapper
    from models.ECPAttentionTransformer import ECPAttentionTransformer

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = ECPAttentionTransformer(
        dim=args.dim, num_unique_tokens=args.vocab, num_layers=args.layers, heads=args.heads,
        sequence_len=args.seq_len, num_segments=args.segments, ff_dropout=args.dropout,
        attn_dropout=args.dropout,
    )  # fmt: skip
    # Their instruction for ECP: latent_len = sequence_len.
    wrapper = AutoRegressiveWrapper(model, latent_len=args.seq_len,
                                    segment_len=args.seq_len // args.segments)  # fmt: skip
    optim = configure_optimizers(wrapper)
    wrapper.train()
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.integers(0, args.vocab, (args.batch, args.seq_len + 1)))

    def step() -> float:
        loss = wrapper(x)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(wrapper.parameters(), 1.0)
        optim.step()
        optim.zero_grad(set_to_none=True)
        return loss.item()

    step()  # warm-up (allocator, first-call overheads)
    print(f"ready params={sum(p.numel() for p in model.parameters())} "
          f"threads={torch.get_num_threads()} torch={torch.__version__}", flush=True)  # fmt: skip
    for line in sys.stdin:
        words = line.split()
        if words[:1] == ["generate"]:  # `generate P G`: their sampler, G tokens after P
            prompt = torch.from_numpy(rng.integers(0, args.vocab, (1, int(words[1]))))
            start = time.perf_counter()
            wrapper.generate(prompt, int(words[2]))
            print(f"{time.perf_counter() - start:.6f} 0", flush=True)
            wrapper.train()
        elif words[:1] == ["step"]:
            start = time.perf_counter()
            loss = step()
            print(f"{time.perf_counter() - start:.6f} {loss:.6f}", flush=True)


if __name__ == "__main__":
    main()
