"""The study behind docs/any-convnet.md: real ImageNet and Cityscapes backbones beyond ResNets, frozen.

Small training runs through the CLI (``image2point train RECIPE key=value ...``), one process per run, one
after another; a run whose ``metrics.json`` exists is skipped, so an interrupted study resumes.

- ModelNet40 sample (``configs/demo/modelnet40_mobilenet_v1_sample.yaml``): the ImageNet MobileNetV1 ×0.25
  (``../shared/weights/mobilenetv1_x0.25_imagenet.pth.tar``) inflated, frozen (scheme io);
- SemanticKITTI sample (``configs/demo/semantickitti_espnet_c_sample.yaml``): the Cityscapes ESPNet-C
  encoder (``../shared/weights/espnet_p2_q8_cityscapes_encoder.pth``) inflated, frozen (scheme io), with the
  U-Net decoder;

each beside the same network with a random frozen backbone (``model.pretrained=null``: the backbone keeps
its 3D initialisation), for the seeds 0, 1, 2 (``train.seed``: the same seed gives both arms the same input
layer, head and data order). ``report`` prints per-seed values, mean ± sample std, and the paired per-seed
difference (pretrained − random) with a 95 % t-interval.

  python benchmarks/family_study.py run --out runs/family_study [--only 'modelnet40/*']
  python benchmarks/family_study.py report --out runs/family_study
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fidelity_study import mean_std, paired_interval, run_in_turn  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
SEEDS = (0, 1, 2)
PRETRAINED, RANDOM = "pretrained", "random"
ARMS = (PRETRAINED, RANDOM)
# Every run: one thread, no loader workers (the 2-core machine is shared).
COMMON = ("data.num_workers=0", "train.threads=1")


@dataclass(frozen=True)
class Study:
    dataset: str
    recipe: str
    weights: str
    metric: str
    overrides: tuple[str, ...]


STUDIES = {
    "modelnet40": Study("modelnet40", "configs/demo/modelnet40_mobilenet_v1_sample.yaml",
                        "ImageNet MobileNetV1 x0.25", "overall_accuracy", ("train.eval_every=8",)),
    "semantickitti": Study("semantickitti", "configs/demo/semantickitti_espnet_c_sample.yaml",
                           "Cityscapes ESPNet-C encoder", "miou", ("train.eval_every=12",)),
}


@dataclass(frozen=True)
class Run:
    study: Study
    arm: str
    seed: int

    @property
    def run_id(self) -> str:
        return f"{self.study.dataset}/{self.arm}/seed{self.seed}"

    def command(self, out: Path) -> list[str]:
        overrides = [*self.study.overrides, *COMMON, f"train.seed={self.seed}", f"train.run_dir={out / self.run_id}"]
        if self.arm == RANDOM:
            overrides.append("model.pretrained=null")
        return ["-m", "image2point.cli", "train", self.study.recipe, *overrides]


def all_runs() -> list[Run]:
    # Paired arms next to each other, so that a stopped study leaves complete pairs.
    return [Run(study, arm, seed) for study in STUDIES.values() for seed in SEEDS for arm in ARMS]


def final_value(out: Path, run: Run) -> float | None:
    path = out / run.run_id / "metrics.json"
    if not path.is_file():
        return None
    value = json.loads(path.read_text())["final"].get(run.study.metric)
    return None if value is None else 100.0 * value


def run_study(out: Path, only: str) -> None:
    run_in_turn(out, [run for run in all_runs() if fnmatch.fnmatch(run.run_id, only)], final_value)


def report(out: Path) -> str:
    lines = []
    for study in STUDIES.values():
        metric = "mIoU %" if study.metric == "miou" else "overall accuracy %"
        lines += [f"### {study.dataset}: {study.weights}, scheme io ({metric}, final epoch, seeds "
                  f"{', '.join(map(str, SEEDS))})", "",
                  "| backbone | per seed | mean ± std | paired Δ (pretrained − random), 95 % t-interval |",
                  "|---|---|---|---|"]
        values = {arm: [final_value(out, Run(study, arm, seed)) for seed in SEEDS] for arm in ARMS}
        for arm in ARMS:
            done = [v for v in values[arm] if v is not None]
            seeds = ", ".join("—" if v is None else f"{v:.1f}" for v in values[arm])
            delta = ""
            if arm == PRETRAINED:
                pairs = [(p, r) for p, r in zip(values[PRETRAINED], values[RANDOM]) if p is not None and r is not None]
                delta = paired_interval([p - r for p, r in pairs])
            lines.append(f"| {arm} | {seeds} | {mean_std(done)} | {delta} |")
        seconds = [float(path.read_text()) for path in (out / study.dataset).glob("*/seed*/wall_seconds.txt")]
        if seconds:
            lines += ["", f"{len(seconds)} runs, {sum(seconds) / 60:.1f} min of wall time in all."]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("run", "report"))
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "runs" / "family_study")
    parser.add_argument("--only", default="*", help="glob over run ids (dataset/arm/seedN)")
    args = parser.parse_args()
    if args.action == "run":
        run_study(args.out, args.only)
    print(report(args.out))


if __name__ == "__main__":
    main()
