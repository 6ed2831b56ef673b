"""The random-number state a training run needs to resume exactly, in weights-only-loadable types."""

from __future__ import annotations

import random
from typing import TypedDict

import numpy as np
import torch

from image2point.errors import CheckpointError


class PythonRngState(TypedDict):
    version: int
    internal_state: torch.Tensor
    gauss_next: float | None


class NumpyRngState(TypedDict):
    bit_generator: str
    keys: torch.Tensor
    position: int
    has_gauss: int
    cached_gaussian: float


class RngState(TypedDict):
    """Generator states of every library a training run draws from, in weights-only-loadable types."""

    python: PythonRngState
    numpy: NumpyRngState
    torch_cpu: torch.Tensor
    torch_cuda: list[torch.Tensor]


def seed_everything(seed: int) -> None:
    """Seed python's ``random``, numpy's global generator and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def capture_rng_state() -> RngState:
    """Snapshot python ``random``, numpy's global generator and torch (CPU, plus every CUDA device)."""
    py_version, py_internal, py_gauss_next = random.getstate()
    np_name, np_keys, np_position, np_has_gauss, np_cached = np.random.get_state(legacy=True)
    return RngState(
        python=PythonRngState(
            version=py_version,
            internal_state=torch.tensor(py_internal, dtype=torch.int64),
            gauss_next=py_gauss_next,
        ),
        numpy=NumpyRngState(
            bit_generator=str(np_name),
            # uint32 keys fit in int64 without loss; torch.load(weights_only) cannot rebuild numpy arrays.
            keys=torch.from_numpy(np_keys.astype(np.int64)),
            position=int(np_position),
            has_gauss=int(np_has_gauss),
            cached_gaussian=float(np_cached),
        ),
        torch_cpu=torch.get_rng_state(),
        torch_cuda=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    )


def restore_rng_state(state: RngState) -> None:
    """Restore a snapshot from :func:`capture_rng_state`.

    CUDA states are restored for the devices present now; a snapshot from a GPU run restored on a
    CPU-only machine restores everything else. The state tensors may come from a checkpoint loaded onto
    a GPU (``map_location="cuda"``); generators only take CPU byte tensors, so they are copied back.
    """
    try:
        python_state = state["python"]
        numpy_state = state["numpy"]
        random.setstate(
            (
                python_state["version"],
                tuple(int(word) for word in python_state["internal_state"].tolist()),
                python_state["gauss_next"],
            )
        )
        np.random.set_state(
            (
                numpy_state["bit_generator"],
                numpy_state["keys"].cpu().numpy().astype(np.uint32),
                numpy_state["position"],
                numpy_state["has_gauss"],
                numpy_state["cached_gaussian"],
            )
        )
        torch.set_rng_state(state["torch_cpu"].cpu())
    except KeyError as error:
        raise CheckpointError(f"RNG state: missing entry {error.args[0]!r}") from error
    except (TypeError, ValueError, AttributeError, RuntimeError) as error:
        raise CheckpointError(f"RNG state: malformed: {error}") from error
    cuda_states = state.get("torch_cuda", [])
    if cuda_states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([cuda_state.cpu() for cuda_state in cuda_states[: torch.cuda.device_count()]])
