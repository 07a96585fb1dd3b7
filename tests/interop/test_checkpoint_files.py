"""Checkpoints as PyTorch users save them, beyond their save_model file: the whole pickled
model, the legacy (pre-1.6) format, other dict layouts and wrappers' key prefixes, safetensors
(files written by PyTorch and the safetensors library themselves: tools/golden_from_authors.py
`variants`), read without either and without running any of the file's code."""

from __future__ import annotations

import json
import os
import pickle
import struct
import subprocess
import sys
import zipfile

import ml_dtypes
import numpy as np
import pytest

from llp_jax.interop import authors, safetensors_format, torch_format, workdir
from llp_jax.interop.authors import InteropError
from llp_jax.interop.safetensors_format import SafetensorsError
from llp_jax.interop.torch_format import TorchFormatError
from llp_jax.storage import WorkdirBusyError
from tests.helpers import REPO
from tests.interop.test_authors import FIXTURES, HINTS, VARIANTS

SAVED = os.path.join(FIXTURES, "ECPAttention.pt")


def _fixture(variant: str) -> str:
    return os.path.join(FIXTURES, VARIANTS[variant])


@pytest.mark.parametrize(
    "variant,step", [("whole", None), ("legacy", 1), ("wrapped", 7), ("safetensors", None)]
)
def test_every_variant_holds_the_saved_tensors(variant, step):
    original = authors.read_checkpoint(SAVED)
    ckpt = authors.read_checkpoint(_fixture(variant))
    order = sorted if variant == "safetensors" else list  # the library sorts its header
    assert order(ckpt.state) == order(original.state)  # state_dict()'s keys, in its order
    for key, value in original.state.items():
        assert ckpt.state[key].dtype == value.dtype, key
        np.testing.assert_array_equal(ckpt.state[key], value, err_msg=key)
    assert ckpt.epoch == step


def test_the_whole_model_is_its_state_dict():
    """torch.save(wrapper): every module of theirs and of torch.nn is a record, none is built;
    the tree's parameters and persistent buffers come out as state_dict() orders them."""
    state = torch_format.load(_fixture("whole"))
    assert list(state) == list(torch_format.load(SAVED)["state_dict"])


def test_the_legacy_format_is_read_whole():
    obj = torch_format.load(_fixture("legacy"))
    assert obj["epoch"] == 1 and set(obj) == {"epoch", "state_dict", "optimizer"}
    moments = obj["optimizer"]["state"][0]
    assert {"exp_avg", "exp_avg_sq"} <= set(moments) and moments["exp_avg"].any()


@pytest.mark.parametrize(
    "layout", ["model", "net", "params", "ema"], ids=["model", "net", "params", "any-other-key"]
)
@pytest.mark.parametrize("prefix", ["", "module.", "_orig_mod.module.model."])
def test_dict_layouts_and_wrapper_prefixes(tmp_path, layout, prefix):
    original = torch_format.load(SAVED)["state_dict"]
    state = {prefix + key[len("model.") :]: value for key, value in original.items()}
    path = str(tmp_path / "other.pt")
    torch_format.save({"step": 12, layout: state, "config": {"lr": 3e-4}}, path)
    ckpt = authors.read_checkpoint(path)
    assert list(ckpt.state) == [key[len("model.") :] for key in original] and ckpt.epoch == 12


def test_the_state_dict_key_comes_before_other_dicts(tmp_path):
    original = torch_format.load(SAVED)["state_dict"]
    zeros = {key: np.zeros_like(value) for key, value in original.items()}
    path = str(tmp_path / "two.pt")
    torch_format.save({"ema_zeros": zeros, "model_state_dict": original}, path)
    ckpt = authors.read_checkpoint(path)
    assert ckpt.state["token_emb.weight"].any()


def _pickled(tmp_path, payload: bytes, legacy: bool) -> str:
    path = str(tmp_path / "f.pt")
    if legacy:
        with open(path, "wb") as f:
            for head in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
                pickle.dump(head, f, protocol=2)
            f.write(payload)
            pickle.dump([], f, protocol=2)  # the storages' keys: none
    else:
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("f/data.pkl", payload)
    return path


class _Touch:
    """Pickles as a call of os.system that would create a file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_no_code_of_the_file_runs(tmp_path, legacy):
    marker = tmp_path / "ran"
    top = pickle.dumps(_Touch(marker), protocol=2)
    with pytest.raises(TorchFormatError, match=r"holds a (posix|os)\.system object"):
        torch_format.load(_pickled(tmp_path, top, legacy))
    inside = pickle.dumps({"token_emb.weight": _Touch(marker)}, protocol=2)
    with pytest.raises(InteropError, match=r"token_emb.weight is a (posix|os)\.system"):
        authors.read_checkpoint(_pickled(tmp_path, inside, legacy))
    assert not marker.exists()


def test_damaged_and_foreign_files(tmp_path):
    data = open(_fixture("legacy"), "rb").read()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(TorchFormatError, match="cut.pt is damaged .*cut short"):
        torch_format.load(cut)
    other = tmp_path / "other.pt"
    other.write_bytes(pickle.dumps([1, 2, 3], protocol=2))  # a pickle, not torch's
    with pytest.raises(TorchFormatError, match="other.pt is not a torch.save file"):
        torch_format.load(other)


def test_the_converter_imports_a_wrapped_checkpoint(tmp_path):
    cmd = [sys.executable, "-m", "experiments.convert", "--workdir", str(tmp_path / "wd"),
           "--from_authors", _fixture("wrapped"),
           *(f"--{k}={v}" for k, v in HINTS["ECPAttention"].items())]  # fmt: skip
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "as llp (code-faithful), step 7" in done.stdout


def _safetensors(tmp_path, header: dict, body: bytes) -> str:
    raw = json.dumps(header).encode()
    path = tmp_path / "m.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + body)
    return str(path)


def test_safetensors_dtypes_and_damage(tmp_path):
    values = np.arange(6, dtype=np.float32).reshape(2, 3) / 4
    half = _safetensors(tmp_path, {"__metadata__": {"format": "pt"}, "a": {"dtype": "BF16",
                        "shape": [2, 3], "data_offsets": [0, 12]}},
                        values.astype(ml_dtypes.bfloat16).tobytes())  # fmt: skip
    assert safetensors_format.is_safetensors(half)
    np.testing.assert_array_equal(safetensors_format.load(half)["a"].astype(np.float32), values)
    data = open(_fixture("safetensors"), "rb").read()
    cases = {
        "cut": (data[: len(data) // 2], "lies outside the file: cut short"),
        "header": (struct.pack("<Q", 40) + b"{" + b"x" * 39 + data[48:], "header is not JSON"),
        "dtype": (None, "tensor 'a' is not readable \\('C64'\\)"),
    }
    for name, (raw, says) in cases.items():
        if raw is None:
            path = _safetensors(
                tmp_path, {"a": {"dtype": "C64", "shape": [1], "data_offsets": [0, 8]}}, bytes(8)
            )
        else:
            path = str(tmp_path / f"{name}.safetensors")
            open(path, "wb").write(raw)
        with pytest.raises(SafetensorsError, match=says):
            authors.read_checkpoint(path)


def test_a_safetensors_export_is_the_librarys_own_file(tmp_path):
    """Exported as `.safetensors`, the wrapper's tensors come out byte for byte as
    safetensors.torch.save_model wrote them (the shared RoPE `freqs` once, the other names in
    the metadata), which its load_model reads back strictly; --plain gives the model's."""
    wd = str(tmp_path / "wd")
    workdir.import_checkpoint(_fixture("safetensors"), wd, **HINTS["ECPAttention"])
    out = tmp_path / "out.safetensors"
    workdir.export_checkpoint(wd, str(out))
    assert out.read_bytes() == open(_fixture("safetensors"), "rb").read()
    workdir.export_checkpoint(wd, str(tmp_path / "plain.safetensors"), plain=True)
    plain = safetensors_format.load(tmp_path / "plain.safetensors")
    original = torch_format.load(SAVED)["state_dict"]
    assert sorted(plain) == sorted(key[len("model.") :] for key in original)
    for key, value in original.items():
        np.testing.assert_array_equal(plain[key[len("model.") :]], value, err_msg=key)


def test_importing_over_another_run_keeps_it_and_waits_for_its_trainer(tmp_path):
    """A workdir holding another run (here a SentencePiece run's data record and logs, which an
    imported model with another vocabulary could not use) is refused; --overwrite moves it into
    previous_runs/ (it used to delete the checkpoints alone, and keep the record); a trainer
    running there keeps the workdir (its lock)."""
    wd = tmp_path / "wd"
    (wd / "data").mkdir(parents=True)
    (wd / "data" / "record.json").write_text('{"tokenizer": "sentencepiece"}')
    (wd / "metrics.jsonl").write_text('{"step": 2}\n')
    with pytest.raises(InteropError, match="holds another run \\(data, metrics.jsonl\\); pass"):
        workdir.import_checkpoint(SAVED, str(wd), **HINTS["ECPAttention"])
    workdir.import_checkpoint(SAVED, str(wd), overwrite=True, **HINTS["ECPAttention"])
    (kept,) = (wd / "previous_runs").iterdir()
    assert sorted(os.listdir(kept)) == ["data", "metrics.jsonl"]
    assert sorted(n for n in os.listdir(wd) if n != ".lock") == ["checkpoints", "previous_runs"]
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from llp_jax.storage import WorkdirLock; "
         f"WorkdirLock({str(wd)!r}).acquire(); print('held', flush=True); time.sleep(60)"],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(WorkdirBusyError, match="in use by another training run"):
            workdir.import_checkpoint(SAVED, str(wd), overwrite=True, **HINTS["ECPAttention"])
    finally:
        holder.kill()
        holder.wait()
    assert len(os.listdir(wd / "previous_runs")) == 1  # nothing moved under the trainer


def test_a_folder_names_its_one_checkpoint(tmp_path):
    """A Hub snapshot (model.safetensors beside config.json) or a folder holding one file is
    read; several or none are one line naming them (was: 'cannot be read ([Errno 21] Is a
    directory)')."""
    snapshot = tmp_path / "snapshot"
    snapshot.mkdir()
    (snapshot / "model.safetensors").write_bytes(open(_fixture("safetensors"), "rb").read())
    (snapshot / "config.json").write_text("{}")
    (snapshot / "ECPAttention_whole.pt").write_bytes(open(_fixture("whole"), "rb").read())
    original = authors.read_checkpoint(SAVED)
    assert sorted(authors.read_checkpoint(snapshot).state) == sorted(original.state)
    (snapshot / "model.safetensors").unlink()
    assert list(authors.read_checkpoint(snapshot).state) == list(original.state)  # the only one
    (snapshot / "b.pt").write_bytes(b"")
    with pytest.raises(InteropError, match="holds 2 checkpoints \\(ECPAttention_whole.pt, b.pt\\)"):
        authors.read_checkpoint(snapshot)
    with pytest.raises(InteropError, match="holds no .safetensors, .pt, .pth, .bin or .ckpt file"):
        authors.read_checkpoint(tmp_path)  # only the snapshot folder in it
