"""Other people's checkpoints: the authors' PyTorch models (MetaMain/ECPTransformer) in and out of
llp_jax, the `torch.save` format read and written without PyTorch, `.safetensors` read."""

from llp_jax.interop.authors import (
    CLASSES,
    NETS,
    InteropError,
    check_exportable,
    infer_config,
    read_checkpoint,
)
from llp_jax.interop.authors_keys import from_params, to_params
from llp_jax.interop.safetensors_format import SafetensorsError
from llp_jax.interop.torch_format import TorchFormatError
from llp_jax.interop.workdir import export_checkpoint, import_checkpoint, vocabulary_note

__all__ = [
    "CLASSES",
    "NETS",
    "InteropError",
    "SafetensorsError",
    "TorchFormatError",
    "check_exportable",
    "export_checkpoint",
    "from_params",
    "import_checkpoint",
    "infer_config",
    "read_checkpoint",
    "to_params",
    "vocabulary_note",
]
