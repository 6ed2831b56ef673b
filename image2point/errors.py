"""Errors raised on bad user input; the CLI prints them as one line and exits non-zero."""

from __future__ import annotations

from pathlib import Path


class Image2PointError(Exception):
    """Base class for errors caused by user input (files, configs, checkpoints), not by bugs."""


class DataError(Image2PointError, ValueError):
    """A data file or array is malformed. The message names the file (when there is one) and the problem."""

    def __init__(self, problem: str, path: str | Path | None = None):
        self.path = None if path is None else Path(path)
        self.problem = problem
        super().__init__(problem if path is None else f"{path}: {problem}")


class ConfigError(Image2PointError, ValueError):
    """A configuration file or override is invalid."""


class CheckpointError(Image2PointError, ValueError):
    """A checkpoint cannot be read or does not fit the model."""


class RuntimeFault(Exception):
    """The machine, not the input, failed: disk full, an unwritable directory, out of memory.

    The CLI prints it as one line and exits 1 (bad input exits 2). The message names the file and the problem.
    """


class Image2PointWarning(RuntimeWarning):
    """A warning of image2point's own, which the CLI shows as one line; dependencies' warnings it hides."""
