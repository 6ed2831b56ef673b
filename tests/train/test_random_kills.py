"""A training killed with SIGKILL at random moments, checkpoint writes included, and resumed after each
kill, ends with the weights and the metrics.jsonl of a run that was never interrupted.

The killed process is the real command line. To let kills land inside checkpoint writes, its torch.save
pauses halfway through each checkpoint (the staging file then holds half a checkpoint); a kill aimed at a
write waits for a staging file to appear and strikes during the pause, a kill aimed at a random moment
strikes after a random delay. The slow variant makes 20 kills (the audit's figure), the default one 2.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from image2point.train import loop

RUN = ["data.name=procedural_scenes", "data.voxel_size=0.25", "model.head=unet", "data.num_workers=0",
       "data.train_samples=2", "data.eval_samples=1", "data.batch_size=1", "train.epochs=5", "train.threads=1",
       "model.backbone=none", "model.linear_width=64", "train.device=cpu"]
# Seconds torch.save pauses halfway through a checkpoint, so a kill can land inside the write.
WRITE_PAUSE_SECONDS = 0.3
POLL_SECONDS = 0.005
ATTEMPT_TIMEOUT_SECONDS = 300
KILLS_SLOW = 20
KILLS_FAST = 2
# Random kills strike within this many seconds of a start (a start imports torch, builds, then trains).
RANDOM_KILL_WINDOW_SECONDS = (2.0, 12.0)
# The command line, with every checkpoint write pausing halfway (the staging file then holds half of it).
TRAINER = textwrap.dedent(f"""
    import contextlib, sys, time
    import image2point.checkpoint.files as files
    real_atomic_write = files.atomic_write

    class HalfThenPause:
        def __init__(self, handle):
            self.handle = handle
        def write(self, data):
            data = bytes(data)
            self.handle.write(data[: len(data) // 2])
            self.handle.flush()
            time.sleep({WRITE_PAUSE_SECONDS})
            return self.handle.write(data[len(data) // 2:])
        def __getattr__(self, name):
            return getattr(self.handle, name)

    @contextlib.contextmanager
    def atomic_write(path, mode="wb"):
        with real_atomic_write(path, mode) as handle:
            yield HalfThenPause(handle)

    files.atomic_write = atomic_write
    from image2point.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def _start(run_dir: Path, resume: bool) -> subprocess.Popen:
    argv = ["train", *RUN, f"train.run_dir={run_dir}", "--quiet", *(["--resume"] if resume else [])]
    return subprocess.Popen([sys.executable, "-c", TRAINER, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})


def _writing(run_dir: Path) -> bool:
    return run_dir.is_dir() and any(path.name.endswith(".tmp") and ".pt." in path.name for path in run_dir.iterdir())


def _kill_when(process: subprocess.Popen, ready, deadline: float) -> bool:
    """SIGKILL ``process`` once ``ready()``; False when it finished first."""
    while not ready():
        if process.poll() is not None:
            return False
        assert time.monotonic() < deadline, "the training made no progress"
        time.sleep(POLL_SECONDS)
    process.kill()
    process.wait()
    return True


def _run_with_kills(run_dir: Path, kills: int, rng: random.Random) -> tuple[int, int]:
    """Train into ``run_dir`` to the end, killing it ``kills`` times; (kills, kills inside a checkpoint write)."""
    done = in_writes = 0
    resume = False
    while True:
        process = _start(run_dir, resume)
        resume = True
        deadline = time.monotonic() + ATTEMPT_TIMEOUT_SECONDS
        if done == kills:
            assert process.wait(ATTEMPT_TIMEOUT_SECONDS) == 0, process.stderr.read()
            return done, in_writes
        aim_at_write = done % 2 == 0
        if aim_at_write:
            killed = _kill_when(process, lambda: _writing(run_dir), deadline)
        else:
            strike = time.monotonic() + rng.uniform(*RANDOM_KILL_WINDOW_SECONDS)
            killed = _kill_when(process, lambda: time.monotonic() >= strike, deadline)
        if not killed:
            assert process.returncode == 0, process.stderr.read()
            # It finished before the kill: start over in a fresh directory so every kill lands.
            return _run_with_kills(run_dir.with_name(run_dir.name + "-again"), kills - done, rng)
        done += 1
        in_writes += aim_at_write


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / loop.LAST_CHECKPOINT, weights_only=True)["model"]


def _history(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / loop.METRICS_HISTORY).read_text().splitlines()]


def _check_kills(tmp_path: Path, kills: int, seed: int) -> None:
    straight = tmp_path / "straight"
    reference = _start(straight, resume=False)
    assert reference.wait(ATTEMPT_TIMEOUT_SECONDS) == 0, reference.stderr.read()
    victim = tmp_path / "victim"
    done, in_writes = _run_with_kills(victim, kills, random.Random(seed))
    finished = victim if (victim / "metrics.json").exists() else victim.with_name("victim-again")
    assert done == kills and in_writes == (kills + 1) // 2
    assert _history(finished) == _history(straight)
    expected, actual = _weights(straight), _weights(finished)
    assert expected.keys() == actual.keys()
    assert all(torch.equal(expected[name], actual[name]) for name in expected)
    assert not [path.name for path in finished.iterdir() if path.name.endswith(".tmp")]


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX)")
def test_two_kills_one_inside_a_checkpoint_write_then_resumes_equal_an_uninterrupted_run(tmp_path):
    _check_kills(tmp_path, KILLS_FAST, seed=0)


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX)")
def test_twenty_random_kills_then_resumes_equal_an_uninterrupted_run(tmp_path):
    _check_kills(tmp_path, KILLS_SLOW, seed=1)
