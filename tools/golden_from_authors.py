"""Golden fixtures from the authors' own code: their five models, built and run by PyTorch.

  python tools/golden_from_authors.py --authors=PATH/TO/ECPTransformer \
      [--out=tests/fixtures/authors]

Needs a checkout of GitHub MetaMain/ECPTransformer and a Python with PyTorch and einops (the
optional extra, never in the default install: `pip install torch einops numpy safetensors`).
For each model (PerceiverARTransformer, DoubleAttentionTransformer, sSplitAttentionTransformer,
CompressedDoubleAttentionTransformer, ECPAttentionTransformer) at a small config it:
  1. builds their model with their init, then gives every LayerNorm non-default weights and
     biases (so a wrong LayerNorm mapping cannot pass) and takes one AdamW step with their
     optimizer grouping (so the saved optimizer holds real moments);
  2. saves the model exactly as their training script's `save_model` does, {'epoch',
     'state_dict' (of the AutoRegressiveWrapper), 'optimizer'}, to `<out>/<net>.pt` (and the
     ECP model's plain `state_dict()` to `<out>/ECPAttention_plain.pt`, and as other scripts
     save a model to `<out>/ECPAttention_{whole,legacy,wrapped}.pt` and `.safetensors`: see
     `variants`;
     `--variants_only` writes just these from an existing ECPAttention.pt);
  3. runs it in eval mode on fixed tokens and writes tokens, logits and the wrapper's loss to
     `<out>/<net>.npz`.
The llp_jax test suite (tests/interop/) loads each `.pt` through `llp_jax.interop` without
PyTorch and checks logits and loss against the `.npz`. `--check_export=WORKDIR_OR_PT` instead
loads a state dict exported by llp_jax with `load_state_dict(strict=True)` and prints the
logits' difference from the fixture's (the exporter's round trip through the authors' classes).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import torch

# A small config: 3 layers so that both the first layer and the later ones are exercised; the
# byte vocabulary (259) so that the converted workdirs evaluate and sample on real text.
DIM, HEADS, LAYERS, SEQ, LATENT, VOCAB, BATCH = 24, 4, 3, 64, 16, 259, 2
SEGMENTS = 4  # LLP: s = 16; V2: history segments of 12
COMPRESSION = SEQ // 4  # V3: c = n / 4, as their training script sets it
NETS = ("PerceiverAR", "DoubleAttention", "sSplitAttention", "CompressedDoubleAttention",
        "ECPAttention")  # fmt: skip


def build(net: str):
    """Their model and wrapper, as their training script constructs them (dropout 0.05)."""
    from models.AutoRegressiveWrapper import AutoRegressiveWrapper
    from models.CompressedDoubleAttentionTransformer import CompressedDoubleAttentionTransformer
    from models.DoubleAttentionTransformer import DoubleAttentionTransformer
    from models.ECPAttentionTransformer import ECPAttentionTransformer
    from models.PerceiverAR_baseline import PerceiverARTransformer
    from models.sSplitAttentionTransformer import sSplitAttentionTransformer

    common = dict(dim=DIM, num_unique_tokens=VOCAB, num_layers=LAYERS, heads=HEADS,
                  sequence_len=SEQ, ff_dropout=0.05, attn_dropout=0.05)  # fmt: skip
    latent = LATENT
    if net == "PerceiverAR":
        model = PerceiverARTransformer(latent_len=LATENT, **common)
    elif net == "DoubleAttention":
        model = DoubleAttentionTransformer(latent_len=LATENT, **common)
    elif net == "sSplitAttention":
        model = sSplitAttentionTransformer(latent_len=LATENT, num_segments=SEGMENTS, **common)
    elif net == "CompressedDoubleAttention":
        model = CompressedDoubleAttentionTransformer(
            latent_len=LATENT, compression_size=COMPRESSION, **common
        )
    else:
        model = ECPAttentionTransformer(num_segments=SEGMENTS, **common)
        latent = SEQ  # their instruction for ECP: latent_len = sequence_length
    return model, AutoRegressiveWrapper(model, latent_len=latent, segment_len=SEQ // SEGMENTS)


def configure_optimizers(wrapper, lr=2e-4):
    """Their `configure_optimizers` (ECPTransformer_main.py), restated: AdamW, decay on Linear
    weights only."""
    decay, no_decay = set(), set()
    for mn, m in wrapper.named_modules():
        for pn, _ in m.named_parameters():
            fpn = f"{mn}.{pn}" if mn else pn
            if pn.endswith("bias"):
                no_decay.add(fpn)
            elif pn.endswith("weight") and isinstance(m, torch.nn.Linear):
                decay.add(fpn)
            elif pn.endswith("weight") and isinstance(m, (torch.nn.LayerNorm, torch.nn.Embedding)):
                no_decay.add(fpn)
    params = dict(wrapper.named_parameters())
    groups = [
        {"params": [params[n] for n in sorted(decay)], "weight_decay": 0.1},
        {"params": [params[n] for n in sorted(no_decay)], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95))


def tokens() -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(7).integers(0, VOCAB, (BATCH, SEQ + 1)))


def make(net: str, out: str) -> dict:
    torch.manual_seed(NETS.index(net))
    model, wrapper = build(net)
    with torch.no_grad():  # non-default LayerNorm parameters everywhere
        for module in wrapper.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.copy_(1.0 + 0.3 * torch.randn_like(module.weight))
                module.bias.copy_(0.2 * torch.randn_like(module.bias))
    optim = configure_optimizers(wrapper)
    wrapper.train()
    loss = wrapper(tokens())
    loss.backward()
    torch.nn.utils.clip_grad_norm_(wrapper.parameters(), 1.0)
    optim.step()
    optim.zero_grad()
    # Their save_model: {'epoch': i, 'state_dict': model.state_dict(), 'optimizer': ...}.
    torch.save(
        {"epoch": 1, "state_dict": wrapper.state_dict(), "optimizer": optim.state_dict()},
        os.path.join(out, f"{net}.pt"),
    )
    if net == "ECPAttention":
        torch.save(model.state_dict(), os.path.join(out, f"{net}_plain.pt"))
        variants(out)
    wrapper.eval()
    x = tokens()
    with torch.no_grad():
        logits = model(x[:, :-1]).numpy()
        loss = float(wrapper(x))
    config = dict(dim=DIM, heads=HEADS, layers=LAYERS, seq_len=SEQ, latent_len=LATENT,
                  vocab=VOCAB, segments=SEGMENTS, compression=COMPRESSION)  # fmt: skip
    np.savez(os.path.join(out, f"{net}.npz"), tokens=x.numpy().astype(np.int32), logits=logits,
             loss=np.float32(loss), config=json.dumps(config), torch=torch.__version__)  # fmt: skip
    return {"net": net, "loss": loss, "logits": list(logits.shape)}


def variants(out: str) -> None:
    """ECPAttention.pt's model saved as other training scripts save one: the whole pickled
    wrapper (`torch.save(wrapper, f)`); their save_model dict in the legacy pre-1.6 format; and
    {'model_state_dict', 'global_step'} of the wrapper inside DataParallel and torch.compile
    (keys '_orig_mod.module.model.*'); and the wrapper's tensors as `.safetensors`."""
    _, wrapper = build("ECPAttention")
    saved = torch.load(os.path.join(out, "ECPAttention.pt"))
    wrapper.load_state_dict(saved["state_dict"], strict=True)
    wrapper.eval()
    torch.save(wrapper, os.path.join(out, "ECPAttention_whole.pt"))
    torch.save(saved, os.path.join(out, "ECPAttention_legacy.pt"),
               _use_new_zipfile_serialization=False)  # fmt: skip
    from safetensors.torch import save_model  # as huggingface_hub's PyTorchModelHubMixin saves

    save_model(wrapper, os.path.join(out, "ECPAttention.safetensors"))
    wrapped = torch.compile(torch.nn.DataParallel(wrapper))  # compiles nothing until called
    torch.save({"model_state_dict": wrapped.state_dict(), "global_step": 7},
               os.path.join(out, "ECPAttention_wrapped.pt"))  # fmt: skip


def check_export(net: str, path: str, fixtures: str) -> float:
    """Loads an llp_jax export into their class with strict=True (a .safetensors file with the
    library's load_model); max |logits - fixture|."""
    model, wrapper = build(net)
    if path.endswith(".safetensors"):  # as huggingface_hub loads it: load_model, strict
        from safetensors import safe_open
        from safetensors.torch import load_model

        with safe_open(path, "pt") as f:
            first = next(iter(f.keys()))
        load_model(wrapper if first.startswith("model.") else model, path, strict=True)
    else:
        saved = torch.load(path)
        state = saved["state_dict"] if "state_dict" in saved else saved
        target = wrapper if next(iter(state)).startswith("model.") else model
        target.load_state_dict(state, strict=True)
    golden = np.load(os.path.join(fixtures, f"{net}.npz"))
    wrapper.eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(golden["tokens"]).long()[:, :-1]).numpy()
    return float(np.abs(logits - golden["logits"]).max())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--authors", required=True, help="checkout of MetaMain/ECPTransformer")
    parser.add_argument("--out", default="tests/fixtures/authors")
    parser.add_argument("--check_export", nargs=2, metavar=("NET", "PT"), default=None)
    parser.add_argument("--variants_only", action="store_true",
                        help="only write ECPAttention.pt's variants (see `variants`)")  # fmt: skip
    args = parser.parse_args()
    sys.path.insert(0, os.path.abspath(args.authors))
    torch.set_num_threads(1)
    if args.check_export:
        diff = check_export(*args.check_export, args.out)
        print(f"{args.check_export[0]}: strict load ok, max |logits - fixture| = {diff:.3g}")
        return
    if args.variants_only:
        variants(args.out)
        return
    os.makedirs(args.out, exist_ok=True)
    for net in NETS:
        print(make(net, args.out))


if __name__ == "__main__":
    main()
