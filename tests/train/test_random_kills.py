"""A training killed with SIGKILL at random moments, checkpoint writes included, and resumed after each
kill, ends with the weights and the metrics.jsonl of a run that was never interrupted.

The killed process is the real command line. So that kills can land inside checkpoint writes, each
checkpoint write pauses halfway (its staging file then holds half the checkpoint). Every other kill is
aimed into a write: it waits for the k-th staging file of the attempt to appear (k random, 1-3) and
strikes during the pause. The others strike at a random moment: after k completed writes (k random, 0-2),
a random delay later (during start-up when k is 0). The slow variant makes 20 kills, the default one 2.
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

from image2point.cli import main
from image2point.train import loop

RUN = ["data.name=procedural_scenes", "data.voxel_size=0.25", "model.head=unet", "data.num_workers=0",
       "data.train_samples=2", "data.eval_samples=1", "data.batch_size=1", "train.threads=1",
       "model.backbone=none", "model.linear_width=64", "train.device=cpu"]
# Enough epochs that the run outlasts its kills (an attempt advances by about one epoch on average).
EPOCHS_FAST = 4
EPOCHS_SLOW = 40
KILLS_FAST = 2
KILLS_SLOW = 20
# Seconds each checkpoint write pauses halfway, so a kill can land inside it.
WRITE_PAUSE_SECONDS = 0.3
POLL_SECONDS = 0.005
ATTEMPT_TIMEOUT_SECONDS = 300
# A random kill after k completed writes strikes within this delay; with k = 0, within the start-up.
RANDOM_DELAY_SECONDS = 0.5
STARTUP_WINDOW_SECONDS = 8.0

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


def _start(run_dir: Path, epochs: int, resume: bool) -> subprocess.Popen:
    argv = ["train", *RUN, f"train.epochs={epochs}", f"train.run_dir={run_dir}", "--quiet",
            *(["--resume"] if resume else [])]
    return subprocess.Popen([sys.executable, "-c", TRAINER, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})


def _staging_files(run_dir: Path) -> set[str]:
    if not run_dir.is_dir():
        return set()
    return {path.name for path in run_dir.iterdir() if path.name.endswith(".tmp") and ".pt." in path.name}


class _Watch:
    """Follows one attempt's checkpoint writes by their staging files (each pauses, so none is missed)."""

    def __init__(self, process: subprocess.Popen, run_dir: Path):
        self.process, self.run_dir = process, run_dir
        # Staging files of the attempt killed before (the resume removes them) are not this attempt's writes.
        self.leftovers = _staging_files(run_dir)
        self.seen: set[str] = set()
        self.deadline = time.monotonic() + ATTEMPT_TIMEOUT_SECONDS

    def until(self, condition) -> bool:
        """Poll until ``condition()``; False when the process ended first."""
        while not condition():
            if self.process.poll() is not None:
                return False
            assert time.monotonic() < self.deadline, "the training made no progress"
            time.sleep(POLL_SECONDS)
        return True

    def started_writes(self) -> int:
        self.seen |= _staging_files(self.run_dir) - self.leftovers
        return len(self.seen)

    def completed_writes(self) -> int:
        return len(self.seen - _staging_files(self.run_dir)) if self.started_writes() else 0


def _kill(process: subprocess.Popen) -> None:
    process.kill()
    process.wait()


def _one_attempt(run_dir: Path, epochs: int, resume: bool, aim_at_write: bool, rng: random.Random) -> bool:
    """Start the training and kill it as planned; False when it finished before the kill."""
    process = _start(run_dir, epochs, resume)
    watch = _Watch(process, run_dir)
    if aim_at_write:
        target = rng.randint(1, 3)
        landed = watch.until(lambda: watch.started_writes() >= target)
    else:
        target = rng.randint(0, 2)
        delay = rng.uniform(0, STARTUP_WINDOW_SECONDS if target == 0 else RANDOM_DELAY_SECONDS)
        landed = watch.until(lambda: watch.completed_writes() >= target)
        strike = time.monotonic() + delay
        landed = landed and watch.until(lambda: time.monotonic() >= strike)
    if not landed:
        assert process.wait() == 0, process.stderr.read()
        return False
    _kill(process)
    return True


def _run_with_kills(run_dir: Path, epochs: int, kills: int, rng: random.Random) -> int:
    """Train into ``run_dir`` to the end, killed up to ``kills`` times and resumed; the kills made."""
    done = 0
    while done < kills:
        if not _one_attempt(run_dir, epochs, resume=done > 0, aim_at_write=done % 2 == 0, rng=rng):
            return done
        done += 1
    final = _start(run_dir, epochs, resume=True)
    assert final.wait(ATTEMPT_TIMEOUT_SECONDS) == 0, final.stderr.read()
    return done


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / loop.LAST_CHECKPOINT, weights_only=True)["model"]


def _history(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / loop.METRICS_HISTORY).read_text().splitlines()]


def _check_kills(tmp_path: Path, epochs: int, kills: int, seed: int) -> None:
    # The uninterrupted run in this process (the same command line, one thread: the same numbers).
    straight = tmp_path / "straight"
    assert main(["train", *RUN, f"train.epochs={epochs}", f"train.run_dir={straight}", "--quiet"]) == 0
    victim = tmp_path / "victim"
    assert _run_with_kills(victim, epochs, kills, random.Random(seed)) == kills, "the run ended before every kill"
    assert _history(victim) == _history(straight)
    expected, actual = _weights(straight), _weights(victim)
    assert expected.keys() == actual.keys()
    assert all(torch.equal(expected[name], actual[name]) for name in expected)
    assert not [path.name for path in victim.iterdir() if path.name.endswith(".tmp")]


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX)")
def test_two_kills_one_inside_a_checkpoint_write_then_resumes_equal_an_uninterrupted_run(tmp_path):
    _check_kills(tmp_path, EPOCHS_FAST, KILLS_FAST, seed=0)


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX)")
def test_twenty_kills_half_inside_checkpoint_writes_then_resumes_equal_an_uninterrupted_run(tmp_path):
    _check_kills(tmp_path, EPOCHS_SLOW, KILLS_SLOW, seed=1)
