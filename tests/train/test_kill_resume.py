"""Training killed with SIGKILL mid-run resumes from its last checkpoint and loses nothing.

The resumed run equals the uninterrupted one exactly: on the CPU as it is, on CUDA with
``train.deterministic=true`` (without it, CUDA's atomic scatter-adds make no two runs bit-identical: 0.4-1.7 %
apart in the loss after four epochs on an H200).
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from image2point.checkpoint import load_checkpoint
from image2point.train import loop

ARGS = ["data.name=procedural_shapes", "data.train_samples=48", "data.eval_samples=12", "data.num_points=256",
        "data.batch_size=8", "data.num_workers=0", "model.backbone=cifar_resnet20", "optim.lr=0.05",
        "train.epochs=4", "train.seed=5", "train.threads=1"]
POLL_SECONDS = 0.05
TIMEOUT_SECONDS = 120
# Deterministic algorithms on CUDA (train/determinism.py); the CPU repeats runs without them.
DETERMINISTIC = {"cpu": "train.deterministic=false", "cuda": "train.deterministic=true"}


def _train(run_dir, device: str, *flags: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "image2point.cli", "train", *ARGS, f"train.device={device}",
               DETERMINISTIC[device], f"train.run_dir={run_dir}", "--quiet", *flags]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _checkpointed(run_dir) -> bool:
    return (run_dir / loop.LAST_CHECKPOINT).exists()


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX)")
@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def test_sigkill_then_resume_equals_an_uninterrupted_run(tmp_path, device):
    straight = _train(tmp_path / "straight", device)
    victim = _train(tmp_path / "victim", device)
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while not _checkpointed(tmp_path / "victim") and victim.poll() is None:
        assert time.monotonic() < deadline, "training made no progress"
        time.sleep(POLL_SECONDS)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL, f"the run ended before the kill: {victim.stderr.read().decode()}"

    # Whatever moment the kill hit, the checkpoint on disk is complete (atomic writes).
    assert load_checkpoint(tmp_path / "victim" / loop.LAST_CHECKPOINT)["epoch"] >= 0
    resumed = _train(tmp_path / "victim", device, "--resume")
    assert resumed.wait(TIMEOUT_SECONDS) == 0, resumed.stderr.read().decode()
    assert straight.wait(TIMEOUT_SECONDS) == 0, straight.stderr.read().decode()

    expected = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    actual = json.loads((tmp_path / "victim" / "metrics.json").read_text())
    assert actual["epoch_losses"] == expected["epoch_losses"]
    assert actual["final"] == expected["final"]
    history = [json.loads(line)["epoch"] for line in (tmp_path / "victim" / loop.METRICS_HISTORY).read_text().splitlines()]
    assert history == list(range(len(expected["epoch_losses"])))
    leftovers = [p.name for p in (tmp_path / "victim").iterdir() if p.name.endswith(".tmp")]
    assert not leftovers
