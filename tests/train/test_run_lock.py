"""The run-directory lock: a live owner keeps others out, a killed one's lock is taken over with a warning,
and the staging files of killed writes are removed while those of live writers are kept."""

import os

import pytest

from image2point.errors import Image2PointWarning
from image2point.train.run_lock import LOCK_NAME, RunDirectoryInUse, remove_orphaned_staging, run_directory_lock

pytest.importorskip("fcntl")


def test_a_second_owner_is_refused_while_the_first_is_alive(tmp_path, hold_run_lock):
    with hold_run_lock(tmp_path) as holder:
        with pytest.raises(RunDirectoryInUse, match=f"in use by process {holder.pid}, which holds .*{LOCK_NAME}"):
            with run_directory_lock(tmp_path):
                pass
    with pytest.warns(Image2PointWarning, match=f"process {holder.pid}"), run_directory_lock(tmp_path) as lock:
        assert lock.stale_owner == holder.pid  # the holder ended without removing its lock file


def test_the_lock_of_a_killed_run_is_taken_over_with_a_warning(tmp_path, dead_pid):
    (tmp_path / LOCK_NAME).write_text(f"{dead_pid}\n")
    taking_over = f"taking over the lock of process {dead_pid}, which is no longer running"
    with pytest.warns(Image2PointWarning, match=taking_over):
        with run_directory_lock(tmp_path) as lock:
            assert lock.stale_owner == dead_pid
            assert (tmp_path / LOCK_NAME).read_text() == f"{os.getpid()}\n"
    assert not (tmp_path / LOCK_NAME).exists(), "a finished owner leaves no lock behind"


def test_a_clean_lock_says_nothing_and_is_removed(tmp_path, recwarn):
    with run_directory_lock(tmp_path) as lock:
        assert lock.stale_owner is None
    assert not list(tmp_path.iterdir())
    assert not [warning for warning in recwarn if issubclass(warning.category, Image2PointWarning)]


def test_staging_files_of_dead_writers_are_removed_and_others_kept(tmp_path, dead_pid):
    alive = os.getppid()
    orphans = [tmp_path / f".last.pt.{dead_pid}.0a1b2c3d.tmp", tmp_path / f".metrics.json.{dead_pid}.ff00ff00.tmp"]
    kept = [tmp_path / f".best.pt.{alive}.12345678.tmp", tmp_path / "notes.tmp", tmp_path / "last.pt"]
    for path in orphans + kept:
        path.write_bytes(b"partial")
    assert sorted(remove_orphaned_staging(tmp_path)) == sorted(orphans)
    assert sorted(tmp_path.iterdir()) == sorted(kept)


def test_taking_the_lock_removes_orphaned_staging(tmp_path, dead_pid):
    orphan = tmp_path / f".last.pt.{dead_pid}.0a1b2c3d.tmp"
    orphan.write_bytes(b"half a checkpoint")
    with run_directory_lock(tmp_path) as lock:
        assert lock.removed_staging == (orphan,)
    assert not orphan.exists()
