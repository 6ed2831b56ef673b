"""Python side of ``benchmarks/device_check.sh``: its data subset, its workloads and its report.

Subcommands (the shell script calls all but ``make-data``):

- ``make-data SOURCE DEST``: copy what the check reads from ``SOURCE`` (``../shared/data``) to ``DEST``: 32
  training and 8 test ModelNet40 shapes with split lists naming only them, and SemanticKITTI scan
  00/000000 with its label and ``semantic-kitti.yaml`` (about 25 MB).
- ``hide-modules DIR NAME,...``: write ``DIR/sitecustomize.py``, which makes importing those packages fail
  as if they were not installed (the CPU mode hides plyfile, laspy and spconv, absent on the GPU machine).
- ``train`` / ``scan``: the workloads of ``device_workloads.py``, written as JSON.
- ``report WORK OUT``: ``OUT/device_check.json`` and ``OUT/device_check.md`` from the step table and the
  step results in ``WORK``. It imports neither torch nor the package, so it reports even when they fail.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import xml.etree.ElementTree as ElementTree
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

if __package__ in (None, ""):
    sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

MODELNET = "modelnet40_normal_resampled"
MODELNET_NAMES = "modelnet40_shape_names.txt"
MODELNET_LISTS = {"train": "modelnet40_train.txt", "test": "modelnet40_test.txt"}
SHAPES_PER_SPLIT = {"train": 32, "test": 8}
KITTI = "semantickitti"
KITTI_YAML = "semantic-kitti.yaml"
KITTI_FILES = ("sequences/00/velodyne/000000.bin", "sequences/00/labels/000000.label")
REPORT_JSON = "device_check.json"
REPORT_MD = "device_check.md"
STEPS_FILE = "steps.tsv"
STEP_FIELDS = ("name", "status", "exit_code", "seconds", "budget_s", "log")
# Result file of each step in the work folder, read into the report under the step's name.
STEP_RESULTS = {"env": "env.json", "bench_sparse": "bench_sparse.json", "train": "train.json", "scan": "scan.json"}
PYTEST_XML = "pytest.xml"
LOG_TAIL_LINES = 40
MIB = 2**20


# ---------------------------------------------------------------------------------------------------
# The data subset and the hidden modules.


def make_data(source: Path, dest: Path) -> int:
    """Copy the check's data from ``source`` into ``dest``; returns the bytes copied."""
    copied = 0
    modelnet_source, modelnet_dest = source / MODELNET, dest / MODELNET
    modelnet_dest.mkdir(parents=True, exist_ok=True)
    names = (modelnet_source / MODELNET_NAMES).read_text().split()
    shutil.copy2(modelnet_source / MODELNET_NAMES, modelnet_dest / MODELNET_NAMES)
    for split, list_name in MODELNET_LISTS.items():
        shapes = evenly_spaced((modelnet_source / list_name).read_text().split(), SHAPES_PER_SPLIT[split])
        for shape in shapes:
            class_name = shape.rsplit("_", 1)[0]
            if class_name not in names:
                raise ValueError(f"{list_name}: {shape} is not of a class in {MODELNET_NAMES}")
            target = modelnet_dest / class_name / f"{shape}.txt"
            target.parent.mkdir(exist_ok=True)
            shutil.copy2(modelnet_source / class_name / f"{shape}.txt", target)
            copied += target.stat().st_size
        (modelnet_dest / list_name).write_text("".join(f"{shape}\n" for shape in shapes))
    for relative in (KITTI_YAML, *KITTI_FILES):
        target = dest / KITTI / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / KITTI / relative, target)
        copied += target.stat().st_size
    return copied


def evenly_spaced(items: Sequence[str], count: int) -> list[str]:
    """``count`` items spread over ``items`` from the first to the last (all of them if fewer)."""
    if count >= len(items):
        return list(items)
    if count == 1:
        return [items[0]]
    return [items[round(i * (len(items) - 1) / (count - 1))] for i in range(count)]


HIDE_TEMPLATE = '''"""Written by benchmarks/device_check.py hide-modules: these packages import as if absent."""
import importlib.abc
import sys

HIDDEN = {names!r}


class _HiddenPackages(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HIDDEN:
            raise ModuleNotFoundError(f"No module named {{name!r}} (hidden by the device check)", name=name)
        return None


sys.meta_path.insert(0, _HiddenPackages())
'''


def hide_modules(directory: Path, names: Sequence[str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "sitecustomize.py"
    path.write_text(HIDE_TEMPLATE.format(names=sorted(set(names))))
    return path


# ---------------------------------------------------------------------------------------------------
# The report.


def read_steps(work: Path) -> list[dict]:
    steps = []
    path = work / STEPS_FILE
    if not path.exists():
        return steps
    for line in path.read_text().splitlines():
        values = line.split("\t")
        if len(values) != len(STEP_FIELDS):
            continue
        step = dict(zip(STEP_FIELDS, values))
        step["exit_code"] = int(step["exit_code"])
        step["seconds"] = float(step["seconds"])
        step["budget_s"] = int(step["budget_s"])
        steps.append(step)
    return steps


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def pytest_summary(path: Path) -> dict | None:
    """Counts, skip reasons and failed tests from pytest's JUnit XML."""
    try:
        root = ElementTree.parse(path).getroot()
    except (OSError, ElementTree.ParseError):
        return None
    counts, reasons, failed = Counter(), Counter(), []
    for case in root.iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        outcome = next((child for child in case if child.tag in ("failure", "error", "skipped")), None)
        if outcome is None:
            counts["passed"] += 1
        elif outcome.tag == "skipped":
            counts["skipped"] += 1
            reasons[(outcome.get("message") or "").strip()] += 1
        else:
            counts["failed" if outcome.tag == "failure" else "errors"] += 1
            failed.append(f"{name}: {(outcome.get('message') or '').strip()[:300]}")
    return {"counts": dict(counts), "skip_reasons": [{"reason": reason, "tests": count}
                                                     for reason, count in reasons.most_common()],
            "failed": failed}


def build_report(work: Path, settings: dict) -> dict:
    steps = read_steps(work)
    for step in steps:
        if step["status"] != "passed":
            step["log_tail"] = log_tail(Path(step["log"]))
    report = {"settings": settings, "steps": steps,
              "total_s": sum(step["seconds"] for step in steps),
              "all_passed": bool(steps) and all(step["status"] == "passed" for step in steps)}
    for name, file_name in STEP_RESULTS.items():
        report[name] = read_json(work / file_name)
    report["tests"] = pytest_summary(work / PYTEST_XML)
    return report


def write_report(work: Path, out: Path, settings: dict) -> dict:
    if __package__ in (None, ""):
        import device_report  # type: ignore[import-not-found]
    else:
        from benchmarks import device_report

    report = build_report(work, settings)
    out.mkdir(parents=True, exist_ok=True)
    (out / REPORT_JSON).write_text(json.dumps(report, indent=2) + "\n")
    (out / REPORT_MD).write_text(device_report.markdown(report))
    return report


# ---------------------------------------------------------------------------------------------------
# Command line.


def _settings(pairs: Sequence[str]) -> dict:
    settings = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        settings[key] = value
    return settings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    data = commands.add_parser("make-data", help="copy the check's data subset")
    data.add_argument("source", type=Path, help="the shared data folder (../shared/data)")
    data.add_argument("dest", type=Path)
    hide = commands.add_parser("hide-modules", help="write a sitecustomize.py that hides packages")
    hide.add_argument("directory", type=Path)
    hide.add_argument("names", help="comma-separated top-level package names")
    for name in ("train", "scan"):
        step = commands.add_parser(name, help=f"the {name} workload of device_workloads.py")
        step.add_argument("--data", type=Path, required=True, help="folder with the data subset")
        step.add_argument("--device", default="cuda")
        step.add_argument("--json", type=Path, required=True, help="write the results here")
        step.add_argument("--small", action="store_true", help="the CPU mode's sizes")
        if name == "train":
            step.add_argument("--run-dir", type=Path, required=True, help="folder for the training runs")
            step.add_argument("--workers", type=int, default=0, help="data-loader workers")
    report = commands.add_parser("report", help="write device_check.json and device_check.md")
    report.add_argument("work", type=Path, help="the script's work folder (steps.tsv, step results)")
    report.add_argument("out", type=Path)
    report.add_argument("--setting", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)

    if args.command == "make-data":
        copied = make_data(args.source, args.dest)
        print(f"copied {copied / MIB:.1f} MiB into {args.dest}")
    elif args.command == "hide-modules":
        print(hide_modules(args.directory, [name for name in args.names.split(",") if name]))
    elif args.command == "report":
        result = write_report(args.work, args.out, _settings(args.setting))
        print(f"{args.out / REPORT_MD}: {sum(s['status'] == 'passed' for s in result['steps'])} of "
              f"{len(result['steps'])} steps passed")
    else:
        _run_workload(args)
    return 0


def _run_workload(args: argparse.Namespace) -> None:
    import torch

    if __package__ in (None, ""):
        import device_workloads  # type: ignore[import-not-found]
    else:
        from benchmarks import device_workloads

    device = torch.device(args.device)
    if args.command == "train":
        result = device_workloads.train_epochs(args.data, device, args.run_dir, args.small, args.workers)
    else:
        result = device_workloads.scan_inference(args.data, device, args.small)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    sys.exit(main())
