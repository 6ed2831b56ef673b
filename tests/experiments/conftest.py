"""A fake shared directory and a fake training loop, so the experiment machinery is tested without
training: runs 'finish' by writing a metrics.json."""

import json
from pathlib import Path

import pytest

from image2point.errors import ConfigError
from image2point.experiments import ExperimentContext
from image2point.experiments.sources import SHARED_ENV

SHARED_LAYOUT = ("data/modelnet40_normal_resampled", "data/semantickitti", "data/tiny-imagenet-200", "data/mnist",
                 "weights")
CIFAR_WEIGHTS = ("resnet20-12fca82f.th", "resnet32-d509ac18.th", "resnet56-4bfd9763.th")


@pytest.fixture
def fake_shared(tmp_path, monkeypatch) -> Path:
    """A shared directory with the sample layout (empty datasets, empty weight files), set in the environment."""
    root = tmp_path / "shared"
    for relative in SHARED_LAYOUT:
        (root / relative).mkdir(parents=True)
    for name in CIFAR_WEIGHTS:
        (root / "weights" / name).write_bytes(b"")
    monkeypatch.setenv(SHARED_ENV, str(root))
    return root


@pytest.fixture
def small_context(fake_shared, tmp_path) -> ExperimentContext:
    return ExperimentContext("small", tmp_path / "out", {}, {}, fake_shared)


def _write_metrics(run_dir: Path, accuracy: float = 0.5, miou: float = 0.25) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.json").write_text(json.dumps({"final": {"overall_accuracy": accuracy, "miou": miou}}))


@pytest.fixture
def write_metrics():
    """``write_metrics(run_dir, accuracy, miou)``: a finished run's metrics.json (fractions, as the loop writes)."""
    return _write_metrics


@pytest.fixture
def fake_training(monkeypatch) -> list[tuple[Path, bool]]:
    """Replaces run_training; records (run_dir, resume) of every call and writes the run's metrics.json."""
    calls: list[tuple[Path, bool]] = []

    def run_training(config, resume=False, quiet=None):
        run_dir = Path(config.train.run_dir)
        if not resume and run_dir.exists() and any(run_dir.iterdir()):
            raise ConfigError(f"run directory {run_dir} is not empty")  # as the loop's run lock refuses it
        calls.append((run_dir, resume))
        _write_metrics(run_dir, 0.4 + 0.1 * config.train.seed, 0.2)

    monkeypatch.setattr("image2point.train.loop.run_training", run_training)
    return calls
