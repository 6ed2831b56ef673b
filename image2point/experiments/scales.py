"""The two scales of the paper's study: the datasets, base recipes and overrides every run starts from.

``paper``: the paper's recipes (``configs/<dataset>/resnet18_io.yaml``: ResNet-18, full datasets under
``data.root``, the paper's epochs); its runs need GPUs, the datasets and the ImageNet checkpoints.

``small``: CPU-sized runs on the real samples of the shared directory (see
:func:`image2point.experiments.sources.shared_root`): the ModelNet40 sample (94 training / 33 test
shapes, 1024 points), the SemanticKITTI sample (two scans train, the third evaluates, 0.3 m voxels),
CIFAR-10 ResNet-20 backbones inflated with T/K (``model.normalize_t``: the frozen BN statistics describe
2D response scales, see docs/real-samples.md), few epochs, one thread, no loader workers. S3DIS is not
in the shared directory, so its cells report "no data" unless ``--data-root s3dis=PATH`` is given.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from image2point.errors import ConfigError

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
SMALL, PAPER = "small", "paper"
SCALES = (SMALL, PAPER)
CLASSIFICATION_METRIC = "overall_accuracy"
SEGMENTATION_METRIC = "miou"
METRIC_NAMES = {CLASSIFICATION_METRIC: "overall accuracy", SEGMENTATION_METRIC: "mIoU"}

MODELNET40, S3DIS, SEMANTICKITTI = "modelnet40", "s3dis", "semantickitti"
DATASET_LABELS = {MODELNET40: "ModelNet40", S3DIS: "S3DIS", SEMANTICKITTI: "SemanticKITTI"}

# Small-scale training lengths. The voxel lengths come from the convergence study (docs/statistics.md): at the
# earlier 8 / 12 epochs the from-scratch row had not converged; its ModelNet40 curve flattens at about 16
# epochs, its SemanticKITTI mIoU still rises to 48. A voxel run takes about 40 s on one core at these lengths.
SMALL_MODELNET40_EPOCHS = 16
SMALL_SEMANTICKITTI_EPOCHS = 48
SMALL_S3DIS_EPOCHS = 4
SMALL_POINTNET2_EPOCHS = 6
SMALL_RANGE_EPOCHS = 12
SMALL_MODELNET40_FOLDS = 5
SMALL_SEMANTICKITTI_FOLDS = 3
# The architectures of the released checkpoints the small scale runs (models2d registry names).
SMALL_IMAGENET_ARCH = "mobilenet_v1_x0_25"
SMALL_CITYSCAPES_ARCH = "espnet_c"


@dataclass(frozen=True)
class DatasetSetup:
    """Where a dataset's runs start: a base recipe, the scale's overrides, and where its data is."""

    name: str
    recipe: str
    overrides: tuple[str, ...]
    # Under the shared root (small scale); None: only --data-root provides it (paper: the recipe's root).
    shared_path: str | None
    metric: str

    @property
    def label(self) -> str:
        return DATASET_LABELS[self.name]


@dataclass(frozen=True)
class ScaleSetup:
    """Everything that differs between the paper's runs and the CPU-sized ones."""

    name: str
    description: str
    backbone: str
    # Table 6: backbones of increasing depth.
    depth_backbones: tuple[str, ...]
    # The image-classification weights the paper's main results use (ImageNet; small: CIFAR-10).
    classification_source: str
    # Table 2: the image-pretrained PointNet++ (each pixel a point).
    pointnet2_source: str
    datasets: Mapping[str, DatasetSetup]
    # model.family -> dataset -> overrides on top of the dataset's (Table 2).
    family_overrides: Mapping[str, Mapping[str, tuple[str, ...]]] = field(default_factory=dict)
    # Overrides of every voxel run (the inflation) and of every run (threads, workers).
    voxel_overrides: tuple[str, ...] = ()
    common_overrides: tuple[str, ...] = ()
    # Intra-op threads for pretraining; None leaves torch's default.
    threads: int | None = None
    # Cross-validation folds per dataset (image2point.experiments.folds); a dataset not named keeps its
    # official splits, as every dataset of the paper scale does.
    folds: Mapping[str, int] = field(default_factory=dict)
    # Released checkpoints of the shared directory that the scale runs as rows of their own: source -> the
    # architecture its file is for (the rows on it are not comparable with the scale's backbone's rows).
    real_source_archs: Mapping[str, str] = field(default_factory=dict)
    # Overrides every run of a backbone needs on top of the dataset's (ESPNet-C reads a linear input layer).
    backbone_overrides: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def dataset(self, name: str) -> DatasetSetup:
        return self.datasets[name]


def _epochs(epochs: int) -> tuple[str, str]:
    """Train for ``epochs`` and evaluate once, at the end: tables report the final weights."""
    return f"train.epochs={epochs}", f"train.eval_every={epochs}"


SMALL_SETUP = ScaleSetup(
    name=SMALL,
    description=("CPU-sized: ModelNet40 and SemanticKITTI samples of the shared directory, CIFAR-10 "
                 "ResNet-20 backbones with T/K, few epochs, one thread"),
    backbone="cifar_resnet20",
    depth_backbones=("cifar_resnet20", "cifar_resnet32", "cifar_resnet56"),
    classification_source="cifar10",
    # Real images, each pixel a point: MNIST is the image set a CPU pretrains PointNet++ on in minutes.
    pointnet2_source="mnist",
    datasets={
        MODELNET40: DatasetSetup(
            MODELNET40, "configs/demo/modelnet40_sample.yaml",
            ("data.num_points=1024", "data.batch_size=16", *_epochs(SMALL_MODELNET40_EPOCHS)),
            "data/modelnet40_normal_resampled", CLASSIFICATION_METRIC),
        S3DIS: DatasetSetup(
            S3DIS, "configs/s3dis/resnet18_io.yaml",
            # One process at batch 1, not the recipe's 2 x 3: no batch check.
            ("data.voxel_size=0.1", "data.batch_size=1", "data.effective_batch_size=null", "optim.lr=0.05",
             "schedule.name=cosine", *_epochs(SMALL_S3DIS_EPOCHS)),
            None, SEGMENTATION_METRIC),
        SEMANTICKITTI: DatasetSetup(
            SEMANTICKITTI, "configs/demo/semantickitti_sample.yaml",
            ("data.voxel_size=0.3", "data.train_scans=[00/000000,00/000001]", "data.eval_scans=[00/000002]",
             *_epochs(SMALL_SEMANTICKITTI_EPOCHS)),
            "data/semantickitti", SEGMENTATION_METRIC),
    },
    family_overrides={
        "pointnet2": {MODELNET40: ("model.family=pointnet2", "model.backbone=pointnet2_ssg", "data.num_points=512",
                                   "data.batch_size=8", "optim.name=adam", "optim.lr=0.001",
                                   *_epochs(SMALL_POINTNET2_EPOCHS))},
        "range": {SEMANTICKITTI: ("model.family=range", "model.backbone=hrnet_w18", "data.range_image.width=512",
                                  *_epochs(SMALL_RANGE_EPOCHS))},
    },
    voxel_overrides=("model.normalize_t=true",),
    common_overrides=("data.num_workers=0", "train.threads=1"),
    threads=1,
    # Every sample shape tested once per seed (127 shapes: 25-26 per fold, about 101 train), and
    # leave-one-scan-out on the three SemanticKITTI scans: see image2point/data/folds.py.
    folds={MODELNET40: SMALL_MODELNET40_FOLDS, SEMANTICKITTI: SMALL_SEMANTICKITTI_FOLDS},
    # The ImageNet-1k MobileNetV1 x0.25 and the Cityscapes ESPNet-C encoder of ../shared/weights
    # (image2point.experiments.sources): Table 4's ImageNet row and Table 5's Cityscapes row.
    real_source_archs={"imagenet": SMALL_IMAGENET_ARCH, "cityscapes": SMALL_CITYSCAPES_ARCH},
    # ESPNet-C reads the image at every level: its input layer is linear, as the demo recipe
    # configs/demo/semantickitti_espnet_c_sample.yaml and docs/any-convnet.md say.
    backbone_overrides={SMALL_CITYSCAPES_ARCH: ("model.input_layer=linear",)},
)

PAPER_SETUP = ScaleSetup(
    name=PAPER,
    description=("the paper's recipes: its backbones (ResNet-18, -50, -152) and sources, full datasets, the paper's "
                 "epochs and trials (GPUs)"),
    backbone="resnet18",
    depth_backbones=("resnet18", "resnet50", "resnet152"),
    classification_source="imagenet",
    # The paper pretrains PointNet++ on Tiny-ImageNet, each pixel a point (Section 4.2, appendix 6.1).
    pointnet2_source="tiny-imagenet",
    datasets={
        name: DatasetSetup(name, f"configs/{name}/resnet18_io.yaml", (), None, metric)
        for name, metric in ((MODELNET40, CLASSIFICATION_METRIC), (S3DIS, SEGMENTATION_METRIC),
                             (SEMANTICKITTI, SEGMENTATION_METRIC))
    },
    family_overrides={
        # The paper's PointNet++ finetuning (Appendix 6.1, detail of Section 4.2: Adam 1e-3, batch 32, 200
        # epochs) from PointNet++'s 1024 points; as configs/modelnet40/pointnet2_ssg_*.yaml.
        "pointnet2": {MODELNET40: ("model.family=pointnet2", "model.backbone=pointnet2_ssg", "data.num_points=1024",
                                   "data.batch_size=32", "optim.name=adam", "optim.lr=0.001", "train.epochs=200")},
        # The paper's HRNetV2-W48 (Table 2; appendix 6.1: the Cityscapes HRNet of the official code).
        "range": {SEMANTICKITTI: ("model.family=range", "model.backbone=hrnet_w48")},
    },
)

SCALE_SETUPS = {SMALL: SMALL_SETUP, PAPER: PAPER_SETUP}


def scale_setup(scale: str) -> ScaleSetup:
    if scale not in SCALE_SETUPS:
        raise ConfigError(f"unknown scale {scale!r}; choose one of {', '.join(SCALES)}")
    return SCALE_SETUPS[scale]
