"""The authors' models, golden: their own code's logits and loss (fixtures written by
tools/golden_from_authors.py with PyTorch) reproduced by llp_jax from their checkpoint files,
read without PyTorch; conversion both ways bitwise; one-line errors for bad checkpoints."""

from __future__ import annotations

import collections
import os
import shutil
import subprocess
import sys

import numpy as np
import optax
import pytest
from flax import nnx

from llp_jax import models
from llp_jax.interop import authors, authors_keys, torch_format, workdir
from llp_jax.interop.authors import InteropError
from llp_jax.interop.torch_format import TorchFormatError
from tests.helpers import REPO

FIXTURES = os.path.join(REPO, "tests", "fixtures", "authors")
# What the tensors cannot say about each fixture (see tools/golden_from_authors.py).
HINTS = {
    "PerceiverAR": dict(seq_len=64, latent_len=16),
    "DoubleAttention": dict(name="enhanced_v1", seq_len=64, latent_len=16),
    "sSplitAttention": dict(name="enhanced_v2", seq_len=64, latent_len=16, segments=4),
    "CompressedDoubleAttention": dict(seq_len=64),
    "ECPAttention": dict(seq_len=64, segments=4),
}
NAMES = {"PerceiverAR": "perceiver_ar", "DoubleAttention": "enhanced_v1",
         "sSplitAttention": "enhanced_v2", "CompressedDoubleAttention": "enhanced_v3",
         "ECPAttention": "llp"}  # fmt: skip


def _load(net: str, file: str | None = None):
    ckpt = authors.read_checkpoint(os.path.join(FIXTURES, file or f"{net}.pt"))
    cfg = authors.infer_config(ckpt, **HINTS[net])
    graphdef, state = nnx.split(models.abstract_model(cfg))
    nnx.replace_by_pure_dict(state, authors_keys.to_params(ckpt, cfg))
    return ckpt, cfg, nnx.merge(graphdef, state)


# ECPAttention.pt's model as other scripts save one (tools/golden_from_authors.py `variants`):
# a plain state_dict(), the whole pickled model, the legacy pre-1.6 format, under
# 'model_state_dict' with DataParallel's and torch.compile's key prefixes, and as safetensors.
VARIANTS = {v: f"ECPAttention_{v}.pt" for v in ("plain", "whole", "legacy", "wrapped")}
VARIANTS["safetensors"] = "ECPAttention.safetensors"


@pytest.mark.parametrize(
    "net,file", [(n, None) for n in HINTS] + [("ECPAttention", f) for f in VARIANTS.values()]
)
def test_logits_and_loss_equal_the_authors_code(net, file):
    golden = np.load(os.path.join(FIXTURES, f"{net}.npz"))
    _, cfg, model = _load(net, file)
    assert cfg.name == NAMES[net] and cfg == models.code_faithful(cfg)
    tokens = golden["tokens"]
    logits = np.asarray(model(tokens[:, :-1]))  # eval: no dropout key
    # Their models return logits at positions our model does not score (V1/V2's history,
    # V3's compressed history); their loss, like ours, takes the last scored positions.
    theirs = golden["logits"][:, -logits.shape[1] :]
    np.testing.assert_allclose(logits, theirs, rtol=0, atol=1e-5)
    targets = tokens[:, -logits.shape[1] :]
    loss = float(optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean())
    assert abs(loss - float(golden["loss"])) < 1e-5
    # Non-default LayerNorm parameters (a wrong LayerNorm mapping could not pass).
    assert not np.allclose(model.final_norm.scale[...], 1.0)
    assert not np.allclose(model.first_block.attn.kv_norm.bias[...], 0.0)


@pytest.mark.parametrize("net", list(HINTS))
def test_import_export_round_trip_is_bitwise(net, tmp_path):
    source = os.path.join(FIXTURES, f"{net}.pt")
    cfg, step = workdir.import_checkpoint(source, str(tmp_path / "wd"), **HINTS[net])
    assert step == 1  # their save_model's 'epoch'
    out = tmp_path / "back.pt"
    workdir.export_checkpoint(str(tmp_path / "wd"), str(out))
    original, back = torch_format.load(source), torch_format.load(out)
    assert list(back["state_dict"]) == list(original["state_dict"])  # their keys, their order
    for key, value in original["state_dict"].items():
        assert back["state_dict"][key].dtype == value.dtype, key
        np.testing.assert_array_equal(back["state_dict"][key], value, err_msg=key)
    # Their script's optim.load_state_dict needs the same groups of the same sizes.
    sizes = lambda o: [len(g["params"]) for g in o["optimizer"]["param_groups"]]  # noqa: E731
    assert sizes(back) == sizes(original) and back["epoch"] == 1
    plain = tmp_path / "plain.pt"
    workdir.export_checkpoint(str(tmp_path / "wd"), str(plain), plain=True)
    assert list(torch_format.load(plain)) == [k[len("model.") :] for k in original["state_dict"]]


def test_config_from_the_tensors_and_their_file_name(tmp_path):
    named = tmp_path / "trans_ECPAttention_N64_H4_L3_D24_S4.pt"  # their script's naming
    shutil.copy(os.path.join(FIXTURES, "ECPAttention.pt"), named)
    cfg = authors.infer_config(authors.read_checkpoint(named))
    assert (cfg.name, cfg.seq_len, cfg.segment_len, cfg.num_layers, cfg.num_heads) == (
        "llp", 64, 16, 3, 4)  # fmt: skip
    assert (cfg.d_model, cfg.vocab_size, cfg.rope_theta) == (24, 259, 10000.0)
    v3 = authors.infer_config(
        authors.read_checkpoint(os.path.join(FIXTURES, "CompressedDoubleAttention.pt")),
        seq_len=64,
    )
    assert (v3.latent_len, v3.compressed) == (16, 16)  # from projection_hist [c, m]


def _edited(tmp_path, edit) -> str:
    obj = torch_format.load(os.path.join(FIXTURES, "ECPAttention.pt"))
    state = collections.OrderedDict(obj["state_dict"])
    edit(state)
    path = str(tmp_path / "edited.pt")
    torch_format.save({**obj, "state_dict": state}, path)
    return path


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda s: s.__setitem__("model.layers.0.0.fn.extra.weight", np.ones(3, np.float32)),
         "unknown tensor"),
        (lambda s: s.pop("model.to_logits.1.bias"), "missing tensor"),
        (lambda s: s.__setitem__("model.layers.1.0.fn.to_q.weight", np.ones((24, 20), np.float32)),
         r"layers.1.0.fn.to_q.weight has shape \(24, 20\)"),
        (lambda s: s.pop("model.token_emb.weight"), "no 'token_emb.weight'"),
    ],
    ids=["unknown", "missing", "shape", "not-theirs"],
)  # fmt: skip
def test_bad_checkpoints_are_one_line_errors(tmp_path, edit, message):
    with pytest.raises(InteropError, match=message) as e:
        workdir.import_checkpoint(
            _edited(tmp_path, edit), str(tmp_path / "wd"), **HINTS["ECPAttention"]
        )
    assert "\n" not in str(e.value)


def test_what_the_tensors_cannot_say_is_asked_for():
    ckpt = authors.read_checkpoint(os.path.join(FIXTURES, "DoubleAttention.pt"))
    with pytest.raises(InteropError, match="enhanced_v1 .* enhanced_v2"):
        authors.infer_config(ckpt, seq_len=64, latent_len=16)
    with pytest.raises(InteropError, match="pass --seq_len"):
        authors.infer_config(ckpt, name="enhanced_v1", latent_len=16)
    with pytest.raises(InteropError, match="not llp"):
        authors.infer_config(ckpt, name="llp", seq_len=64)


def test_unreadable_and_unsafe_files(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(os.urandom(4096))
    with pytest.raises(TorchFormatError, match="not a torch.save file"):
        torch_format.load(junk)
    # A pickle that would call os.system is refused, never run.
    import pickle
    import zipfile

    evil = tmp_path / "evil.pt"
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("evil/data.pkl", pickle.dumps(os.system, protocol=2))
    with pytest.raises(TorchFormatError, match="only tensors"):
        torch_format.load(evil)


def test_export_refuses_what_their_classes_cannot_express(tmp_path):
    clean = models.tiny("llp")
    with pytest.raises(InteropError, match="shared_kv=False"):
        authors.check_exportable(clean)
    with pytest.raises(InteropError, match="no class"):
        authors.check_exportable(models.tiny("transformer", faithful=True))


def test_the_converter_cli_prints_one_line_errors(tmp_path):
    cmd = [sys.executable, "-m", "experiments.convert", "--workdir", str(tmp_path / "wd"),
           "--from_authors", os.path.join(FIXTURES, "DoubleAttention.pt")]  # fmt: skip
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().startswith("error: ") and len(done.stderr.strip().splitlines()) == 1


def test_exported_files_load_in_torch(tmp_path):
    """With PyTorch installed (not in the default install), torch.load reads our files."""
    torch = pytest.importorskip("torch")
    workdir.import_checkpoint(os.path.join(FIXTURES, "ECPAttention.pt"), str(tmp_path / "wd"),
                              **HINTS["ECPAttention"])  # fmt: skip
    workdir.export_checkpoint(str(tmp_path / "wd"), str(tmp_path / "out.pt"))
    loaded = torch.load(tmp_path / "out.pt")
    original = torch.load(os.path.join(FIXTURES, "ECPAttention.pt"))
    for key, value in original["state_dict"].items():
        assert torch.equal(loaded["state_dict"][key], value), key
