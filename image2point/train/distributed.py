"""Multi-process training utilities on top of ``torch.distributed``, launched with ``torchrun``.

``torchrun`` sets ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` for
every process; without ``WORLD_SIZE`` (a plain ``python`` launch) everything runs as one process and
the collective functions below do nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from image2point.errors import ConfigError

# Environment variables torchrun sets; init_method="env://" also reads MASTER_ADDR and MASTER_PORT.
_WORLD_SIZE_VAR = "WORLD_SIZE"
_RANK_VAR = "RANK"
_LOCAL_RANK_VAR = "LOCAL_RANK"
_RENDEZVOUS_VARS = ("MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistributedContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    # "gloo" or "nccl"; None for a single process without a process group.
    backend: str | None

    @property
    def is_distributed(self) -> bool:
        return self.backend is not None

    @property
    def is_main(self) -> bool:
        """Rank 0 writes logs, checkpoints and metrics files."""
        return self.rank == 0


def resolve_device(device: str = "auto", local_rank: int = 0) -> torch.device:
    """``"auto"``: this process's CUDA device when CUDA is available, else the CPU.

    ``"cuda"`` means ``cuda:<local_rank>``, so every process of a node gets its own GPU.
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        resolved = torch.device(device)
    except RuntimeError as error:
        raise ConfigError(f"device {device!r}: not a torch device ({error})") from error
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {device!r}: CUDA is not available on this machine")
        index = local_rank if resolved.index is None else resolved.index
        if index >= torch.cuda.device_count():
            raise ConfigError(f"device {device!r}: cuda:{index} requested, only {torch.cuda.device_count()} visible")
        resolved = torch.device("cuda", index)
    return resolved


def _env_int(name: str) -> int:
    raw = os.environ.get(name)
    if raw is None:
        raise ConfigError(f"environment variable {name} is not set but {_WORLD_SIZE_VAR} is; launch with torchrun")
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"environment variable {name}={raw!r} is not an integer") from None


def init_distributed(device: str = "auto") -> DistributedContext:
    """Join the process group torchrun describes (gloo on CPU, nccl on CUDA), or run as one process.

    Calling it again in a process that already joined returns the same context.
    """
    if _WORLD_SIZE_VAR not in os.environ:
        return DistributedContext(0, 1, 0, resolve_device(device), None)
    world_size = _env_int(_WORLD_SIZE_VAR)
    rank = _env_int(_RANK_VAR)
    local_rank = _env_int(_LOCAL_RANK_VAR)
    if world_size < 1 or not 0 <= rank < world_size or local_rank < 0:
        raise ConfigError(
            f"inconsistent torchrun environment: {_WORLD_SIZE_VAR}={world_size} {_RANK_VAR}={rank} "
            f"{_LOCAL_RANK_VAR}={local_rank}"
        )
    resolved = resolve_device(device, local_rank)
    if world_size == 1:
        return DistributedContext(0, 1, local_rank, resolved, None)
    missing = [name for name in _RENDEZVOUS_VARS if name not in os.environ]
    if missing:
        raise ConfigError(f"environment variables {', '.join(missing)} are not set; launch with torchrun")
    backend = "nccl" if resolved.type == "cuda" else "gloo"
    if resolved.type == "cuda":
        torch.cuda.set_device(resolved)
    if not dist.is_initialized():
        # device_id binds NCCL to this process's GPU up front; gloo takes no device.
        dist.init_process_group(
            backend,
            init_method="env://",
            rank=rank,
            world_size=world_size,
            device_id=resolved if backend == "nccl" else None,
        )
    return DistributedContext(rank, world_size, local_rank, resolved, dist.get_backend())


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def is_main() -> bool:
    """True on rank 0, and in a single process."""
    return not is_initialized() or dist.get_rank() == 0


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over all processes, in place, and return it; unchanged in a single process.

    NCCL reduces CUDA tensors only and gloo CPU tensors; a tensor on the other kind of device is
    copied over for the reduction and the sum copied back.
    """
    if not is_initialized():
        return tensor
    if dist.get_backend() == "nccl":
        comm_device = torch.device("cuda", torch.cuda.current_device())
    else:
        comm_device = torch.device("cpu")
    if tensor.device == comm_device:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor
    staged = tensor.to(comm_device)
    dist.all_reduce(staged, op=dist.ReduceOp.SUM)
    tensor.copy_(staged)
    return tensor


def broadcast_buffers(module: torch.nn.Module, source_rank: int = 0) -> None:
    """Copy every buffer of ``module`` (BatchNorm running statistics, ...) from ``source_rank`` to all
    processes; nothing in a single process.

    DDP broadcasts buffers before each training forward, but that forward then updates each rank's
    statistics from its own batch, so after the last step the ranks differ; evaluating (and
    checkpointing from rank 0) needs them equal.
    """
    if not is_initialized():
        return
    comm_device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None
    for buffer in module.buffers():
        if comm_device is None or buffer.device == comm_device:
            dist.broadcast(buffer, src=source_rank)
            continue
        staged = buffer.to(comm_device)
        dist.broadcast(staged, src=source_rank)
        buffer.copy_(staged)


def barrier() -> None:
    """Wait until every process reaches this point; returns at once in a single process."""
    if not is_initialized():
        return
    if dist.get_backend() == "nccl":
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


def cleanup() -> None:
    """Leave the process group (if this process joined one)."""
    if is_initialized():
        dist.destroy_process_group()
