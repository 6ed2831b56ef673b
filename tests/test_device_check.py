"""benchmarks/device_check.sh and its Python side: the data subset, hidden packages, the report, the CPU mode."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import common, device_check, sparse_on_device
from benchmarks import bench_sparse as bench

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "benchmarks" / "device_check.sh"
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
CPU_MODE_TIMEOUT_S = 1500
# The CPU mode in the slow test leaves out the test selection: the same run of the suite runs those tests.
CPU_MODE_STEPS = ["env", "install", "bench_sparse", "train", "scan"]


def write_shape(root: Path, shape: str) -> None:
    class_name = shape.rsplit("_", 1)[0]
    (root / class_name).mkdir(parents=True, exist_ok=True)
    (root / class_name / f"{shape}.txt").write_text("0,0,0,0,0,1\n")


def fake_shared_data(root: Path, train: list[str], test: list[str]) -> Path:
    modelnet = root / device_check.MODELNET
    modelnet.mkdir(parents=True)
    classes = sorted({shape.rsplit("_", 1)[0] for shape in train + test})
    (modelnet / device_check.MODELNET_NAMES).write_text("\n".join(classes) + "\n")
    for split, shapes in (("train", train), ("test", test)):
        (modelnet / device_check.MODELNET_LISTS[split]).write_text("\n".join(shapes) + "\n")
        for shape in shapes:
            write_shape(modelnet, shape)
    for relative in (device_check.KITTI_YAML, *device_check.KITTI_FILES):
        path = root / device_check.KITTI / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\0" * 8)
    return root


def test_evenly_spaced_keeps_both_ends():
    items = [str(i) for i in range(10)]
    assert device_check.evenly_spaced(items, 4) == ["0", "3", "6", "9"]
    assert device_check.evenly_spaced(items, 1) == ["0"]
    assert device_check.evenly_spaced(items[:3], 8) == items[:3]


def test_make_data_copies_the_shapes_its_split_lists_name(tmp_path, monkeypatch):
    monkeypatch.setitem(device_check.SHAPES_PER_SPLIT, "train", 3)
    monkeypatch.setitem(device_check.SHAPES_PER_SPLIT, "test", 1)
    train = ["chair_0001", "chair_0002", "desk_0001", "desk_0002", "lamp_0001"]
    source = fake_shared_data(tmp_path / "shared", train, ["lamp_0009", "desk_0009"])
    dest = tmp_path / "subset"
    assert device_check.make_data(source, dest) > 0
    modelnet = dest / device_check.MODELNET
    assert (modelnet / "modelnet40_train.txt").read_text().split() == ["chair_0001", "desk_0001", "lamp_0001"]
    assert (modelnet / "modelnet40_test.txt").read_text().split() == ["lamp_0009"]
    copied = sorted(path.stem for path in modelnet.glob("*/*.txt"))
    assert copied == ["chair_0001", "desk_0001", "lamp_0001", "lamp_0009"]
    assert (modelnet / device_check.MODELNET_NAMES).read_text().split() == ["chair", "desk", "lamp"]
    for relative in (device_check.KITTI_YAML, *device_check.KITTI_FILES):
        assert (dest / device_check.KITTI / relative).is_file()


def test_hidden_packages_import_as_absent(tmp_path):
    device_check.hide_modules(tmp_path, ["yaml"])
    probe = ("import importlib.util, json\n"
             "try:\n    import yaml.constructor\nexcept ModuleNotFoundError as error:\n    print(error.name)\n"
             "print(importlib.util.find_spec('json') is not None)")
    completed = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                               env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert completed.stdout.split() == ["yaml", "True"]  # the parent package fails first


JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest">
<testcase classname="tests.sparse.test_a" name="test_ok[cuda]"/>
<testcase classname="tests.sparse.test_a" name="test_spconv[cuda]"><skipped message="spconv is not installed"/></testcase>
<testcase classname="tests.io.test_b" name="test_ply"><skipped message="spconv is not installed"/></testcase>
<testcase classname="tests.train.test_c" name="test_bad[cuda]"><failure message="assert 1 == 2">tb</failure></testcase>
</testsuite></testsuites>"""


def device_results() -> dict:
    """bench_sparse --device JSON built from the real result types, so the report follows their fields."""
    results = [
        bench.WorkloadInfo("A", "ModelNet40, 2 shapes, xyz", 20000, 3000, 2),
        sparse_on_device.DeviceDenseResult("cuda", "bf16", 262144, 64, 1.5e5),
        sparse_on_device.DeviceRunResult("cuda", "A", "floor", "bf16", "forward", 0.01, [0.01], 8.0, 800.0,
                                         1.6e5, 3 * 2**20),
        sparse_on_device.DeviceKernelMapResult("cuda", "A", "floor", 0.002),
        sparse_on_device.PrecisionErrorResult("cuda", "A", "floor", "bf16", 0.006),
    ]
    return {"benchmark": "bench_sparse", "settings": {"device": "cuda", "plan": "default", "gpu": "NVIDIA H200",
                                                      "backend": "torch"},
            "results": common.results_to_json(results)}


def write_work_folder(work: Path) -> None:
    from image2point.environment import collect_environment

    rows = [("env", "passed", 0, 3.2, 20), ("tests", "failed", 1, 40.0, 150), ("train", "timeout", 124, 60.1, 60)]
    lines = []
    for name, status, code, seconds, budget in rows:
        log = work / f"{name}.log"
        log.write_text("".join(f"{name} line {i}\n" for i in range(100)))
        lines.append(f"{name}\t{status}\t{code}\t{seconds}\t{budget}\t{log}\n")
    (work / device_check.STEPS_FILE).write_text("".join(lines))
    (work / "env.json").write_text(json.dumps(collect_environment().to_json()))
    (work / device_check.PYTEST_XML).write_text(JUNIT)
    (work / "bench_sparse.json").write_text(json.dumps(device_results()))
    (work / "scan.json").write_text(json.dumps({
        "recipe": "configs/semantickitti/resnet18_all.yaml", "scan": "00/000000", "points": 124668, "voxels": 91767,
        "voxel_size": 0.05, "backbone": "resnet18", "backend": "torch", "repetitions": 3,
        "rows": [{"what": "inference fp32", "seconds": 0.25, "peak_allocated_mib": 900.0}]}))


def test_report_has_every_step_the_results_and_the_tail_of_failed_logs(tmp_path):
    work, out = tmp_path / "work", tmp_path / "out"
    work.mkdir()
    write_work_folder(work)
    report = device_check.write_report(work, out, {"device": "cuda", "wall_s": "104"})
    assert sorted(path.name for path in out.iterdir()) == [device_check.REPORT_JSON, device_check.REPORT_MD]
    assert json.loads((out / device_check.REPORT_JSON).read_text()) == json.loads(json.dumps(report))
    assert [(s["name"], s["status"]) for s in report["steps"]] == [("env", "passed"), ("tests", "failed"),
                                                                   ("train", "timeout")]
    assert not report["all_passed"] and report["total_s"] == pytest.approx(103.3)
    assert "log_tail" not in report["steps"][0]
    assert report["steps"][2]["log_tail"].splitlines() == [f"train line {i}" for i in range(60, 100)]
    assert report["tests"]["counts"] == {"passed": 1, "skipped": 2, "failed": 1}
    assert report["tests"]["skip_reasons"] == [{"reason": "spconv is not installed", "tests": 2}]
    assert report["tests"]["failed"] == ["tests.train.test_c::test_bad[cuda]: assert 1 == 2"]
    assert report["train"] is None

    text = (out / device_check.REPORT_MD).read_text()
    assert text.startswith("# Device check: cuda\n")
    assert "| tests | failed | 1 | 40.0 | 150 |" in text and "| train | timeout | 124 | 60.1 | 60 |" in text
    assert "1 passed, 1 failed, 0 errors, 2 skipped" in text and "| 2 | spconv is not installed |" in text
    assert "| A | forward | floor | bf16 | 0.01 | 8 | 800 | 0.5 | 3 |" in text
    assert "| inference fp32 | 0.25 | 900 |" in text
    assert "No result: the train step did not write one" in text
    assert "## Log tail of `train` (timeout)" in text and "train line 99" in text
    assert "default sparse backend" not in text and "sparse backend (cpu)" in text


def test_report_of_an_empty_work_folder_says_no_step_ran(tmp_path):
    report = device_check.write_report(tmp_path, tmp_path / "out", {"device": "cpu"})
    assert report["steps"] == [] and not report["all_passed"]
    text = (tmp_path / "out" / device_check.REPORT_MD).read_text()
    assert text.count("Not run: the") == 5


@pytest.mark.parametrize("arguments, message", [
    (["--bogus"], "unknown argument --bogus"),
    (["--cpu"], "give --out DIR"),
    (["--cpu", "--out", "OUT", "--data", "/nonexistent/data"], "data folder /nonexistent/data not found"),
])
def test_script_rejects_bad_arguments_before_running_anything(tmp_path, arguments, message):
    arguments = [str(tmp_path / "out") if value == "OUT" else value for value in arguments]
    env = {key: value for key, value in os.environ.items() if key not in ("OUT", "DATA", "DEVICE")}
    completed = subprocess.run(["bash", str(SCRIPT), *arguments], capture_output=True, text=True, env=env,
                               cwd=tmp_path, timeout=30)
    assert completed.returncode == 2 and message in completed.stderr
    assert not (tmp_path / "out" / device_check.REPORT_JSON).exists()


def test_script_help_names_its_options():
    completed = subprocess.run(["bash", str(SCRIPT), "--help"], capture_output=True, text=True, timeout=30)
    assert completed.returncode == 0
    for option in ("--data DIR", "--out DIR", "--cpu", "DEVICE_CHECK_WHEELS", "PYTHON"):
        assert option in completed.stdout


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"needs the shared samples in {SHARED_DATA}")
def test_cpu_mode_runs_every_step_and_reports_them(tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    device_check.make_data(SHARED_DATA, data)
    env = {**os.environ, "PYTHON": sys.executable, "DEVICE_CHECK_STEPS": ",".join(CPU_MODE_STEPS),
           "DEVICE_CHECK_WORK": str(tmp_path / "work")}
    completed = subprocess.run(["bash", str(SCRIPT), "--cpu", "--data", str(data), "--out", str(out)],
                               capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=CPU_MODE_TIMEOUT_S)
    assert completed.returncode == 0, completed.stdout[-4000:] + completed.stderr[-2000:]
    assert sorted(path.name for path in out.iterdir()) == ["device_check.json", "device_check.log",
                                                           "device_check.md"]
    report = json.loads((out / "device_check.json").read_text())
    assert [(step["name"], step["status"]) for step in report["steps"]] == [(name, "passed")
                                                                            for name in CPU_MODE_STEPS]
    # The CPU mode hides plyfile, laspy and spconv, as they are absent on the GPU machine.
    assert [report["env"]["packages"][name] for name in ("plyfile", "laspy", "spconv")] == ["not installed"] * 3
    assert report["env"]["sparse_backends"][1]["reason"].startswith("CUDA device, spconv not installed")
    runs = [r for r in report["bench_sparse"]["results"] if r["kind"] == "DeviceRunResult"]
    assert {(r["workload"], r["stride_mode"], r["precision"], r["passes"]) for r in runs} == {
        (w, m, p, passes) for w in "AB" for m in bench.STRIDE_MODES for p in ("fp32", "bf16")
        for passes in bench.PASSES}
    assert all(r["median_s"] > 0 and r["gflop"] > 0 for r in runs)
    assert [run["amp"] for run in report["train"]["runs"]] == ["none", "bf16", "fp16"]
    assert all(run["loss_finite"] for run in report["train"]["runs"])
    assert [row["what"] for row in report["scan"]["rows"]] == ["inference fp32", "inference bf16",
                                                               "training step fp32"]
    assert (out / "device_check.md").read_text() in completed.stdout
