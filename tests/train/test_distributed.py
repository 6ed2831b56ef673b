import json
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from image2point.errors import ConfigError
from image2point.train import distributed
from image2point.train.metrics import ConfusionMatrix

NUM_CLASSES = 4
WORLD_SIZE = 2
IGNORE = -100
TORCHRUN_VARS = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def _dataset() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    target = torch.randint(0, NUM_CLASSES, (2 * WORLD_SIZE, 64), generator=generator)
    pred = torch.randint(0, NUM_CLASSES, target.shape, generator=generator)
    target[:, :5] = IGNORE
    return pred, target


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _worker(rank: int, port: int, output_dir: str) -> None:
    """One torchrun-like process: sets the environment torchrun would, evaluates its shard, reduces."""
    os.environ.update(
        {
            "WORLD_SIZE": str(WORLD_SIZE),
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
        }
    )
    context = distributed.init_distributed("cpu")
    try:
        pred, target = _dataset()
        matrix = ConfusionMatrix(NUM_CLASSES, ignore_index=IGNORE)
        # Rank r evaluates rows r, r + WORLD_SIZE, ...
        matrix.update(pred[rank::WORLD_SIZE], target[rank::WORLD_SIZE])
        matrix.all_reduce()
        summed_ranks = distributed.all_reduce_sum(torch.tensor([float(rank)]))
        distributed.barrier()
        result = {
            "rank": context.rank,
            "world_size": context.world_size,
            "backend": context.backend,
            "is_main": context.is_main,
            "module_is_main": distributed.is_main(),
            "summed_ranks": summed_ranks.item(),
            "metrics": matrix.compute().as_dict(),
        }
        with open(os.path.join(output_dir, f"rank{rank}.json"), "w") as handle:
            json.dump(result, handle)
    finally:
        distributed.cleanup()


@pytest.mark.skipif(not dist.is_available(), reason="torch built without torch.distributed")
def test_two_gloo_processes_reduce_to_single_process_metrics(tmp_path):
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD_SIZE, join=True)

    pred, target = _dataset()
    single = ConfusionMatrix(NUM_CLASSES, ignore_index=IGNORE)
    single.update(pred, target)
    expected = single.compute().as_dict()
    for rank in range(WORLD_SIZE):
        result = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert result["rank"] == rank and result["world_size"] == WORLD_SIZE and result["backend"] == "gloo"
        assert result["is_main"] == result["module_is_main"] == (rank == 0)
        assert result["summed_ranks"] == sum(range(WORLD_SIZE))
        assert result["metrics"] == expected


def test_single_process_without_torchrun(monkeypatch):
    for name in TORCHRUN_VARS:
        monkeypatch.delenv(name, raising=False)
    context = distributed.init_distributed("cpu")
    assert context == distributed.DistributedContext(0, 1, 0, torch.device("cpu"), None)
    assert context.is_main and not context.is_distributed
    assert distributed.is_main()
    tensor = torch.tensor([1.0, 2.0])
    assert distributed.all_reduce_sum(tensor) is tensor and tensor.tolist() == [1.0, 2.0]
    distributed.barrier()
    distributed.cleanup()


def test_auto_device_is_cpu_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert distributed.resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ConfigError, match="CUDA is not available"):
        distributed.resolve_device("cuda")


def test_unknown_device_is_a_config_error():
    with pytest.raises(ConfigError, match="'tpu0': not a torch device"):
        distributed.resolve_device("tpu0")


def test_incomplete_torchrun_environment_is_reported(monkeypatch):
    for name in TORCHRUN_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="RANK is not set but WORLD_SIZE is; launch with torchrun"):
        distributed.init_distributed("cpu")
    monkeypatch.setenv("RANK", "two")
    with pytest.raises(ConfigError, match="RANK='two' is not an integer"):
        distributed.init_distributed("cpu")
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    with pytest.raises(ConfigError, match="inconsistent torchrun environment"):
        distributed.init_distributed("cpu")
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(ConfigError, match="MASTER_ADDR, MASTER_PORT are not set"):
        distributed.init_distributed("cpu")
