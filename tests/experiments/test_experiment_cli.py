"""End to end through the CLI: the fastest table (table5, one SemanticKITTI run per seed) at small scale on
the real samples, then again, which skips the finished run."""

import dataclasses
import json
from pathlib import Path

import pytest

from image2point.cli import main
from image2point.experiments.specs import TABLES

SHARED = Path(__file__).resolve().parents[2].parent / "shared"


@pytest.mark.skipif(not (SHARED / "data" / "semantickitti").is_dir() or not (SHARED / "weights").is_dir(),
                    reason="../shared (SemanticKITTI sample, CIFAR-10 ResNets) not present")
def test_table5_small_one_seed(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("IMAGE2POINT_SHARED", raising=False)
    # The CIFAR ResNet-20 rows only: the ESPNet-C rows train for minutes (tests/experiments/test_real_sources.py
    # trains each real source once, briefly); their cells stay empty.
    table = TABLES["table5"]
    monkeypatch.setitem(TABLES, "table5", dataclasses.replace(table, expand=lambda scale, seeds: [
        run for run in table.expand(scale, seeds) if "ESPNet-C" not in run.row]))
    out_dir = tmp_path / "experiments"
    argv = ["experiment", "table5", "--scale", "small", "--seeds", "1", "--out-dir", str(out_dir)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "table5 semantickitti-cifar10-io_bn-s0: started, mIoU" in printed
    assert "semantickitti-imagenet-io_bn-s0: missing (no imagenet weights given (--weights imagenet=PATH))" in printed
    results = json.loads((out_dir / "table5" / "results.json").read_text())
    cells = {(cell["row"], cell["column"]): cell for cell in results["cells"]}
    ran = cells[("classification: CIFAR-10", "SemanticKITTI")]
    assert ran["status"] == "ok" and ran["n"] == 1 and ran["std"] is None and 0 <= ran["mean"] <= 100
    assert cells[("segmentation: Cityscapes", "SemanticKITTI")]["status"] == "missing"
    assert cells[("classification: CIFAR-10", "S3DIS")]["status"] == "no data"
    assert sorted(path.name for path in (out_dir / "table5").iterdir()) == [
        "results.csv", "results.json", "semantickitti-cifar10-io_bn-s0", "table.md"]
    assert "| classification: CIFAR-10 | no data [1] | — (a) |" in (out_dir / "table5" / "table.md").read_text()
    assert main(argv) == 0
    assert "semantickitti-cifar10-io_bn-s0: skipped (finished)" in capsys.readouterr().out
