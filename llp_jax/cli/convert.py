"""Converts the authors' PyTorch checkpoints (MetaMain/ECPTransformer) to llp_jax workdirs and back.

  # their save_model file (or a plain state_dict, or the whole pickled model) -> a workdir
  python -m experiments.convert --from_authors=trans_ECPAttention_N2048_H12_L18_D768_S8.pt \
      --workdir=workdir/ecp [--config=llp_jax/configs/paper_wikitext103.py:llp18]
  python -m experiments.convert --from_authors=ckpt.pt --model=enhanced_v2 --seq_len=1024 \
      --latent_len=256 --segments=8 --workdir=workdir/v2

  # an llp_jax workdir of a code-faithful model -> their save_model file (or --plain state dict)
  python -m experiments.convert --workdir=workdir/ecp --to_authors=out.pt [--step=N] [--plain]
  python -m experiments.convert --workdir=workdir/ecp --to_authors=out.safetensors [--plain]

The model config comes from the tensors and their file name (trans_<net>_N<n>_H<h>_L<l>_D<d>_S<s>
.pt); --model, --seq_len, --latent_len and --segments give what neither says (a one-line error
names it). --config supplies the data section the workdir is evaluated and trained with, whose
tokenizer must give the checkpoint's ids: for their enwik8 checkpoints (204 ids, their default)
--config=llp_jax/configs/paper_enwik8.py:llp24_txl, whose 'txl_bytes' numbers enwik8's bytes as
their Transformer-XL data code does (txl_bytes.py); for their WikiText-103 and PG-19 ones
bert-base-cased's tokenizer.json folder, --config.data.tokenizer=bert-base-cased/
--config.data.document_boundaries=none, whose stream is theirs (hf_tokenizer.py). A
checkpoint whose vocabulary the data section cannot give gets a note saying which to pass. The
imported workdir then works with experiments.evaluate, experiments.sample and experiments.train
(which continues from the weights with fresh optimizer moments).
"""

from absl import flags
from ml_collections import config_flags

from llp_jax.cli import common
from llp_jax.interop import export_checkpoint, import_checkpoint, vocabulary_note

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config whose data section to record.")
_FROM = flags.DEFINE_string(
    "from_authors",
    None,
    "An authors' checkpoint to import: a torch.save file (their save_model's, "
    "a state dict or the pickled model; zip or legacy format) or .safetensors; a path or a URL.",
)
_TO = common.output_flag(
    "to_authors", None, "Write the workdir's params here (.pt; or .safetensors: tensors only)."
)
_WORKDIR = flags.DEFINE_string("workdir", None, "The llp_jax workdir.")
_MODEL = flags.DEFINE_string("model", None, "Model name, where the tensors do not say.")
_SEQ_LEN = common.count_flag(
    "seq_len", None, "n, where neither tensors nor file name say.", lower_bound=None
)
_LATENT = common.count_flag(
    "latent_len", None, "l of perceiver_ar / enhanced_v1..v3.", lower_bound=None
)
_SEGMENTS = common.count_flag(
    "segments", None, "llp: S = n / s; enhanced_v2: S_h.", lower_bound=None
)
_STEP = common.count_flag("step", None, "Export this step (default: the newest).", lower_bound=None)
_PLAIN = flags.DEFINE_bool("plain", False, "Export a plain state dict, not a save_model file.")
_OVERWRITE = flags.DEFINE_bool(
    "overwrite",
    False,
    "Import into a workdir holding another run: that run is moved into "
    "previous_runs/ (nothing is deleted).",
)
flags.mark_flag_as_required("workdir")


def main(argv):
    common.start(argv)
    with common.one_line_errors():
        if bool(_FROM.value) == bool(_TO.value):
            raise common.UsageError("give exactly one of --from_authors and --to_authors")
        if _FROM.value:
            data = _CONFIG.value.data if _CONFIG.value is not None else None
            cfg, step = import_checkpoint(
                _FROM.value, _WORKDIR.value, data_config=data, overwrite=_OVERWRITE.value,
                name=_MODEL.value, seq_len=_SEQ_LEN.value, latent_len=_LATENT.value,
                segments=_SEGMENTS.value,
            )  # fmt: skip
            print(f"imported {_FROM.value} as {cfg.name} (code-faithful), step {step}, into "
                  f"{_WORKDIR.value}")  # fmt: skip
            if note := vocabulary_note(cfg, data):
                print(note)
        else:
            cfg, step = export_checkpoint(
                _WORKDIR.value, _TO.value, step=_STEP.value, plain=_PLAIN.value
            )
            print(f"exported step {step} of {_WORKDIR.value} ({cfg.name}) to {_TO.value}")


def entry():
    """The `llp-convert` console script."""
    common.run(main)


if __name__ == "__main__":
    entry()
