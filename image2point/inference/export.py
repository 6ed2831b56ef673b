"""Export a trained network as ``NAME.safetensors`` (weights) plus ``NAME.config.yaml`` (its RunConfig).

safetensors holds only tensors and a string header, so loading an export can never run code, and
other frameworks read the weights without torch's pickle format. The header's metadata records the
task, the class names, the input width, the dataset ids of the classes (SemanticKITTI) and which
tensors are tied: weights shared between modules (a shared learnable filter transform T appears in
every inflated conv) are stored once and restored as one tensor under every name. The config is a
plain config file: :func:`image2point.train.config.load_config` reads it, and ``image2point train``
accepts it. The file format is :mod:`image2point.checkpoint.exported`;
:func:`image2point.inference.model.load_exported` rebuilds the network from the two files and refuses
files that are corrupt, not an export, or do not fit each other.

What cannot be exported to ONNX or TorchScript, and why:

- Sparse tensors are Python dataclasses (``SparseTensor``) carrying a per-batch ``CoordinateCache``.
  TorchScript cannot script modules whose inputs and outputs are such dataclasses with dict caches,
  and tracing would freeze one input's structure.
- Kernel maps are data-dependent: which input site feeds which output site is found at run time with
  ``torch.unique`` / ``searchsorted`` over the coordinates and cached per batch. The pairs, their
  counts and the strided levels' site counts change with every cloud; ONNX would need the gather /
  scatter loops over kernel offsets unrolled for one input's pair lists, so an exported graph would
  only be valid for the cloud it was traced with.
- The sparse convolutions are custom autograd functions (and, on CUDA, spconv kernels), which have
  no ONNX operators.
- Shapes are dynamic per input (sites per level, pairs per kernel offset), beyond what a static
  graph with a few symbolic dimensions expresses.

The exportable part is the weights: any runtime that re-implements submanifold and strided sparse
convolutions (spconv, MinkowskiEngine, TorchSparse) can load them by name from the safetensors file.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from image2point.checkpoint.exported import encode_exported_weights, export_paths
from image2point.errors import DataError
from image2point.inference.model import TrainedModel, load_trained
from image2point.inference.outputs import commit_outputs
from image2point.io.output import require_output_directory
from image2point.train.config import save_config


@dataclasses.dataclass(frozen=True)
class ExportedFiles:
    """The two files of an export, and the tensor names stored as aliases of another (alias, stored)."""

    weights: Path
    config: Path
    num_tensors: int
    tied: tuple[tuple[str, str], ...]


def export_checkpoint(checkpoint: str | Path | TrainedModel, out: str | Path, force: bool = False) -> ExportedFiles:
    """Write the network of ``checkpoint`` (a training checkpoint or a loaded model) as an export.

    Both files are written, atomically and together, only after the checkpoint was loaded and
    checked; existing files are replaced only with ``force``.
    """
    weights_path, config_path = export_paths(out)
    require_output_directory(weights_path.parent)
    for path in (weights_path, config_path):
        if path.exists() and not force:
            raise DataError(f"{path}: exists; pass --force to replace it")
    model = checkpoint if isinstance(checkpoint, TrainedModel) else load_trained(checkpoint)
    data, metadata, num_tensors = encode_exported_weights(model.network.state_dict(), model.task, model.class_names,
                                                          model.in_features, model.labels.original_ids)

    def write_weights(target: Path) -> None:
        target.write_bytes(data)

    commit_outputs({weights_path: write_weights, config_path: lambda target: save_config(model.config, target)})
    return ExportedFiles(weights_path, config_path, num_tensors, tuple(metadata.tied.items()))
