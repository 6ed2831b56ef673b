"""benchmarks/bench_predict.py --quick: runs end to end and reports every chunk setting against the whole scene."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "benchmarks" / "bench_predict.py"
QUICK_TIMEOUT_S = 120
QUICK_POINTS = 250_000
QUICK_SETTINGS = ["50,000", "whole scene"]
HEADER = ["chunk_points", "tiles", "seconds", "points/s", "peak MiB", "predict MiB", "speed vs whole",
          "peak vs whole", "labels as whole"]
# Tiles overlap by more than the network's receptive field, so their labels are the whole scene's
# (up to a near tie of two classes on a rare point).
MIN_AGREEMENT = 0.999


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    json_path = tmp_path_factory.mktemp("bench_predict") / "results.json"
    completed = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--json", str(json_path)], check=False,
                               cwd=REPO_ROOT, capture_output=True, text=True, timeout=QUICK_TIMEOUT_S)
    assert completed.returncode == 0, completed.stderr[-2000:]
    return completed.stdout, json.loads(json_path.read_text())


def test_quick_run_prints_one_row_per_setting_with_ratios_to_the_whole_scene(quick_run):
    stdout, _ = quick_run
    title, header, separator, *rows = stdout.strip().splitlines()
    assert f"{QUICK_POINTS:,} points" in title and "a fresh process per row" in title
    assert re.split(r"\s{2,}", header.strip()) == HEADER
    assert set(separator.replace(" ", "")) == {"-"}
    assert [re.split(r"\s{2,}", row.strip())[0] for row in rows] == QUICK_SETTINGS
    whole = re.split(r"\s{2,}", rows[-1].strip())
    assert whole[1] == "1" and whole[-3:] == ["1.00x", "1.00x", "100.00%"]


def test_quick_run_writes_json_with_time_memory_and_agreement(quick_run):
    _, payload = quick_run
    assert payload["benchmark"] == "bench_predict" and payload["settings"]["points"] == QUICK_POINTS
    results = payload["results"]
    assert [result["setting"] for result in results] == QUICK_SETTINGS
    chunked, whole = results
    assert chunked["tiles"] > 1 and whole["tiles"] == 1
    for result in results:
        assert result["points"] == QUICK_POINTS and 0 < result["voxels"] <= QUICK_POINTS
        assert result["seconds"] > 0 and result["peak_bytes"] >= result["before_bytes"] > 0
        assert result["agreement"] >= MIN_AGREEMENT
    assert chunked["peak_bytes"] < whole["peak_bytes"], "a smaller chunk budget must lower the peak memory"
