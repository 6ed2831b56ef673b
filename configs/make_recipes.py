"""Writes the paper's training recipes as flat YAML files (no inheritance): one per dataset, backbone and
finetuning scheme, plus small CPU recipes. Run it after changing a recipe; a test checks the files match.

    python configs/make_recipes.py

Every number of a recipe is ``cite(value, SOURCE)``: where it comes from (a section of the paper, a file
of the authors' code, or our own choice with its reason) is written beside it in the YAML, and the
sources a file uses are listed in its header. tests/configs/test_recipes.py fails on an uncited number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

CONFIG_DIR = Path(__file__).resolve().parent
BACKBONES = ("resnet18", "resnet50", "resnet152", "cifar_resnet56")
SCHEMES = ("io", "io_stats", "io_bn", "all", "scratch", "t")

# ---------------------------------------------------------------------------------------------------
# Sources: the label written beside a value -> what it refers to.

AUTHORS = "github chenfengxu714/image2point at 6efba31"
PAPER = "paper 6.1"
PAPER_TABLE7 = "paper 4.8"
AUTHORS_MODELNET_YAML = "authors configs/modelnet/18_finetune.yaml"
AUTHORS_S3DIS_YAML = "authors configs/s3dis/finetune.yaml"
AUTHORS_KITTI_YAML = "authors configs/semantic_kitti/finetune.yaml"
AUTHORS_MODELNET_PY = "authors core/datasets/modelnet.py"
AUTHORS_S3DIS_PY = "authors core/datasets/s3dis.py"
AUTHORS_KITTI_PY = "authors core/datasets/semantic_kitti.py"
SPVNAS_SCHEDULERS = "spvnas core/schedulers.py"
SQUEEZESEGV3 = "squeezesegv3 SSGV321.yaml"
POINTNET2 = "pointnet++"
OURS = "ours"
DEMO = "demo"

SOURCES: dict[str, str] = {
    PAPER: "Xu et al., Image2Point (ECCV 2022), Appendix 6.1 'Implementation detail' (per dataset; "
           "PointNet++ in its 'Detail of Section 4.2')",
    PAPER_TABLE7: "the paper's Section 4.8 and Table 7: a learnable T per conv, initialised from the default, "
                  "is its best variant",
    AUTHORS_MODELNET_YAML: f"configs/modelnet/18_finetune.yaml of {AUTHORS} (the same in its 50/101/152 files)",
    AUTHORS_S3DIS_YAML: f"configs/s3dis/finetune.yaml of {AUTHORS}",
    AUTHORS_KITTI_YAML: f"configs/semantic_kitti/finetune.yaml of {AUTHORS}",
    AUTHORS_MODELNET_PY: f"core/datasets/modelnet.py of {AUTHORS} (CoordinateTransformation(trans=0.2))",
    AUTHORS_S3DIS_PY: f"core/datasets/s3dis.py of {AUTHORS} (feature_aug, coord_aug, clip, __getitem__)",
    AUTHORS_KITTI_PY: f"core/datasets/semantic_kitti.py of {AUTHORS} (__getitem__)",
    SPVNAS_SCHEDULERS: "core/schedulers.py of github mit-han-lab/spvnas at 3054cc1, the core.schedulers that the "
                       "authors' core/builder.py imports (absent from their repository): linear warm-up over "
                       "1000 // world size iterations, then cosine",
    SQUEEZESEGV3: "src/tasks/semantic/config/arch/SSGV321.yaml of github chenfengxu714/SqueezeSegV3, whose "
                  "training the paper keeps for HRNet (Appendix 6.1, 'Detail of Section 4.2')",
    POINTNET2: "Qi et al., PointNet++ (NeurIPS 2017), ModelNet40 classification from 1024 points",
    OURS: "our choice, not given by the paper or the authors' code (the reason follows the label)",
    DEMO: "ours: sized to finish in minutes on a laptop CPU, not the paper's",
}


@dataclass(frozen=True)
class Cited:
    """A recipe value and where it comes from (a key of SOURCES, plus an optional note)."""

    value: Any
    source: str
    note: str = ""

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"unknown source {self.source!r} for {self.value!r}; add it to SOURCES")

    def comment(self) -> str:
        return f"{self.source}: {self.note}" if self.note else self.source


def cite(value: Any, source: str, note: str = "") -> Cited:
    return Cited(value, source, note)


def demo(value: Any) -> Cited:
    return Cited(value, DEMO)


# ---------------------------------------------------------------------------------------------------
# The paper's recipes, Appendix 6.1, completed from the authors' configs and code.

SGD = {"name": cite("sgd", PAPER), "lr": cite(0.1, PAPER), "momentum": cite(0.9, PAPER),
       "weight_decay": cite(1.0e-4, PAPER)}
PER_PROCESS = "per process"
# Scheme "t" trains a learnable T; the paper's best variant is one T per conv, initialised from the default.
LEARNABLE_T = {"learnable_t": cite("per_conv", PAPER_TABLE7), "t_init": cite("default", PAPER_TABLE7)}

MODELNET40_AUGMENTATION = {
    "scale": {"low": cite(0.9, AUTHORS_MODELNET_PY), "high": cite(1.1, AUTHORS_MODELNET_PY),
              "p": cite(0.9, AUTHORS_MODELNET_PY), "per_axis": cite(True, AUTHORS_MODELNET_PY, "one factor per axis")},
    "translation": {"max_shift": cite(0.2, AUTHORS_MODELNET_PY), "p": cite(0.9, AUTHORS_MODELNET_PY)},
    "jitter": {"half_width": cite(0.0125, AUTHORS_MODELNET_PY, "their 0.025 * (u - 0.5)"),
               "clip": cite(0.05, AUTHORS_MODELNET_PY), "p": cite(0.7, AUTHORS_MODELNET_PY)},
    "point_sampling": cite("random", AUTHORS_MODELNET_YAML,
                           "their modelnet40_ply_hdf5_2048 shapes are uniform surface samples; a fixed random "
                           "subset of a normal_resampled file is one too (its first points are farthest-point "
                           "ordered)"),
}
S3DIS_AUGMENTATION = {
    "flip": {"p": cite(0.95, AUTHORS_S3DIS_PY), "axis_p": cite(0.5, AUTHORS_S3DIS_PY),
             "axes": cite([0, 1], AUTHORS_S3DIS_PY, "x and y")},
    "color_jitter": {"std": cite(0.005, AUTHORS_S3DIS_YAML, "color_std, on colours in [0, 1]"),
                     "p": cite(0.95, AUTHORS_S3DIS_PY)},
    "color_translation": {"ratio": cite(0.05, AUTHORS_S3DIS_YAML, "color_trans_ratio"),
                          "p": cite(0.95, AUTHORS_S3DIS_PY)},
    "auto_contrast": {"p": cite(0.2, AUTHORS_S3DIS_PY), "blend": cite(0.5, AUTHORS_S3DIS_PY)},
    "clip_bound": cite(4.0, AUTHORS_S3DIS_YAML, "metres around the room's centre"),
    "center": cite(True, AUTHORS_S3DIS_PY, "coordinates minus their mean"),
    "xyz_in_voxels": cite(True, AUTHORS_S3DIS_PY, "xyz features are the centred voxel indices"),
}
SEMANTICKITTI_AUGMENTATION = {
    "rotation": {"max_angle": cite(math.pi, AUTHORS_KITTI_PY, "a full turn about z"),
                 "p": cite(1.0, AUTHORS_KITTI_PY)},
    "scale": {"low": cite(0.95, AUTHORS_KITTI_PY), "high": cite(1.05, AUTHORS_KITTI_PY),
              "p": cite(1.0, AUTHORS_KITTI_PY), "per_axis": cite(False, AUTHORS_KITTI_PY)},
    "max_train_voxels": cite(80_000, AUTHORS_KITTI_YAML, "data.num_points, a random subset of the voxels"),
}

PAPER_RECIPES = {
    "modelnet40": {
        "data": {"name": "modelnet40", "root": "data/modelnet40_normal_resampled",
                 "voxel_size": cite(0.05, PAPER),
                 "num_points": cite(2048, AUTHORS_MODELNET_YAML, "data.num_points of modelnet40_ply_hdf5_2048"),
                 "batch_size": cite(32, PAPER, PER_PROCESS),
                 "effective_batch_size": cite(32, PAPER, "one Titan RTX x 32"),
                 "eval_split": "test",
                 "modelnet40": MODELNET40_AUGMENTATION},
        "model": {"head": "mlp"},
        "optim": {**SGD, "nesterov": cite(False, AUTHORS_MODELNET_YAML)},
        "schedule": {"name": cite("cosine", PAPER, "one decay over the run; the authors' code steps "
                                                   "CosineAnnealingLR(T_max=num_epochs) every iteration")},
        "train": {"epochs": cite(300, PAPER, "the authors' configs say 100")},
    },
    "s3dis": {
        "data": {"name": "s3dis", "root": "data/Stanford3dDataset_v1.2_Aligned_Version",
                 "voxel_size": cite(0.05, PAPER), "batch_size": cite(3, PAPER, PER_PROCESS),
                 "effective_batch_size": cite(6, PAPER, "2 Titan RTX x 3 (world size x data.batch_size)"),
                 "test_area": cite(5, PAPER), "eval_split": "test",
                 "s3dis": S3DIS_AUGMENTATION},
        "model": {"head": "unet"},
        "optim": {**SGD, "nesterov": cite(True, AUTHORS_S3DIS_YAML)},
        "schedule": {"name": cite("poly", PAPER),
                     "power": cite(0.9, AUTHORS_S3DIS_YAML, "their polyLR; it decays here over the run's "
                                                            "iterations, theirs over a fixed max_iter 10400")},
        "train": {"epochs": cite(400, PAPER)},
    },
    "semantickitti": {
        "data": {"name": "semantickitti", "root": "data/semantickitti", "voxel_size": cite(0.05, PAPER),
                 "batch_size": cite(2, PAPER, PER_PROCESS),
                 "effective_batch_size": cite(8, PAPER, "4 Titan RTX x 2 (world size x data.batch_size)"),
                 "eval_split": "val",
                 "semantickitti": SEMANTICKITTI_AUGMENTATION},
        "model": {"head": "unet"},
        "optim": {**SGD, "lr": cite(0.24, PAPER), "nesterov": cite(True, AUTHORS_KITTI_YAML)},
        "schedule": {"name": cite("warmup_cosine", PAPER),
                     "warmup_iters": cite(250, SPVNAS_SCHEDULERS, "1000 // 4 processes")},
        "train": {"epochs": cite(15, PAPER)},
    },
}

# The other two families of paper Section 4.2 (Table 2); schemes "t" needs inflated kernels, so it is absent.
FAMILY_SCHEMES = ("io", "io_stats", "io_bn", "all", "scratch")
HRNET_NOT_SSGV3 = "SqueezeSegV3 trains 150 epochs, batch 16, lr 0.001 with 1 warm-up epoch and x0.995 per epoch"
FAMILY_RECIPES = {
    # PointNet++ SSG from image pretraining (each pixel a point), finetuned with Adam 1e-3 as the paper.
    "modelnet40/pointnet2_ssg": {
        "data": {"name": "modelnet40", "root": "data/modelnet40_normal_resampled",
                 "num_points": cite(1024, POINTNET2), "batch_size": cite(32, PAPER),
                 "effective_batch_size": cite(32, PAPER, "one Titan RTX x 32"), "eval_split": "test"},
        "model": {"family": "pointnet2", "backbone": "pointnet2_ssg"},
        "optim": {"name": cite("adam", PAPER), "lr": cite(1.0e-3, PAPER),
                  "weight_decay": cite(1.0e-4, OURS, "the paper names none; as the voxel recipes")},
        "schedule": {"name": cite("cosine", OURS, "the paper names none")},
        "train": {"epochs": cite(200, PAPER)},
    },
    # HRNet-W18 (e.g. from Cityscapes weights) on 64 x 2048 range images with RangeNet++'s kNN refinement.
    "semantickitti/range_hrnet_w18": {
        "data": {"name": "semantickitti", "root": "data/semantickitti",
                 "batch_size": cite(8, OURS, HRNET_NOT_SSGV3), "eval_split": "val"},
        "model": {"family": "range", "backbone": "hrnet_w18", "knn_refine": cite(True, OURS, "RangeNet++'s kNN")},
        "optim": {"name": "sgd", "lr": cite(0.01, OURS, HRNET_NOT_SSGV3), "momentum": cite(0.9, SQUEEZESEGV3),
                  "weight_decay": cite(1.0e-4, SQUEEZESEGV3)},
        "schedule": {"name": cite("warmup_cosine", OURS, HRNET_NOT_SSGV3),
                     "warmup_iters": cite(1000, OURS, HRNET_NOT_SSGV3)},
        "train": {"epochs": cite(50, OURS, HRNET_NOT_SSGV3)},
    },
}

# Small recipes that finish in minutes on a laptop CPU, on the samples beside the repository or on the
# embedded procedural datasets.
SMALL_RECIPES = {
    "demo/procedural_shapes": {
        "data": {"name": "procedural_shapes", "train_samples": demo(600), "eval_samples": demo(300),
                 "num_points": demo(1024), "batch_size": demo(32), "num_workers": demo(0)},
        "model": {"backbone": "cifar_resnet20", "normalize_t": demo(True)},
        "finetune": {"scheme": "io"},
        "optim": {"lr": demo(0.1)},
        "train": {"epochs": demo(10), "run_dir": "runs/procedural_shapes"},
    },
    "demo/procedural_scenes": {
        "data": {"name": "procedural_scenes", "train_samples": demo(40), "eval_samples": demo(10),
                 "voxel_size": demo(0.1), "batch_size": demo(4), "num_workers": demo(0)},
        "model": {"backbone": "cifar_resnet20", "head": "unet"},
        "finetune": {"scheme": "all"},
        "optim": {"lr": demo(0.05)},
        "train": {"epochs": demo(10), "run_dir": "runs/procedural_scenes"},
    },
    "demo/modelnet40_sample": {
        "data": {"name": "modelnet40", "root": "../shared/data/modelnet40_normal_resampled",
                 "num_points": demo(4096), "batch_size": demo(16), "num_workers": demo(0)},
        "model": {"backbone": "cifar_resnet56", "pretrained": "../shared/weights/resnet56-4bfd9763.th",
                  "normalize_t": demo(True)},
        "finetune": {"scheme": "io_bn"},
        "optim": {"lr": demo(0.05)},
        "train": {"epochs": demo(30), "run_dir": "runs/modelnet40_sample"},
    },
    "demo/semantickitti_sample": {
        "data": {"name": "semantickitti", "root": "../shared/data/semantickitti", "voxel_size": demo(0.1),
                 "batch_size": demo(1), "num_workers": demo(0), "train_scans": ["00/000000", "00/000001"],
                 "eval_scans": ["00/000002"], "eval_split": "val"},
        "model": {"backbone": "cifar_resnet56", "pretrained": "../shared/weights/resnet56-4bfd9763.th",
                  "head": "unet", "normalize_t": demo(True)},
        "finetune": {"scheme": "all"},
        "optim": {"lr": demo(0.05)},
        "schedule": {"name": "cosine"},
        "train": {"epochs": demo(40), "run_dir": "runs/semantickitti_sample"},
    },
    "demo/modelnet40_pointnet2_sample": {
        "data": {"name": "modelnet40", "root": "../shared/data/modelnet40_normal_resampled",
                 "num_points": demo(1024), "batch_size": demo(16), "num_workers": demo(0)},
        "model": {"family": "pointnet2", "backbone": "pointnet2_ssg"},
        "finetune": {"scheme": "all"},
        "optim": {"name": "adam", "lr": demo(1.0e-3)},
        "train": {"epochs": demo(15), "run_dir": "runs/modelnet40_pointnet2_sample"},
    },
    "demo/semantickitti_range_sample": {
        "data": {"name": "semantickitti", "root": "../shared/data/semantickitti", "batch_size": demo(1),
                 "num_workers": demo(0), "train_scans": ["00/000000", "00/000001"], "eval_scans": ["00/000002"],
                 "eval_split": "val"},
        "model": {"family": "range", "backbone": "hrnet_w18"},
        "finetune": {"scheme": "all"},
        "optim": {"name": "adam", "lr": demo(1.0e-3)},
        "schedule": {"name": "cosine"},
        "train": {"epochs": demo(40), "run_dir": "runs/semantickitti_range_sample"},
    },
}


# The first real ImageNet and Cityscapes backbones beyond ResNets, frozen (scheme io) on the samples: the
# ImageNet MobileNetV1 x0.25 and the Cityscapes ESPNet-C encoder (it reads the image at every level, so its
# input layer is the linear one: a learned pseudo-image at voxel resolution; see docs/any-convnet.md).
FAMILY_SAMPLE_RECIPES = {
    "demo/modelnet40_mobilenet_v1_sample": {
        "data": {"name": "modelnet40", "root": "../shared/data/modelnet40_normal_resampled",
                 "num_points": demo(1024), "batch_size": demo(16), "num_workers": demo(0)},
        "model": {"backbone": "mobilenet_v1_x0_25",
                  "pretrained": "../shared/weights/mobilenetv1_x0.25_imagenet.pth.tar", "normalize_t": demo(True)},
        "finetune": {"scheme": "io"},
        "optim": {"lr": demo(0.05)},
        "train": {"epochs": demo(8), "run_dir": "runs/modelnet40_mobilenet_v1_sample"},
    },
    "demo/semantickitti_espnet_c_sample": {
        "data": {"name": "semantickitti", "root": "../shared/data/semantickitti", "voxel_size": demo(0.3),
                 "batch_size": demo(1), "num_workers": demo(0), "train_scans": ["00/000000", "00/000001"],
                 "eval_scans": ["00/000002"], "eval_split": "val"},
        "model": {"backbone": "espnet_c", "pretrained": "../shared/weights/espnet_p2_q8_cityscapes_encoder.pth",
                  "input_layer": "linear", "head": "unet", "normalize_t": demo(True)},
        "finetune": {"scheme": "io"},
        "optim": {"lr": demo(0.05)},
        "schedule": {"name": "cosine"},
        "train": {"epochs": demo(12), "run_dir": "runs/semantickitti_espnet_c_sample"},
    },
}


def paper_recipe(dataset: str, backbone: str, scheme: str) -> dict:
    recipe = {section: dict(values) for section, values in PAPER_RECIPES[dataset].items()}
    recipe["model"] = {**recipe["model"], "backbone": backbone}
    recipe["finetune"] = {"scheme": scheme, **(LEARNABLE_T if scheme == "t" else {})}
    recipe["train"] = {**recipe["train"], "run_dir": f"runs/{dataset}/{backbone}_{scheme}"}
    return recipe


def family_recipe(name: str, scheme: str) -> dict:
    recipe = {section: dict(values) for section, values in FAMILY_RECIPES[name].items()}
    recipe["finetune"] = {"scheme": scheme}
    recipe["train"] = {**recipe["train"], "run_dir": f"runs/{name}_{scheme}"}
    return recipe


def all_recipes() -> dict[str, dict]:
    """Every recipe by name (its path under configs/ without .yaml), values still ``Cited``."""
    recipes = {f"{dataset}/{backbone}_{scheme}": paper_recipe(dataset, backbone, scheme)
               for dataset in PAPER_RECIPES for backbone in BACKBONES for scheme in SCHEMES}
    recipes.update({f"{name}_{scheme}": family_recipe(name, scheme)
                    for name in FAMILY_RECIPES for scheme in FAMILY_SCHEMES})
    recipes.update(SMALL_RECIPES)
    recipes.update(FAMILY_SAMPLE_RECIPES)
    return recipes


def plain(value: Any) -> Any:
    """The recipe as the config loader reads it: ``Cited`` values replaced by their values."""
    if isinstance(value, Cited):
        return plain(value.value)
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    return value


def _yaml_value(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=math.inf).strip()
    return text.removesuffix("\n...").strip()


def _emit(mapping: dict, depth: int, lines: list[str], used: set[str]) -> None:
    for key, item in mapping.items():
        comment = ""
        if isinstance(item, Cited):
            used.add(item.source)
            comment = f"  # {item.comment()}"
            item = item.value
        if isinstance(item, dict):
            lines.append(f"{'  ' * depth}{key}:{comment}")
            _emit(item, depth + 1, lines, used)
        else:
            lines.append(f"{'  ' * depth}{key}: {_yaml_value(item)}{comment}")


def _batch_line(recipe: dict) -> str | None:
    data = plain(recipe.get("data", {}))
    effective, per_process = data.get("effective_batch_size"), data.get("batch_size")
    if effective is None:
        return None
    processes = effective // per_process
    return (f"# Effective batch {effective} = world size {processes} x data.batch_size {per_process}"
            f"{' (the paper: one GPU)' if processes == 1 else ' (the paper: one GPU per process)'}; "
            "training warns when world size x data.batch_size differs.\n")


def render(name: str, recipe: dict) -> str:
    lines: list[str] = []
    used: set[str] = set()
    _emit(recipe, 0, lines, used)
    header = (f"# {name}: written by configs/make_recipes.py; edit there.\n"
              "# Set model.pretrained to a local 2D checkpoint (torchvision/timm ResNet, our FractalDB, ...).\n")
    header += _batch_line(recipe) or ""
    header += "# Sources of the values (end-of-line comments):\n"
    header += "".join(f"#   {label}: {SOURCES[label]}\n" for label in SOURCES if label in used)
    return header + "\n".join(lines) + "\n"


def main() -> None:
    recipes = all_recipes()
    for name, recipe in recipes.items():
        path = CONFIG_DIR / f"{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(name, recipe))
    print(f"wrote {len(recipes)} recipes under {CONFIG_DIR}")


if __name__ == "__main__":
    main()
