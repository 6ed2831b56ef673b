"""Checkpoint files: atomic writing and the one safe reader of torch files.

Every torch file image2point reads (its own checkpoints, 2D weights from elsewhere) goes through
:func:`read_torch_file`: ``torch.load(weights_only=True)``, which only rebuilds tensors and plain
containers (dict, list, tuple, str, int, float, bool, None); a file that asks to run code is refused.
Everything image2point writes therefore sticks to those types.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

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


def read_torch_file(path: str | Path, map_location: str | torch.device = "cpu") -> object:
    """The object in a torch file, loaded with ``weights_only=True``.

    Raises :class:`CheckpointError` naming the file and the reason when it is missing, truncated or
    corrupt, or holds objects that weights-only loading refuses (a pickled module, code).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        if not looks_like_torch_file(path):
            raise CheckpointError(f"{path}: unreadable (truncated or corrupt): neither torch's zip format "
                                  "nor a pickle") from error
        raise CheckpointError(
            f"{path}: refused to load: it holds objects other than tensors and plain containers, which "
            f"weights_only=True does not rebuild (save a state_dict, not a whole model): {_unsafe_load_reason(error)}"
        ) from error
    except Exception as error:  # torch reports damaged files with several exception types
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path}: unreadable (truncated or corrupt): {first_line}") from error


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The dict in a checkpoint written by :func:`save_checkpoint` (or any ``torch.save`` of plain data).

    Raises :class:`CheckpointError` as :func:`read_torch_file` does, and when the file does not hold a
    dict at the top level.
    """
    obj = read_torch_file(path, map_location)
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
