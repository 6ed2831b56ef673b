"""The study behind docs/fidelity.md: strided-shortcut settings and the paper's output layers, measured.

Small training runs through the CLI (``image2point train RECIPE key=value ...``), one process per run,
one after another; a run whose ``metrics.json`` exists is skipped, so an interrupted study resumes.
``report`` prints, per dataset, mean ± sample std over the seeds of each arm and the paired per-seed
differences against a reference arm with a 95 % t-interval.

Arms: ``center`` / ``children_sum`` / ``children_mean`` (``model.shortcut``, this code) and ``before``
(the code before the decoder/head change, strided shortcuts reading the centre child), given as a
source tree by ``--before-code`` (e.g. ``git archive <commit> | tar -x -C DIR``).

  python benchmarks/fidelity_study.py run --out runs/fidelity --before-code DIR [--after-code DIR]
  python benchmarks/fidelity_study.py report --out runs/fidelity
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

REPO_ROOT = Path(__file__).resolve().parents[1]
SEEDS = (0, 1, 2)
SHORTCUTS = ("center", "children_sum", "children_mean")
BEFORE = "before"
WEIGHTS = {"cifar_resnet20": "../shared/weights/resnet20-12fca82f.th",
           "cifar_resnet56": "../shared/weights/resnet56-4bfd9763.th"}
# Every run: T/K (the frozen BN statistics describe 2D response scales), one thread, no loader workers.
COMMON = ("model.normalize_t=true", "data.num_workers=0", "train.threads=1")
LINEAR_IO = ("model.input_layer=linear", "model.head=linear")
# Two-sided 95 % quantiles of Student's t by degrees of freedom.
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


@dataclass(frozen=True)
class Dataset:
    name: str
    recipe: str
    overrides: tuple[str, ...]
    metric: str


# The small-scale settings of image2point.experiments.scales (ModelNet40, SemanticKITTI) and a smaller
# procedural-shapes demo; each run evaluates once, after its last epoch.
DATASETS = {
    "modelnet40": Dataset("modelnet40", "configs/demo/modelnet40_sample.yaml",
                          ("data.num_points=1024", "data.batch_size=16", "train.epochs=8", "train.eval_every=8"),
                          "overall_accuracy"),
    "semantickitti": Dataset("semantickitti", "configs/demo/semantickitti_sample.yaml",
                             ("data.voxel_size=0.3", "data.train_scans=[00/000000,00/000001]",
                              "data.eval_scans=[00/000002]", "train.epochs=12", "train.eval_every=12"), "miou"),
    "procedural_shapes": Dataset("procedural_shapes", "configs/demo/procedural_shapes.yaml",
                                 ("data.train_samples=300", "data.eval_samples=150", "data.num_points=512",
                                  "train.epochs=8", "train.eval_every=8"), "overall_accuracy"),
}


@dataclass(frozen=True)
class Group:
    """Runs that differ only in the arm: one backbone, scheme and pair of input/output layers."""

    dataset: str
    backbone: str
    scheme: str
    layers: str  # "full" (conv3 input, mlp/unet head) or "linear" (Listings 5/6)
    arms: tuple[str, ...]

    @property
    def label(self) -> str:
        return f"{self.dataset}/{self.backbone}/{self.scheme}/{self.layers}"


def study_groups() -> list[Group]:
    groups = []
    for dataset in DATASETS:
        for scheme in ("io", "io_bn"):
            groups.append(Group(dataset, "cifar_resnet20", scheme, "full", (BEFORE, *SHORTCUTS)))
        groups.append(Group(dataset, "cifar_resnet20", "all", "full", SHORTCUTS))
        groups.append(Group(dataset, "cifar_resnet20", "io", "linear", (BEFORE, "center")))
    for scheme in ("io", "io_bn"):
        groups.append(Group("modelnet40", "cifar_resnet56", scheme, "full", SHORTCUTS))
    return groups


@dataclass(frozen=True)
class Run:
    group: Group
    arm: str
    seed: int

    @property
    def run_id(self) -> str:
        return f"{self.group.label}/{self.arm}/seed{self.seed}"

    def command(self, out: Path) -> list[str]:
        data = DATASETS[self.group.dataset]
        overrides = [*data.overrides, *COMMON, f"model.backbone={self.group.backbone}",
                     f"model.pretrained={WEIGHTS[self.group.backbone]}", f"finetune.scheme={self.group.scheme}",
                     f"train.seed={self.seed}", f"train.run_dir={out / self.run_id}"]
        if self.group.layers == "linear":
            overrides += LINEAR_IO
        if self.arm != BEFORE:
            overrides.append(f"model.shortcut={self.arm}")
        return ["-m", "image2point.cli", "train", data.recipe, *overrides]


def all_runs() -> list[Run]:
    return [Run(group, arm, seed) for group in study_groups() for arm in group.arms for seed in SEEDS]


def final_value(out: Path, run: Run) -> float | None:
    path = out / run.run_id / "metrics.json"
    if not path.is_file():
        return None
    value = json.loads(path.read_text())["final"].get(DATASETS[run.group.dataset].metric)
    return None if value is None else 100.0 * value


class StudyRun(Protocol):
    """One training run of a study: its id (also its directory under the study's output) and CLI arguments."""

    @property
    def run_id(self) -> str: ...

    def command(self, out: Path) -> list[str]: ...


AnyRun = TypeVar("AnyRun", bound=StudyRun)


def run_in_turn(out: Path, runs: list[AnyRun], final_value: Callable[[Path, AnyRun], float | None],
                source_of: Callable[[AnyRun], Path] | None = None) -> None:
    """Run each run that has no final value yet, one after another, each in its own process from the
    repository root, its output in ``out/logs``; ``--resume`` where its directory exists. ``source_of``
    gives the source tree each run imports (its log's first line names it); without it, this tree."""
    for index, run in enumerate(runs, 1):
        if final_value(out, run) is not None:
            continue
        source = REPO_ROOT if source_of is None else source_of(run)
        env = {**os.environ, "PYTHONPATH": str(source)}
        # -P: the working directory must not shadow the source tree on PYTHONPATH.
        command = [sys.executable, "-P", *run.command(out)]
        if (out / run.run_id).exists():
            command.append("--resume")
        log = out / "logs" / f"{run.run_id.replace('/', '__')}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        header = " ".join(command) if source_of is None else f"PYTHONPATH={source} {' '.join(command)}"
        started = time.perf_counter()
        with log.open("w") as handle:
            handle.write(header + "\n")
            handle.flush()
            result = subprocess.run(command, cwd=REPO_ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT)
        seconds = time.perf_counter() - started
        if result.returncode != 0:
            print(f"[{index}/{len(runs)}] {run.run_id}: failed (exit {result.returncode}, see {log})", flush=True)
            continue
        (out / run.run_id / "wall_seconds.txt").write_text(f"{seconds:.1f}\n")
        print(f"[{index}/{len(runs)}] {run.run_id}: {final_value(out, run):.2f} ({seconds:.0f} s)", flush=True)


def run_study(out: Path, code: dict[str, Path], only: str) -> None:
    runs = [run for run in all_runs() if fnmatch.fnmatch(run.run_id, only)]
    run_in_turn(out, runs, final_value, lambda run: code[BEFORE if run.arm == BEFORE else "after"])


def mean_std(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.1f}" if values else "n/a"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def paired_interval(differences: list[float]) -> str:
    """Mean paired difference with its 95 % t-interval, and whether the interval excludes 0."""
    n = len(differences)
    if n < 2:
        return "n/a"
    mean = statistics.mean(differences)
    half = T_975[n - 1] * statistics.stdev(differences) / math.sqrt(n)
    verdict = "cannot tell" if mean - half <= 0 <= mean + half else ("higher" if mean > 0 else "lower")
    return f"{mean:+.1f} [{mean - half:+.1f}, {mean + half:+.1f}] ({verdict})"


def report(out: Path) -> str:
    lines = []
    for dataset, data in DATASETS.items():
        metric = "mIoU %" if data.metric == "miou" else "accuracy %"
        lines += [f"### {dataset} ({metric}, final epoch, seeds {', '.join(map(str, SEEDS))})", "",
                  "| backbone | scheme | layers | arm | per seed | mean ± std | paired Δ vs reference, 95 % t-interval |",
                  "|---|---|---|---|---|---|---|"]
        for group in (g for g in study_groups() if g.dataset == dataset):
            reference = "center"
            by_arm = {arm: [final_value(out, Run(group, arm, seed)) for seed in SEEDS] for arm in group.arms}
            for arm, values in by_arm.items():
                done = [v for v in values if v is not None]
                seeds = ", ".join("—" if v is None else f"{v:.1f}" for v in values)
                if arm == reference:
                    delta = "reference"
                else:
                    pairs = [(v, r) for v, r in zip(values, by_arm[reference]) if v is not None and r is not None]
                    delta = paired_interval([v - r for v, r in pairs])
                lines.append(f"| {group.backbone} | {group.scheme} | {group.layers} | {arm} | {seeds} | "
                             f"{mean_std(done)} | {delta} |")
            if {"children_sum", "children_mean"} <= set(by_arm):
                pairs = [(v, r) for v, r in zip(by_arm["children_sum"], by_arm["children_mean"])
                         if v is not None and r is not None]
                lines.append(f"| {group.backbone} | {group.scheme} | {group.layers} | sum − mean | "
                             f"{', '.join(f'{v - r:+.1f}' for v, r in pairs)} | | "
                             f"{paired_interval([v - r for v, r in pairs])} |")
        lines.append("")
    return "\n".join(lines)


def wall_times(out: Path) -> str:
    totals: dict[str, list[float]] = {}
    for run in all_runs():
        path = out / run.run_id / "wall_seconds.txt"
        if path.is_file():
            totals.setdefault(run.group.dataset, []).append(float(path.read_text()))
    return "\n".join(f"{name}: {len(t)} runs, {sum(t) / 60:.0f} min in all, median {statistics.median(t):.0f} s"
                     for name, t in totals.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("run", "report"))
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "runs" / "fidelity")
    parser.add_argument("--before-code", type=Path, help="source tree of the code before the change")
    parser.add_argument("--after-code", type=Path, default=REPO_ROOT, help="source tree of this code")
    parser.add_argument("--only", default="*", help="run ids to run (shell pattern)")
    args = parser.parse_args()
    out = args.out.resolve()
    if args.action == "report":
        print(report(out))
        print(wall_times(out))
        return
    if args.before_code is None:
        parser.error("run needs --before-code")
    run_study(out, {BEFORE: args.before_code.resolve(), "after": args.after_code.resolve()}, args.only)


if __name__ == "__main__":
    main()
