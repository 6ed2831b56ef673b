"""One training per run directory: a lock file held for the run's lifetime, and the cleanup it makes safe.

The lock is ``RUN_DIR/.lock``, locked with ``flock`` and holding the owner's process id. The kernel
releases a ``flock`` when its process dies, however it dies, so a lock never outlives its owner; a lock
file still naming a process when it is taken is the trace of a run that was killed, and the new owner
says so (one :class:`Image2PointWarning`). While the lock is held nothing else writes the directory, so
staging files left by killed writes (``.NAME.PID.HEX.tmp``, see ``checkpoint.atomic_write``) are
orphans and are removed. Where ``fcntl`` is missing (Windows) the lock is a no-op.
"""

from __future__ import annotations

import contextlib
import os
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from image2point.errors import ConfigError, Image2PointError, Image2PointWarning

LOCK_NAME = ".lock"
# How atomic_write and the prediction writers name their staging files: .NAME.PID.HEX.tmp
STAGING_FILE = re.compile(r"^\..+\.(?P<pid>\d+)\.[0-9a-f]+\.tmp$")


class RunDirectoryInUse(Image2PointError):
    """Another live process holds the run directory's lock."""


@contextlib.contextmanager
def claimed_run_directory(run_dir: str | Path, resume: bool) -> Iterator[HeldLock]:
    """``run_dir``, created if missing and locked for the ``with`` body (see :func:`run_directory_lock`).

    A directory with files in it is refused (ConfigError) unless ``resume`` continues it; a refusal, or a
    failure before anything was written, leaves no directory behind that was not there before.
    """
    run_dir = Path(run_dir)
    _refuse_used(run_dir, resume)
    missing = [folder for folder in (run_dir, *run_dir.parents) if not folder.exists()]
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        with run_directory_lock(run_dir) as lock:
            _refuse_used(run_dir, resume)  # again, now that no other run can be filling it
            yield lock
    except BaseException:
        for folder in missing:  # deepest first; a directory the run wrote into stays
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


def _refuse_used(run_dir: Path, resume: bool) -> None:
    if not resume and run_dir.exists() and any(path.name != LOCK_NAME for path in run_dir.iterdir()):
        raise ConfigError(f"run directory {run_dir} is not empty; pass --resume to continue it or choose another "
                          "train.run_dir")


@dataclass(frozen=True)
class HeldLock:
    """A held lock: its file, and the process id of a killed earlier owner it replaced (None if none)."""

    path: Path
    stale_owner: int | None
    removed_staging: tuple[Path, ...]


@contextlib.contextmanager
def run_directory_lock(run_dir: str | Path) -> Iterator[HeldLock]:
    """Hold ``run_dir``'s lock for the ``with`` body; RunDirectoryInUse when another process holds it.

    ``run_dir`` must exist. On exit the lock file is removed, so a finished run leaves none behind.
    """
    run_dir = Path(run_dir)
    try:
        import fcntl
    except ImportError:  # no flock: one run per directory is then the user's to keep
        yield HeldLock(run_dir / LOCK_NAME, None, ())
        return
    handle, stale_owner = _acquire(run_dir / LOCK_NAME, fcntl)
    try:
        if stale_owner is not None:
            warnings.warn(f"{run_dir}: taking over the lock of process {stale_owner}, which is no longer running "
                          "(a killed run)", Image2PointWarning, stacklevel=3)
        yield HeldLock(run_dir / LOCK_NAME, stale_owner, remove_orphaned_staging(run_dir))
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(run_dir / LOCK_NAME)
        handle.close()  # closing releases the flock


def _acquire(path: Path, fcntl) -> tuple[object, int | None]:
    """The open, flocked lock file (the one at ``path`` now, not an unlinked one) and its killed owner."""
    while True:
        handle = open(path, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _recorded_owner(handle)
            handle.close()
            who = f"process {owner}" if owner is not None else "another process"
            raise RunDirectoryInUse(f"{path.parent}: in use by {who}, which holds {path}; wait for it to finish "
                                    "or choose another train.run_dir") from None
        # The previous owner may have unlinked the file between our open and our flock: lock the new one.
        try:
            same_file = os.fstat(handle.fileno()).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same_file = False
        if not same_file:
            handle.close()
            continue
        stale_owner = _recorded_owner(handle)
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        return handle, stale_owner


def _recorded_owner(handle) -> int | None:
    handle.seek(0)
    text = handle.read().strip()
    return int(text) if text.isdigit() else None


def remove_orphaned_staging(directory: str | Path) -> tuple[Path, ...]:
    """Remove the staging files of writes that were killed before their rename; returns what was removed.

    Only files named as the writers name them, and only those of processes no longer running (or of
    this one's id reused after a kill), are touched.
    """
    removed = []
    for path in Path(directory).iterdir():
        match = STAGING_FILE.match(path.name)
        if match is None or not path.is_file():
            continue
        pid = int(match["pid"])
        if pid != os.getpid() and _is_running(pid):
            continue
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path)
    return tuple(removed)


def _is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, but another user's
        return True
    except OverflowError:
        return False
    return True
