"""``train.deterministic``: a training run that repeats bit for bit on CUDA, as it does on the CPU.

On the CPU a run already repeats exactly at a fixed thread count. On CUDA it does not: ``index_add_``,
the scatter-add of every sparse convolution of the torch backend (per offset or per offset group) and
of the sparse pools, adds with atomics in whatever order the threads arrive, so the sums differ in
their last bits from run to run and training amplifies that (0.4-1.7 % in the loss after four epochs
on an H200, docs/benchmarks.md).

``torch.use_deterministic_algorithms(True)`` changes that where it matters here (torch's documentation
of that function lists the ops): ``index_add_``, ``scatter_add_``, ``index_copy_`` and ``index_put_``
on CUDA run as sort-based accumulations (``index_add_`` becomes ``index_put_(..., accumulate=True)``,
which sorts the indices and sums each row's terms in their order), cuDNN and cuBLAS pick deterministic
algorithms, and an op without a deterministic CUDA implementation raises instead of running. Two such
ops were on this package's paths; under the mode both are replaced by exact equivalents with
deterministic kernels: the backward of bilinear ``F.interpolate`` (the range HRNet's branch fusion and
head) by two matmuls with fixed interpolation matrices (``image2point.models2d.resize``), and the 2D
NLL loss of logits with positions (``[B, C, N]``, ``[B, C, H, W]``) by the 1D loss of their flattened
rows (``image2point.train.losses``). No built-in family's training step then dispatches an op torch
refuses on CUDA (tests/train/test_determinism.py records each family's step against torch's list). A
family whose step still needs one names it in ``ModelFamily.cuda_nondeterministic_ops``;
:func:`check_deterministic_training` then refuses a deterministic run of it on CUDA, in one line naming
``train.deterministic`` and the op, before anything is built or written.

cuBLAS is deterministic only with a fixed workspace, chosen by ``CUBLAS_WORKSPACE_CONFIG`` before its
first call in the process; it is set here unless the environment already sets it. spconv's CUDA kernels
are outside torch's control, so a deterministic run takes the torch backend unless ``model.backend``
names another.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from typing import TYPE_CHECKING

import torch

from image2point.errors import ConfigError
from image2point.sparse.backends import default_backend, torch_backend
from image2point.train.families import get_family

if TYPE_CHECKING:
    from image2point.train.config import RunConfig

CUBLAS_WORKSPACE_VARIABLE = "CUBLAS_WORKSPACE_CONFIG"
# One of the two settings NVIDIA documents for reproducible cuBLAS results (CUDA 10.2 and later):
# 8 workspaces of 4096 KiB.
CUBLAS_WORKSPACE_SETTING = ":4096:8"


@contextlib.contextmanager
def deterministic_algorithms(enabled: bool) -> Iterator[None]:
    """Deterministic algorithms inside the block when ``enabled`` (torch's previous settings restored
    after it); nothing changes otherwise.

    ``CUBLAS_WORKSPACE_CONFIG`` stays set afterwards: cuBLAS reads it once per process. A process that
    called cuBLAS before entering (without the variable) gets torch's error naming it on its next
    cuBLAS call; set the variable before starting Python then.
    """
    if not enabled:
        yield
        return
    saved = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.benchmark)
    os.environ.setdefault(CUBLAS_WORKSPACE_VARIABLE, CUBLAS_WORKSPACE_SETTING)
    torch.use_deterministic_algorithms(True)
    # Autotuning could pick another (deterministic) cuDNN algorithm in another run.
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.benchmark = saved[2]


def training_backend(configured: str | None, deterministic: bool, device: torch.device) -> str:
    """The sparse backend of a run: ``model.backend`` if set, else the torch backend for a deterministic
    run (whose scatters torch makes deterministic), else the device's default."""
    if configured:
        return configured
    return torch_backend.NAME if deterministic else default_backend(device)


def trains_on_cuda(device: str) -> bool:
    """Whether ``train.device`` puts the run on a GPU: a CUDA device, or "auto" where CUDA is available
    (a name torch does not know is left to :func:`~image2point.train.distributed.resolve_device`)."""
    if device == "auto":
        return torch.cuda.is_available()
    try:
        return torch.device(device).type == "cuda"
    except RuntimeError:
        return False


def check_deterministic_training(config: RunConfig) -> None:
    """ConfigError naming ``train.deterministic`` and the op when a deterministic run on CUDA would reach
    an op without a deterministic CUDA implementation (its family's ``cuda_nondeterministic_ops``), so
    it is refused before anything is built or written instead of raising in the middle of a step."""
    if not (config.train.deterministic and trains_on_cuda(config.train.device)):
        return
    family = get_family(config.model.family)
    if family.cuda_nondeterministic_ops:
        ops = ", ".join(family.cuda_nondeterministic_ops)
        raise ConfigError(f"train.deterministic: model.family={family.name} trains with {ops}, which has no "
                          f"deterministic CUDA implementation; set train.deterministic=false or train.device=cpu")
