"""`make demo` end to end, with one finetuning epoch per run."""

import re

import pytest

from image2point import demo


@pytest.mark.slow
def test_demo_pretrains_and_reports_five_accuracies(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(demo, "DEMO_ROOT", tmp_path)
    demo.main(["--epochs", "1"])
    out = capsys.readouterr().out
    assert re.search(r"FractalDB validation top-1: 0\.\d{3}", out)
    accuracies = [float(value) for value in re.findall(r"^\s+(\d\.\d{3})  ", out, flags=re.MULTILINE)]
    assert len(accuracies) == 5 and all(0.0 <= value <= 1.0 for value in accuracies)
    (run_root,) = tmp_path.iterdir()
    assert (run_root / "fractaldb_resnet20.pt").is_file()
    assert sorted(path.name for path in run_root.glob("run*")) == [
        "run1_io", "run2_io", "run3_io", "run4_io", "run5_scratch"]
