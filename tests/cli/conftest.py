"""The tiny trained run the command-line tests start from (helpers: cli_runs.py)."""

from pathlib import Path

import pytest
from cli_runs import train_tiny_run


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """A finished run directory; read-only (tests that change a run work on a copy, cli_runs.copy_run)."""
    return train_tiny_run(tmp_path_factory.mktemp("trained") / "run")
