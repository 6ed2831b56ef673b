"""Items 15 and 18-21 of the reliability audit: what runs do rather than what refused commands leave.

A resume with changes must say what it ran; a second training into a live run's directory is refused,
a killed run's lock is taken over with a line saying so; a kill during the first write of last.pt
costs nothing on resume (metrics.jsonl holds each epoch once, as an uninterrupted run's does); staging
files of killed writes are removed; a normal run prints no dependency's warning.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from cli_runs import TINY_SCENE_RUN, copy_run, listing, run_cli, the_error_line

from image2point.cli_contract import EXIT_BAD_INPUT

POSIX = hasattr(os, "fork")
SUBPROCESS_TIMEOUT_SECONDS = 300
# Trains, and is killed by SIGKILL in the middle of writing its first last.pt: the staging file holds half
# the checkpoint when the process dies.
KILLED_IN_FIRST_LAST_PT = textwrap.dedent("""
    import contextlib, os, signal, sys
    import image2point.checkpoint.files as files
    real_atomic_write = files.atomic_write

    class HalfThenDie:
        def __init__(self, handle):
            self.handle = handle
        def write(self, data):
            data = bytes(data)
            self.handle.write(data[: len(data) // 2])
            self.handle.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        def __getattr__(self, name):
            return getattr(self.handle, name)

    @contextlib.contextmanager
    def atomic_write(path, mode="wb"):
        with real_atomic_write(path, mode) as handle:
            yield HalfThenDie(handle) if os.path.basename(str(path)) == "last.pt" else handle

    files.atomic_write = atomic_write
    from image2point.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def _train_argv(run_dir: Path, *words: str) -> list[str]:
    return ["train", *TINY_SCENE_RUN, f"train.run_dir={run_dir}", *words, "--quiet"]


def _epochs(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_21_a_normal_run_prints_no_dependency_warning(tmp_path, capsys):
    # fp16 autocast on the CPU makes GradScaler skip early steps, for which torch warns that the scheduler
    # stepped before the optimizer: a warning about torch's internals, not the user's to act on.
    outcome = run_cli(_train_argv(tmp_path / "run", "train.amp=fp16", "train.epochs=1"), capsys)
    assert outcome.status == 0
    assert outcome.stderr_lines == []


def test_21_an_own_warning_is_one_line(tmp_path, capsys):
    outcome = run_cli(_train_argv(tmp_path / "run", "train.epochs=1", "data.effective_batch_size=4"), capsys)
    assert outcome.status == 0
    assert outcome.stderr_lines == ["image2point train: warning: this run steps on 1 process(es) x data.batch_size 2 "
                                    "= 2 samples, but the recipe's data.effective_batch_size is 4; its learning rate "
                                    "and schedule were tuned for that batch (change the process count or "
                                    "data.batch_size to match)"]


@pytest.mark.skipif(not POSIX, reason="flock and a second process (POSIX)")
def test_18_a_second_training_into_a_live_runs_directory_is_refused(trained_run, tmp_path, capsys, hold_run_lock):
    run_dir = copy_run(trained_run, tmp_path / "run")
    with hold_run_lock(run_dir) as holder:
        before = listing(tmp_path)
        outcome = run_cli(_train_argv(run_dir, "--resume"), capsys)
        assert outcome.status == EXIT_BAD_INPUT
        message = the_error_line(outcome, "train")
        assert f"{run_dir}: in use by process {holder.pid}" in message
        assert listing(tmp_path) == before


def test_18_the_lock_of_a_killed_run_is_taken_over_with_a_line(trained_run, tmp_path, capsys, dead_pid):
    run_dir = copy_run(trained_run, tmp_path / "run")
    (run_dir / ".lock").write_text(f"{dead_pid}\n")
    outcome = run_cli(_train_argv(run_dir, "--resume"), capsys)
    assert outcome.status == 0
    assert outcome.stderr_lines == [f"image2point train: warning: {run_dir}: taking over the lock of process "
                                    f"{dead_pid}, which is no longer running (a killed run)"]
    assert not (run_dir / ".lock").exists()


def test_20_orphaned_staging_files_are_removed_on_resume(trained_run, tmp_path, capsys, dead_pid):
    run_dir = copy_run(trained_run, tmp_path / "run")
    orphans = [run_dir / f".last.pt.{dead_pid}.0a1b2c3d.tmp", run_dir / f".metrics.json.{dead_pid}.99aa88bb.tmp"]
    for orphan in orphans:
        orphan.write_bytes(b"half written")
    assert run_cli(_train_argv(run_dir, "--resume"), capsys).status == 0
    assert not [path.name for path in run_dir.iterdir() if path.name.endswith(".tmp")]


@pytest.mark.skipif(not POSIX, reason="SIGKILL (POSIX)")
def test_19_a_kill_during_the_first_write_of_last_pt_costs_nothing(trained_run, tmp_path, capsys):
    run_dir = tmp_path / "run"
    victim = subprocess.run([sys.executable, "-c", KILLED_IN_FIRST_LAST_PT, *_train_argv(run_dir)],
                            capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_SECONDS,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert victim.returncode == -9, victim.stderr
    assert not (run_dir / "last.pt").exists() and [record["epoch"] for record in _epochs(run_dir)] == [0]

    outcome = run_cli(_train_argv(run_dir, "--resume"), capsys)
    assert outcome.status == 0, outcome
    assert _epochs(run_dir) == _epochs(trained_run)
    assert not [path.name for path in run_dir.iterdir() if path.name.endswith(".tmp")]


def test_15_resume_with_changes_records_what_the_run_ran(trained_run, tmp_path, capsys):
    run_dir = copy_run(trained_run, tmp_path / "run")
    original = (run_dir / "config.yaml").read_text()
    outcome = run_cli(_train_argv(run_dir, "optim.lr=0.05", "train.epochs=3", "--resume-with-changes"), capsys)
    assert outcome.status == 0, outcome
    assert (run_dir / "config.yaml").read_text() == original, "config.yaml still says how the run started"
    recorded = yaml.safe_load((run_dir / "config.resumed-at-epoch-2.yaml").read_text())
    assert recorded["optim"]["lr"] == 0.05 and recorded["train"]["epochs"] == 3
    assert [record["epoch"] for record in _epochs(run_dir)] == [0, 1, 2]
