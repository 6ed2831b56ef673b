"""The run-directory lock: a live owner keeps others out, a killed one's lock is taken over with a warning,
and the staging files of killed writes are removed while those of live writers are kept."""

import os
import subprocess
import sys
import textwrap

import pytest

from image2point.errors import Image2PointWarning
from image2point.train.run_lock import LOCK_NAME, RunDirectoryInUse, remove_orphaned_staging, run_directory_lock

pytest.importorskip("fcntl")

# Holds the lock as run_directory_lock does (flock on RUN_DIR/.lock holding the pid), without importing
# image2point, so the holder is ready in milliseconds.
HOLDER = textwrap.dedent("""
    import fcntl, os, sys
    handle = open(os.path.join(sys.argv[1], ".lock"), "a+")
    fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
    handle.write(f"{os.getpid()}\\n")
    handle.flush()
    print("held", flush=True)
    sys.stdin.read()
""")


def _dead_pid() -> int:
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                              check=True)
    return int(finished.stdout)


def test_a_second_owner_is_refused_while_the_first_is_alive(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunDirectoryInUse, match=f"in use by process {holder.pid}, which holds .*{LOCK_NAME}"):
            with run_directory_lock(tmp_path):
                pass
    finally:
        holder.stdin.close()
        holder.wait()
    with pytest.warns(Image2PointWarning, match=f"process {holder.pid}"), run_directory_lock(tmp_path) as lock:
        assert lock.stale_owner == holder.pid  # the holder ended without removing its lock file


def test_the_lock_of_a_killed_run_is_taken_over_with_a_warning(tmp_path):
    dead = _dead_pid()
    (tmp_path / LOCK_NAME).write_text(f"{dead}\n")
    with pytest.warns(Image2PointWarning, match=f"taking over the lock of process {dead}, which is no longer running"):
        with run_directory_lock(tmp_path) as lock:
            assert lock.stale_owner == dead
            assert (tmp_path / LOCK_NAME).read_text() == f"{os.getpid()}\n"
    assert not (tmp_path / LOCK_NAME).exists(), "a finished owner leaves no lock behind"


def test_a_clean_lock_says_nothing_and_is_removed(tmp_path, recwarn):
    with run_directory_lock(tmp_path) as lock:
        assert lock.stale_owner is None
    assert not list(tmp_path.iterdir())
    assert not [warning for warning in recwarn if issubclass(warning.category, Image2PointWarning)]


def test_staging_files_of_dead_writers_are_removed_and_others_kept(tmp_path):
    dead, alive = _dead_pid(), os.getppid()
    orphans = [tmp_path / f".last.pt.{dead}.0a1b2c3d.tmp", tmp_path / f".metrics.json.{dead}.ff00ff00.tmp"]
    kept = [tmp_path / f".best.pt.{alive}.12345678.tmp", tmp_path / "notes.tmp", tmp_path / "last.pt"]
    for path in orphans + kept:
        path.write_bytes(b"partial")
    assert sorted(remove_orphaned_staging(tmp_path)) == sorted(orphans)
    assert sorted(tmp_path.iterdir()) == sorted(kept)


def test_taking_the_lock_removes_orphaned_staging(tmp_path):
    orphan = tmp_path / f".last.pt.{_dead_pid()}.0a1b2c3d.tmp"
    orphan.write_bytes(b"half a checkpoint")
    with run_directory_lock(tmp_path) as lock:
        assert lock.removed_staging == (orphan,)
    assert not orphan.exists()
