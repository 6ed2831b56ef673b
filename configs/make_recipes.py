"""Writes the paper's training recipes as flat YAML files (no inheritance): one per dataset, backbone and
finetuning scheme, plus small CPU recipes. Run it after changing a recipe; a test checks the files match.

    python configs/make_recipes.py
"""

from __future__ import annotations

from pathlib import Path

import yaml

CONFIG_DIR = Path(__file__).resolve().parent
BACKBONES = ("resnet18", "resnet50", "resnet152", "cifar_resnet56")
SCHEMES = ("io", "io_stats", "io_bn", "all", "scratch", "t")
# Scheme "t" trains a learnable T; the paper's best variant is one T per conv, initialised from the default.
LEARNABLE_T = {"learnable_t": "per_conv", "t_init": "default"}

# Paper Appendix 6.1 / 6.4.
PAPER_RECIPES = {
    "modelnet40": {
        "data": {"name": "modelnet40", "root": "data/modelnet40_normal_resampled", "voxel_size": 0.05,
                 "batch_size": 32, "eval_split": "test"},
        "model": {"head": "mlp"},
        "optim": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 1.0e-4},
        "schedule": {"name": "cosine"},
        "train": {"epochs": 300},
    },
    "s3dis": {
        "data": {"name": "s3dis", "root": "data/Stanford3dDataset_v1.2_Aligned_Version", "voxel_size": 0.05,
                 "batch_size": 3, "test_area": 5, "eval_split": "test"},
        "model": {"head": "unet"},
        "optim": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 1.0e-4},
        "schedule": {"name": "poly", "power": 0.9},
        "train": {"epochs": 400},
    },
    "semantickitti": {
        "data": {"name": "semantickitti", "root": "data/semantickitti", "voxel_size": 0.05, "batch_size": 2,
                 "eval_split": "val"},
        "model": {"head": "unet"},
        "optim": {"name": "sgd", "lr": 0.24, "momentum": 0.9, "weight_decay": 1.0e-4},
        "schedule": {"name": "warmup_cosine", "warmup_iters": 1000},
        "train": {"epochs": 15},
    },
}

# The other two families of paper Section 4.2 (Table 2); schemes "t" needs inflated kernels, so it is absent.
FAMILY_SCHEMES = ("io", "io_stats", "io_bn", "all", "scratch")
FAMILY_RECIPES = {
    # PointNet++ SSG from image pretraining (each pixel a point), finetuned with Adam 1e-3 as the paper.
    "modelnet40/pointnet2_ssg": {
        "data": {"name": "modelnet40", "root": "data/modelnet40_normal_resampled", "num_points": 1024,
                 "batch_size": 16, "eval_split": "test"},
        "model": {"family": "pointnet2", "backbone": "pointnet2_ssg"},
        "optim": {"name": "adam", "lr": 1.0e-3, "weight_decay": 1.0e-4},
        "schedule": {"name": "cosine"},
        "train": {"epochs": 200},
    },
    # HRNet-W18 (e.g. from Cityscapes weights) on 64 x 2048 range images with RangeNet++'s kNN refinement.
    "semantickitti/range_hrnet_w18": {
        "data": {"name": "semantickitti", "root": "data/semantickitti", "batch_size": 8, "eval_split": "val"},
        "model": {"family": "range", "backbone": "hrnet_w18", "knn_refine": True},
        "optim": {"name": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 1.0e-4},
        "schedule": {"name": "warmup_cosine", "warmup_iters": 1000},
        "train": {"epochs": 50},
    },
}

# Small recipes that finish in minutes on a laptop CPU, on the samples beside the repository or on the
# embedded procedural datasets.
SMALL_RECIPES = {
    "demo/procedural_shapes": {
        "data": {"name": "procedural_shapes", "train_samples": 600, "eval_samples": 300, "num_points": 1024,
                 "batch_size": 32, "num_workers": 0},
        "model": {"backbone": "cifar_resnet20", "normalize_t": True},
        "finetune": {"scheme": "io"},
        "optim": {"lr": 0.1},
        "train": {"epochs": 10, "run_dir": "runs/procedural_shapes"},
    },
    "demo/procedural_scenes": {
        "data": {"name": "procedural_scenes", "train_samples": 40, "eval_samples": 10, "voxel_size": 0.1,
                 "batch_size": 4, "num_workers": 0},
        "model": {"backbone": "cifar_resnet20", "head": "unet"},
        "finetune": {"scheme": "all"},
        "optim": {"lr": 0.05},
        "train": {"epochs": 10, "run_dir": "runs/procedural_scenes"},
    },
    "demo/modelnet40_sample": {
        "data": {"name": "modelnet40", "root": "../shared/data/modelnet40_normal_resampled", "num_points": 4096,
                 "batch_size": 16, "num_workers": 0},
        "model": {"backbone": "cifar_resnet56", "pretrained": "../shared/weights/resnet56-4bfd9763.th",
                  "normalize_t": True},
        "finetune": {"scheme": "io_bn"},
        "optim": {"lr": 0.05},
        "train": {"epochs": 30, "run_dir": "runs/modelnet40_sample"},
    },
    "demo/semantickitti_sample": {
        "data": {"name": "semantickitti", "root": "../shared/data/semantickitti", "voxel_size": 0.1,
                 "batch_size": 1, "num_workers": 0, "train_scans": ["00/000000", "00/000001"],
                 "eval_scans": ["00/000002"], "eval_split": "val"},
        "model": {"backbone": "cifar_resnet56", "pretrained": "../shared/weights/resnet56-4bfd9763.th",
                  "head": "unet", "normalize_t": True},
        "finetune": {"scheme": "all"},
        "optim": {"lr": 0.05},
        "schedule": {"name": "cosine"},
        "train": {"epochs": 40, "run_dir": "runs/semantickitti_sample"},
    },
    "demo/modelnet40_pointnet2_sample": {
        "data": {"name": "modelnet40", "root": "../shared/data/modelnet40_normal_resampled", "num_points": 1024,
                 "batch_size": 16, "num_workers": 0},
        "model": {"family": "pointnet2", "backbone": "pointnet2_ssg"},
        "finetune": {"scheme": "all"},
        "optim": {"name": "adam", "lr": 1.0e-3},
        "train": {"epochs": 15, "run_dir": "runs/modelnet40_pointnet2_sample"},
    },
    "demo/semantickitti_range_sample": {
        "data": {"name": "semantickitti", "root": "../shared/data/semantickitti", "batch_size": 1,
                 "num_workers": 0, "train_scans": ["00/000000", "00/000001"], "eval_scans": ["00/000002"],
                 "eval_split": "val"},
        "model": {"family": "range", "backbone": "hrnet_w18"},
        "finetune": {"scheme": "all"},
        "optim": {"name": "adam", "lr": 1.0e-3},
        "schedule": {"name": "cosine"},
        "train": {"epochs": 40, "run_dir": "runs/semantickitti_range_sample"},
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
    recipes = {f"{dataset}/{backbone}_{scheme}": paper_recipe(dataset, backbone, scheme)
               for dataset in PAPER_RECIPES for backbone in BACKBONES for scheme in SCHEMES}
    recipes.update({f"{name}_{scheme}": family_recipe(name, scheme)
                    for name in FAMILY_RECIPES for scheme in FAMILY_SCHEMES})
    recipes.update(SMALL_RECIPES)
    return recipes


def render(name: str, recipe: dict) -> str:
    header = (f"# {name}: written by configs/make_recipes.py; edit there.\n"
              "# Set model.pretrained to a local 2D checkpoint (torchvision/timm ResNet, our FractalDB, ...).\n")
    return header + yaml.safe_dump(recipe, sort_keys=False)


def main() -> None:
    for name, recipe in all_recipes().items():
        path = CONFIG_DIR / f"{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(name, recipe))
    print(f"wrote {len(all_recipes())} recipes under {CONFIG_DIR}")


if __name__ == "__main__":
    main()
