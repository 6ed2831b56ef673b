"""Checkpoints: atomic writing, the one safe torch-file reader, typed records, and the RNG state.

- :mod:`~image2point.checkpoint.files`: ``atomic_write``, ``save_checkpoint`` and ``read_torch_file`` /
  ``load_checkpoint`` (``weights_only=True``; one-line errors naming the file);
- :mod:`~image2point.checkpoint.records`: the training and inflated-backbone checkpoints as versioned
  dataclasses (``TrainingCheckpoint``, ``InflatedCheckpoint``), read from old plain-dict files too;
- :mod:`~image2point.checkpoint.exported`: the safetensors weights of an export and their header;
- :mod:`~image2point.checkpoint.rng`: the generator states a run needs to resume exactly.
"""

from image2point.checkpoint.files import (
    atomic_write,
    load_checkpoint,
    looks_like_torch_file,
    read_torch_file,
    save_checkpoint,
)
from image2point.checkpoint.records import (
    InflatedCheckpoint,
    TrainingCheckpoint,
    TrainingProgress,
    load_inflated_checkpoint,
    load_training_checkpoint,
    save_inflated_checkpoint,
    save_training_checkpoint,
)
from image2point.checkpoint.rng import RngState, capture_rng_state, restore_rng_state, seed_everything

__all__ = [
    "InflatedCheckpoint",
    "RngState",
    "TrainingCheckpoint",
    "TrainingProgress",
    "atomic_write",
    "capture_rng_state",
    "load_checkpoint",
    "load_inflated_checkpoint",
    "load_training_checkpoint",
    "looks_like_torch_file",
    "read_torch_file",
    "restore_rng_state",
    "save_checkpoint",
    "save_inflated_checkpoint",
    "save_training_checkpoint",
    "seed_everything",
]
