"""The training engine end to end on tiny procedural data: resume, DDP, run directory, bad input.

Runs are on the CPU unless a test says otherwise (``train.device`` would otherwise pick a visible GPU,
where scatter-adds use atomics and runs are not bit-reproducible); CUDA variants carry the ``cuda``
marker and compare with a tolerance instead.
"""

import json
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from image2point.checkpoint import save_checkpoint
from image2point.errors import CheckpointError, ConfigError
from image2point.train import loop
from image2point.train.config import load_config

TINY = ["data.name=procedural_shapes", "data.train_samples=24", "data.eval_samples=12", "data.num_points=256",
        "data.batch_size=8", "data.num_workers=0", "model.backbone=cifar_resnet20", "optim.lr=0.05",
        "train.epochs=2", "train.seed=3"]


CUDA = pytest.param("cuda", marks=pytest.mark.cuda)
# A CUDA run repeats exactly only with deterministic algorithms (atomic scatter-adds otherwise).
REPEATABLE = {"cpu": "train.deterministic=false", "cuda": "train.deterministic=true"}
# Evaluating in other batches on other GPUs sums in another order, which may flip the prediction of a
# borderline sample among the 12 evaluated.
CUDA_ACCURACY_ATOL = 1 / 12 + 1e-6


def tiny_config(run_dir, *extra):
    return load_config(None, [*TINY, "train.device=cpu", f"train.run_dir={run_dir}", *extra])


class Interrupted(Exception):
    pass


@pytest.mark.parametrize("device", ["cpu", CUDA])
def test_resume_after_interruption_repeats_the_uninterrupted_run(tmp_path, monkeypatch, device):
    on_device = (f"train.device={device}", REPEATABLE[device])
    reference = loop.run_training(tiny_config(tmp_path / "straight", *on_device), quiet=True)

    real_save = loop.save_training_checkpoint

    def save_then_die(path, checkpoint):
        real_save(path, checkpoint)
        if path.name == loop.LAST_CHECKPOINT and checkpoint.progress.epoch == 0:
            raise Interrupted

    monkeypatch.setattr(loop, "save_training_checkpoint", save_then_die)
    with pytest.raises(Interrupted):
        loop.run_training(tiny_config(tmp_path / "interrupted", *on_device), quiet=True)
    monkeypatch.setattr(loop, "save_training_checkpoint", real_save)
    resumed = loop.run_training(tiny_config(tmp_path / "interrupted", *on_device), resume=True, quiet=True)

    assert resumed.epoch_losses == reference.epoch_losses
    assert resumed.final.as_dict() == reference.final.as_dict()
    lines = (tmp_path / "interrupted" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [0, 1]


def test_run_directory_holds_config_metrics_and_checkpoints(tmp_path):
    run_dir = tmp_path / "run"
    result = loop.run_training(tiny_config(run_dir, "finetune.scheme=io"), quiet=True)
    for name in ("config.yaml", "train.log", "metrics.jsonl", "metrics.json", "conversion.txt", "last.pt", "best.pt"):
        assert (run_dir / name).is_file(), name
    assert load_config(run_dir / "config.yaml") == tiny_config(run_dir, "finetune.scheme=io")
    final = json.loads((run_dir / "metrics.json").read_text())
    assert final["final"]["overall_accuracy"] == pytest.approx(result.final.overall_accuracy)
    assert final["scheme"] == "io"
    metrics = loop.evaluate_checkpoint(tiny_config(run_dir), run_dir / "last.pt")
    assert metrics.overall_accuracy == pytest.approx(result.final.overall_accuracy)


def test_a_used_run_directory_is_not_overwritten(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty"):
        loop.run_training(tiny_config(run_dir), quiet=True)
    assert (run_dir / "notes.txt").read_text() == "mine"


def test_resume_with_another_model_is_refused(tmp_path):
    run_dir = tmp_path / "run"
    loop.run_training(tiny_config(run_dir, "train.epochs=1"), quiet=True)
    with pytest.raises(CheckpointError, match="model settings"):
        loop.run_training(tiny_config(run_dir, "train.epochs=2", "model.stride_mode=window"), resume=True, quiet=True)


def test_checkpoint_of_another_architecture_is_refused_by_eval(tmp_path):
    bogus = tmp_path / "other.pt"
    save_checkpoint(bogus, {"model": {"fc.weight": torch.zeros(3, 3)}})
    with pytest.raises(CheckpointError, match="does not fit"):
        loop.evaluate_checkpoint(tiny_config(tmp_path / "eval"), bogus)


@pytest.mark.parametrize("override,message", [
    ("finetune.scheme=t", "learnable_t"),
    ("data.name=modelnet40", "data.root"),
])
def test_inconsistent_configs_are_refused(tmp_path, override, message):
    with pytest.raises(ConfigError, match=message):
        loop.run_training(tiny_config(tmp_path / "run", override), quiet=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ddp_worker(rank: int, world_size: int, port: int, run_dir: str, results: str, device: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    config = tiny_config(run_dir, "train.epochs=1", f"train.device={device}")
    result = loop.run_training(config, quiet=True)
    weights = {k: v for k, v in result_network_state(run_dir).items()} if rank == 0 else None
    torch.save({"rank": rank, "final": result.final.as_dict(), "losses": result.epoch_losses,
                "weights": weights}, os.path.join(results, f"rank{rank}.pt"))
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


def result_network_state(run_dir):
    from image2point.checkpoint import load_checkpoint

    return load_checkpoint(os.path.join(run_dir, loop.LAST_CHECKPOINT))["model"]


# gloo on the CPU; NCCL on CUDA, which takes one GPU per process.
@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(
    torch.cuda.device_count() < 2, reason="NCCL needs a GPU per process: two GPUs")])])
def test_two_process_ddp_matches_one_process_evaluation(tmp_path, device):
    results = tmp_path / "results"
    results.mkdir()
    run_dir = tmp_path / "ddp"
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(run_dir), str(results), device), nprocs=2, join=True)
    ranks = [torch.load(results / f"rank{r}.pt", weights_only=True) for r in range(2)]
    # Metrics are reduced across ranks: both ranks report the same numbers and the same mean loss.
    assert ranks[0]["final"] == ranks[1]["final"]
    assert ranks[0]["losses"] == ranks[1]["losses"]
    # One process evaluating the DDP-trained weights on the whole evaluation set gets the same metrics
    # (on the CPU; up to a borderline sample when the ranks evaluated on their GPUs).
    single = loop.evaluate_checkpoint(tiny_config(run_dir, "train.epochs=1"), run_dir / loop.LAST_CHECKPOINT)
    if device == "cpu":
        assert single.as_dict() == ranks[0]["final"]
    else:
        assert single.overall_accuracy == pytest.approx(ranks[0]["final"]["overall_accuracy"], abs=CUDA_ACCURACY_ATOL)
    assert sorted(p.name for p in run_dir.iterdir() if p.suffix == ".json") == ["metrics.json"]


# fp16 with loss scaling runs on CUDA only here (tests/sparse/test_autocast.py steps it on the CPU).
@pytest.mark.parametrize("amp,device", [("bf16", "cpu"), pytest.param("bf16", "cuda", marks=pytest.mark.cuda),
                                        pytest.param("fp16", "cuda", marks=pytest.mark.cuda)])
def test_mixed_precision_trains(tmp_path, amp, device):
    config = tiny_config(tmp_path / amp, f"train.amp={amp}", "train.epochs=1", f"train.device={device}")
    result = loop.run_training(config, quiet=True)
    assert all(torch.isfinite(torch.tensor(result.epoch_losses)))
    assert 0.0 <= result.final.overall_accuracy <= 1.0
    state = result_network_state(tmp_path / amp)
    assert all(torch.isfinite(tensor).all() for tensor in state.values() if tensor.is_floating_point())


def test_learnable_t_scheme_changes_t_and_keeps_2d_kernels(tmp_path, monkeypatch):
    run_dir = tmp_path / "t"
    config = tiny_config(run_dir, "finetune.scheme=t", "finetune.learnable_t=shared", "train.epochs=1")
    initial = {}
    real_build = loop.build_model

    def build_and_remember(*args, **kwargs):
        built = real_build(*args, **kwargs)
        initial.update({key: value.clone() for key, value in built.network.state_dict().items()})
        return built

    monkeypatch.setattr(loop, "build_model", build_and_remember)
    loop.run_training(config, quiet=True)
    trained = result_network_state(run_dir)
    transforms = [key for key in trained if key.endswith("transform.transform")]
    kernels_2d = [key for key in trained if key.endswith("weight_2d")]
    assert transforms and kernels_2d
    assert any(not torch.equal(trained[key], initial[key]) for key in transforms)
    assert all(torch.equal(trained[key], initial[key]) for key in kernels_2d)


def test_a_step_batch_unlike_the_recipes_is_warned_about_and_logged(tmp_path):
    run_dir = tmp_path / "run"
    with pytest.warns(RuntimeWarning, match=r"1 process\(es\) x data.batch_size 8 = 8 samples.*effective_batch_size is 16"):
        loop.run_training(tiny_config(run_dir, "train.epochs=1", "data.effective_batch_size=16"), quiet=True)
    assert "effective_batch_size is 16" in (run_dir / "train.log").read_text()
