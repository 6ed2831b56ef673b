"""The training loss: cross-entropy over the class dimension, with an ignore index and optional class weights.

Logits with positions after the class dimension (``[B, C, N]`` of PointNet++ segmentation, ``[B, C, H, W]``
of range images) take torch's 2D NLL loss, whose CUDA forward sums with atomics and has no deterministic
variant: under ``torch.use_deterministic_algorithms(True)`` it raises there. Flattened to ``[M, C]`` rows
(one per position) the same mean, ``sum(w[t] * nll) / sum(w[t])`` over the targets not ignored, takes
the 1D kernel, which reduces in one block of threads in a fixed order and writes each row's gradient
once (aten/src/ATen/native/cuda/Loss.cu). The flattening is done only while deterministic algorithms
are on: on CUDA the 2D kernel spreads its sum over the whole GPU, the 1D one over a single block.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

CLASS_DIM = 1


def class_rows(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits ``[B, C, *positions]`` as ``[B * positions, C]`` rows and their targets as ``[B * positions]``."""
    classes = logits.shape[CLASS_DIM]
    return logits.movedim(CLASS_DIM, -1).reshape(-1, classes), targets.reshape(-1)


def flattened_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int,
                            weight: torch.Tensor | None = None) -> torch.Tensor:
    """``F.cross_entropy`` of ``[B, C, *positions]`` logits as the 1D NLL loss of ``[M, C]`` log-probability rows.

    The log-softmax runs on the logits' own layout, as ``F.cross_entropy`` runs it: on rows of a few
    classes it is several times slower on the CPU (``benchmarks/bench_deterministic_paths.py``).
    """
    log_probabilities, targets = class_rows(F.log_softmax(logits, CLASS_DIM), targets)
    return F.nll_loss(log_probabilities, targets, weight=weight, ignore_index=ignore_index)


def cross_entropy_loss(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int,
                       weight: torch.Tensor | None = None) -> torch.Tensor:
    """``F.cross_entropy`` (mean over the targets not ignored, weighted by ``weight[target]``), computed on
    flattened rows while deterministic algorithms are on (see the module docstring)."""
    if logits.ndim > 2 and torch.are_deterministic_algorithms_enabled():
        return flattened_cross_entropy(logits, targets, ignore_index, weight)
    return F.cross_entropy(logits, targets, weight=weight, ignore_index=ignore_index)
