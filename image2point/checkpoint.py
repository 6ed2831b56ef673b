"""Checkpoint files: atomic saving, safe loading, and the random-number state needed to resume exactly.

Checkpoints are read with ``torch.load(weights_only=True)``, which only rebuilds tensors and plain
containers (dict, list, tuple, str, int, float, bool, None); a file that asks to run code is refused.
Everything written here (including :func:`capture_rng_state`) therefore sticks to those types.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import random
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, TypedDict

import numpy as np
import torch

from image2point.errors import CheckpointError

# Lines of torch's weights-only refusal message that are advice rather than the reason.
_UNSAFE_LOAD_BOILERPLATE = ("Weights only load failed", "Please file an issue", "Check the documentation")
# Permissions for new files before the umask applies, as ``open(path, "w")`` would use.
_NEW_FILE_MODE = 0o666
# How torch's zip format and a pickle (its PROTO opcode, protocol 2 and later) begin.
_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTO = b"\x80"


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file next to ``path``; on success it replaces ``path`` in one step.

    Readers see either the old file or the complete new one, never a partial write: the data is
    flushed and fsynced before ``os.replace``. If the body raises, the temporary file is removed,
    ``path`` is left untouched and the exception propagates.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write supports modes 'wb' and 'w', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A hidden name in the same directory: os.replace is only atomic within one file system.
    tmp_path = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _NEW_FILE_MODE)
    try:
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_path)
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    """Persist the rename itself; skipped where directories cannot be opened (Windows)."""
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def save_checkpoint(path: str | Path, obj: dict[str, Any]) -> None:
    """Write ``obj`` with ``torch.save`` atomically (see :func:`atomic_write`).

    Errors from serialising ``obj`` propagate unchanged (they are bugs in the caller); a path that
    cannot be written raises :class:`CheckpointError`.
    """
    try:
        with atomic_write(path, "wb") as handle:
            torch.save(obj, handle)
    except OSError as error:
        raise CheckpointError(f"{path}: cannot write checkpoint: {error.strerror or error}") from error


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (or any ``torch.save`` of plain data).

    Raises :class:`CheckpointError` naming the file and the reason when it is missing, truncated or
    corrupt, holds objects that weights-only loading refuses, or is not a dict at the top level.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        if not looks_like_torch_file(path):
            raise CheckpointError(f"{path}: unreadable (truncated or corrupt): neither torch's zip format "
                                  "nor a pickle") from error
        raise CheckpointError(
            f"{path}: refused to load: it holds objects other than tensors and plain containers "
            f"({_unsafe_load_reason(error)})"
        ) from error
    except Exception as error:  # torch reports damaged files with several exception types
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path}: unreadable (truncated or corrupt): {first_line}") from error
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict at the top level, got {type(obj).__name__}")
    return obj


def looks_like_torch_file(path: str | Path) -> bool:
    """Whether the file starts as torch's zip format or a pickle does; torch's weights-only loader
    reports other bytes (random data, another format) as refused objects, not as a damaged file."""
    with open(path, "rb") as handle:
        head = handle.read(len(_ZIP_MAGIC))
    return head.startswith((_ZIP_MAGIC, _PICKLE_PROTO))


def _unsafe_load_reason(error: pickle.UnpicklingError) -> str:
    """The specific reason from torch's multi-line weights-only refusal, as one line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    reasons = [line for line in lines if not line.startswith(_UNSAFE_LOAD_BOILERPLATE)]
    if reasons:
        return "; ".join(reasons)
    return lines[0] if lines else type(error).__name__


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
