"""What makes a checkpoint trustworthy beyond being readable: a content hash, and finite weights.

A checkpoint written by :func:`~image2point.checkpoint.files.save_checkpoint` carries ``content_sha256``:
the SHA-256 of its entries (every tensor's dtype, shape and bytes; every plain value's type and repr;
mappings in key order). Reading recomputes it, so a byte flipped on disk or in transit is a clear
refusal instead of silently different weights. Files without the entry (older checkpoints, weights
from elsewhere) are read as before. Separately, weights holding NaN or Inf are refused by every command
that runs them (eval, predict, export, inflate): a network that produces NaN everywhere predicts nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from image2point.errors import CheckpointError

CONTENT_HASH_KEY = "content_sha256"
# Hex digits of a digest quoted in an error.
SHOWN_DIGEST_CHARS = 12


def content_digest(state: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of ``state``'s entries, ``content_sha256`` itself left out."""
    digest = hashlib.sha256()
    _feed(digest, {key: value for key, value in state.items() if key != CONTENT_HASH_KEY})
    return digest.hexdigest()


def with_content_hash(state: Mapping[str, Any]) -> dict[str, Any]:
    """``state`` plus its ``content_sha256`` entry, as written to disk."""
    return {**state, CONTENT_HASH_KEY: content_digest(state)}


def verified(state: dict[str, Any], source: str | Path) -> dict[str, Any]:
    """``state`` without its ``content_sha256`` entry, once the entries are checked against it."""
    if CONTENT_HASH_KEY not in state:
        return state
    stored = state.pop(CONTENT_HASH_KEY)
    computed = content_digest(state)
    if stored != computed:
        shown = stored[:SHOWN_DIGEST_CHARS] if isinstance(stored, str) else repr(stored)
        raise CheckpointError(f"{source}: content hash does not match (stored sha256 {shown}..., computed "
                              f"{computed[:SHOWN_DIGEST_CHARS]}...): the file was damaged or changed after it was "
                              "written; use another copy")
    return state


def require_finite_weights(weights: Mapping[str, Any], source: str | Path) -> None:
    """CheckpointError naming the first floating-point tensor of ``weights`` that holds NaN or Inf."""
    for name, tensor in weights.items():
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point():
            bad = int((~torch.isfinite(tensor)).sum())
            if bad:
                raise CheckpointError(f"{source}: non-finite weights: {bad} NaN or Inf values in {name!r} (a "
                                      "diverged run?); use an earlier checkpoint")


def _feed(digest, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        flat = value.detach().cpu().contiguous().reshape(-1)
        digest.update(f"tensor {flat.dtype} {list(value.shape)};".encode())
        digest.update(flat.view(torch.uint8).numpy())
    elif isinstance(value, Mapping):
        digest.update(f"mapping {len(value)};".encode())
        for key in sorted(value, key=repr):
            _feed(digest, key)
            _feed(digest, value[key])
    elif isinstance(value, (list, tuple)):
        digest.update(f"sequence {len(value)};".encode())
        for item in value:
            _feed(digest, item)
    else:
        digest.update(f"{type(value).__name__} {value!r};".encode())
