"""What the command-line tests share: a tiny trained run, scene files, and the contract's checks.

Everything goes through ``image2point.cli.main`` as a user's command line would: the run is trained by
``image2point train``, and each test inspects only the exit status, stderr and the files on disk.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from image2point.cli import main
from image2point.io import write_ply

SCENE_POINTS = 3000
# A procedural-scene segmenter small enough to train in seconds: no backbone, a one-level U-Net.
TINY_SCENE_RUN = ("data.name=procedural_scenes", "data.voxel_size=0.25", "model.head=unet", "data.num_workers=0",
                  "data.train_samples=2", "data.eval_samples=1", "data.batch_size=2", "train.epochs=2",
                  "train.threads=1", "model.backbone=none", "model.linear_width=64")
SCENE_EXTENT_METRES = 4.0
ERROR_LINE = re.compile(r"^image2point (?P<command>[\w-]+): error: (?P<message>.*)$")
# What a Python traceback or a bare exception class looks like on stderr.
TRACEBACK_MARKERS = ("Traceback", "Error:", "Exception:")


@dataclass(frozen=True)
class Outcome:
    """What a command left for its user: the exit status and its stderr lines."""

    status: int
    stderr_lines: list[str]


def run_cli(argv: list[str], capsys) -> Outcome:
    capsys.readouterr()
    try:
        status = main([str(word) for word in argv])
    except SystemExit as exit_info:  # usage errors leave through argparse
        status = exit_info.code
    err = capsys.readouterr().err
    return Outcome(status, err.strip().splitlines())


def the_error_line(outcome: Outcome, command: str) -> str:
    """The one stderr line of a failed command (asserted to be the only one, and no traceback)."""
    assert len(outcome.stderr_lines) == 1, "\n".join(outcome.stderr_lines)
    line = outcome.stderr_lines[0]
    match = ERROR_LINE.match(line)
    assert match is not None and match["command"] == command, line
    assert not any(marker in match["message"] for marker in TRACEBACK_MARKERS), line
    return match["message"]


def listing(root: Path) -> dict[str, str]:
    """Every path under ``root`` with a hash of each file's bytes: equal listings mean nothing changed."""
    return {str(path.relative_to(root)): "directory" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(root.rglob("*"))}


def scene_points(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """xyz in a 4 m box and 8-bit colours, like the procedural scenes the run was trained on."""
    rng = np.random.default_rng(seed)
    return rng.uniform(0, SCENE_EXTENT_METRES, (SCENE_POINTS, 3)), rng.integers(0, 256, (SCENE_POINTS, 3), np.uint8)


def write_scene(path: Path, seed: int = 0, points: np.ndarray | None = None) -> Path:
    default_points, colours = scene_points(seed)
    write_ply(path, default_points if points is None else points, {"rgb": colours})
    return path


def train_tiny_run(run_dir: Path) -> Path:
    """A finished two-epoch run directory (config.yaml, last.pt, best.pt, metrics.jsonl, ...)."""
    assert main(["train", *TINY_SCENE_RUN, f"train.run_dir={run_dir}", "--quiet"]) == 0
    return run_dir


def copy_run(run_dir: Path, destination: Path) -> Path:
    shutil.copytree(run_dir, destination)
    return destination
