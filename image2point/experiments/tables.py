"""The paper's seven tables as grids of runs (Xu et al., "Image2Point", ECCV 2022).

Transcribed paper numbers: Table 1's I,O and I,O,µ,σ,W,b (ResNet-18 from ImageNet), and in Table 7 the
default T (Table 1's I,O,µ,σ) and the learned T rows on ModelNet40; every other paper cell is shown as
"n/t" (not transcribed).
"""

from __future__ import annotations

from collections.abc import Sequence

from image2point.experiments.scales import (
    CLASSIFICATION_METRIC,
    MODELNET40,
    PAPER,
    S3DIS,
    SEGMENTATION_METRIC,
    SEMANTICKITTI,
    SMALL,
    scale_setup,
)
from image2point.experiments.specs import RunSpec, TableLayout, TableSpec, register_table
from image2point.experiments.table_cells import (
    COLUMN_OF,
    DATASET_COLUMNS,
    DATASET_METRICS,
    dataset_layout,
    family_run,
    voxel_run,
)

SCHEME_LABELS = {"io": "I,O", "io_stats": "I,O,µ,σ", "io_bn": "I,O,µ,σ,W,b", "all": "all", "scratch": "scratch",
                 "t": "I,O,µ,σ,T"}
SMALL_BACKBONE_NOTE = ("small scale: CIFAR-10 ResNet-20 (../shared/weights) inflated with T/K on the ModelNet40 "
                       "sample (94 train / 33 test shapes, 1024 points, 8 epochs) and the SemanticKITTI sample (scans "
                       "00/000000-1 train, 00/000002 evaluates, 0.3 m voxels, 12 epochs); S3DIS is not in "
                       "../shared. Paper numbers (ResNet-18, ImageNet, full data) are beside ours for orientation "
                       "only.")
HEADLINE_NOTE = "Our numbers: metric of the final epoch's weights on the test split (no selection on it), in percent."


# ---------------------------------------------------------------------------------------------------
# Table 1: finetuning schemes.

TABLE1_ROWS = (("I,O", "io"), ("I,O,µ,σ", "io_stats"), ("I,O,µ,σ,W,b", "io_bn"), ("all", "all"),
               ("scratch", "scratch"), ("linear I/O", "linear_io"), ("linear network", "linear_net"))
LINEAR_LAYERS = ("model.input_layer=linear", "model.head=linear")


def _table1_runs(scale: str, seeds: Sequence[int]) -> list[RunSpec]:
    source = scale_setup(scale).classification_source
    runs = []
    for dataset in DATASET_COLUMNS:
        for row, variant in TABLE1_ROWS:
            for seed in seeds:
                column = COLUMN_OF[dataset]
                if variant == "linear_io":
                    runs.append(voxel_run("table1", row, column, seed, scale, dataset, variant, source=source,
                                           extra=(*LINEAR_LAYERS, "finetune.scheme=io")))
                elif variant == "linear_net":
                    runs.append(voxel_run("table1", row, column, seed, scale, dataset, variant, source=None,
                                           arch="none", extra=(*LINEAR_LAYERS, "finetune.scheme=io")))
                elif variant == "scratch":
                    runs.append(voxel_run("table1", row, column, seed, scale, dataset, variant, source=None,
                                           extra=("finetune.scheme=scratch",)))
                else:
                    runs.append(voxel_run("table1", row, column, seed, scale, dataset, variant, source=source,
                                           extra=(f"finetune.scheme={variant}",)))
    return runs


@register_table
def table1() -> TableSpec:
    layout = dataset_layout([row for row, _ in TABLE1_ROWS])
    return TableSpec(
        name="table1",
        title="Finetuning schemes",
        question=("How much of an image-pretrained, inflated ConvNet must be finetuned on point clouds: only the "
                  "input and output layers (I,O), plus BN statistics (µ,σ), plus BN weight and bias (W,b), "
                  "everything, or nothing pretrained at all?"),
        layouts={SMALL: layout, PAPER: layout},
        expand=_table1_runs,
        paper={("I,O", "ModelNet40"): 78.69, ("I,O", "S3DIS"): 53.54, ("I,O", "SemanticKITTI"): 55.78,
               ("I,O,µ,σ,W,b", "ModelNet40"): 88.09, ("I,O,µ,σ,W,b", "S3DIS"): 55.22,
               ("I,O,µ,σ,W,b", "SemanticKITTI"): 58.76},
        notes=(HEADLINE_NOTE,
               "Paper numbers: ResNet-18 pretrained on ImageNet (the paper's Table 1); other paper cells n/t.",
               "linear I/O: one conv + BN in, FC + BN out, frozen pretrained backbone (scheme io); linear network: "
               "the same input and output layers with no backbone at all, all trained (paper Listing 1)."),
        scale_notes={SMALL: (SMALL_BACKBONE_NOTE,)},
    )


# ---------------------------------------------------------------------------------------------------
# Table 2: other model families.

TABLE2_ROWS = ("image-pretrained", "from scratch")
TABLE2_COLUMNS = ("PointNet++ · ModelNet40", "HRNet-W18 range images · SemanticKITTI")
# The paper's HRNet comes from Cityscapes segmentation.
HRNET_SOURCE = "cityscapes"


def _table2_runs(scale: str, seeds: Sequence[int]) -> list[RunSpec]:
    pointnet2_source = scale_setup(scale).pointnet2_source
    runs = []
    for seed in seeds:
        for row, pretrained in zip(TABLE2_ROWS, (True, False), strict=True):
            runs.append(family_run("table2", row, TABLE2_COLUMNS[0], seed, scale, MODELNET40, "pointnet2",
                                    "pointnet2_ssg", source=pointnet2_source if pretrained else None))
            runs.append(family_run("table2", row, TABLE2_COLUMNS[1], seed, scale, SEMANTICKITTI, "range",
                                    "hrnet_w18", source=HRNET_SOURCE if pretrained else None))
    return runs


@register_table
def table2() -> TableSpec:
    layout = TableLayout(TABLE2_ROWS, TABLE2_COLUMNS,
                         {TABLE2_COLUMNS[0]: CLASSIFICATION_METRIC, TABLE2_COLUMNS[1]: SEGMENTATION_METRIC})
    return TableSpec(
        name="table2",
        title="Other model families: PointNet++ on points, HRNet on range images",
        question=("Does image pretraining also help networks that are not voxel ConvNets: PointNet++ pretrained on "
                  "images with each pixel a point, and a 2D HRNet-W18 on LiDAR range images?"),
        layouts={SMALL: layout, PAPER: layout},
        expand=_table2_runs,
        notes=(HEADLINE_NOTE,
               "Every weight trains in both rows (finetune.scheme=all); the rows differ only in the initial weights.",
               "HRNet-W18 needs Cityscapes HRNet weights (--weights cityscapes:hrnet_w18=PATH)."),
        scale_notes={
            SMALL: ("small scale: PointNet++ pretrained here on MNIST digits at 16x16 pixels (each pixel a point, "
                    "one epoch), finetuned 6 epochs on 512 points (Adam 1e-3, batch 8): an epoch of the ModelNet40 "
                    "sample costs PointNet++ about 17 s on one core. HRNet-W18: 64x512 range images, 12 epochs.",),
            PAPER: ("paper scale: PointNet++ from an ImageNet pixel-pretrained checkpoint "
                    "(--weights imagenet:pointnet2_ssg=PATH) with PointNet++'s own ModelNet40 recipe.",),
        },
    )


# ---------------------------------------------------------------------------------------------------
# Table 3: data efficiency.

TABLE3_ROWS = (("image-pretrained, I,O,µ,σ,W,b", "io_bn"), ("from scratch", "scratch"))
PAPER_FRACTIONS = (("1 %", 0.01), ("5 %", 0.05), ("10 %", 0.10), ("100 %", 1.0))
# The ModelNet40 sample has 1-11 training shapes per class: 1, 5 and 10 % would all keep one shape per
# class, so the small scale keeps 1, 2 and 4 shapes per class (36, 53 and 77 of 94 shapes).
SMALL_PER_CLASS = (("1 / class", 1), ("2 / class", 2), ("4 / class", 4), ("100 %", None))


def _subset_overrides(scale: str, seed: int) -> list[tuple[str, str, tuple[str, ...]]]:
    """(column, id part, overrides) per subset; subsets are drawn with the run's seed."""
    subsets = []
    if scale == SMALL:
        for column, per_class in SMALL_PER_CLASS:
            extra = () if per_class is None else (f"data.per_class={per_class}", f"data.subset_seed={seed}")
            subsets.append((column, "all_data" if per_class is None else f"per_class{per_class}", extra))
    else:
        for column, fraction in PAPER_FRACTIONS:
            extra = () if fraction == 1.0 else (f"data.fraction={fraction}", f"data.subset_seed={seed}")
            subsets.append((column, f"frac{round(fraction * 100)}", extra))
    return subsets


def _table3_runs(scale: str, seeds: Sequence[int]) -> list[RunSpec]:
    source = scale_setup(scale).classification_source
    runs = []
    for row, scheme in TABLE3_ROWS:
        for seed in seeds:
            for column, part, extra in _subset_overrides(scale, seed):
                pretrained = scheme != "scratch"
                runs.append(voxel_run("table3", row, column, seed, scale, MODELNET40, f"{scheme}-{part}",
                                       source=source if pretrained else None,
                                       extra=(*extra, f"finetune.scheme={scheme}")))
    return runs


@register_table
def table3() -> TableSpec:
    rows = tuple(row for row, _ in TABLE3_ROWS)
    small_columns = tuple(column for column, _ in SMALL_PER_CLASS)
    paper_columns = tuple(column for column, _ in PAPER_FRACTIONS)
    return TableSpec(
        name="table3",
        title="Data efficiency",
        question="Does image pretraining help more when little labelled 3D data is available?",
        layouts={SMALL: TableLayout(rows, small_columns, dict.fromkeys(small_columns, CLASSIFICATION_METRIC)),
                 PAPER: TableLayout(rows, paper_columns, dict.fromkeys(paper_columns, CLASSIFICATION_METRIC))},
        expand=_table3_runs,
        notes=(HEADLINE_NOTE,
               "ModelNet40; subsets are stratified per class and drawn with the run's seed (data.subset_seed), "
               "so the spread includes which shapes were kept."),
        scale_notes={SMALL: ("small scale: the sample has 1-11 training shapes per class, so 1, 5 and 10 % would "
                             "all keep one shape per class (a class keeps at least one); the columns keep 1, 2 and "
                             "4 shapes per class instead (data.per_class: 36, 53 and 77 of 94 shapes).",
                             SMALL_BACKBONE_NOTE)},
    )


# ---------------------------------------------------------------------------------------------------
# Table 4: pretraining data.

TABLE4_SOURCES = (("ImageNet", "imagenet"), ("CIFAR-10", "cifar10"), ("Tiny-ImageNet", "tiny-imagenet"),
                  ("MNIST", "mnist"), ("FractalDB", "fractaldb"), ("random, frozen", "random"))
TABLE4_SCHEMES = ("io", "io_bn")


def _table4_runs(scale: str, seeds: Sequence[int]) -> list[RunSpec]:
    runs = []
    for row, source in TABLE4_SOURCES:
        for scheme in TABLE4_SCHEMES:
            for seed in seeds:
                runs.append(voxel_run("table4", row, f"ModelNet40 · {SCHEME_LABELS[scheme]}", seed, scale,
                                       MODELNET40, scheme, source=source, extra=(f"finetune.scheme={scheme}",)))
    return runs


@register_table
def table4() -> TableSpec:
    columns = tuple(f"ModelNet40 · {SCHEME_LABELS[scheme]}" for scheme in TABLE4_SCHEMES)
    layout = TableLayout(tuple(row for row, _ in TABLE4_SOURCES), columns,
                         dict.fromkeys(columns, CLASSIFICATION_METRIC))
    return TableSpec(
        name="table4",
        title="Pretraining dataset: scale and type",
        question=("Which 2D pretraining data makes a frozen backbone useful in 3D: natural images of growing scale, "
                  "digits, synthetic fractals, or none (a random frozen backbone)?"),
        layouts={SMALL: layout, PAPER: layout},
        expand=_table4_runs,
        notes=(HEADLINE_NOTE,
               "The paper reports that FractalDB pretraining beats ImageNet when only I,O are trained.",
               "Tiny-ImageNet, MNIST and FractalDB are pretrained by the experiment itself, once, into "
               "<out>/pretrained/<source>-<arch>/ (seed 0) and shared by every run and table."),
        scale_notes={SMALL: ("small scale pretraining (CIFAR ResNet-20, 32x32): Tiny-ImageNet sample (10k images, "
                             "200 classes, 3 epochs), MNIST test digits (9k train, 2 epochs), FractalDB generated "
                             "(10 categories x 48 images, 15 epochs); CIFAR-10 is the 50k-image ../shared checkpoint.",
                             SMALL_BACKBONE_NOTE)},
    )


# ---------------------------------------------------------------------------------------------------
# Table 5: segmentation vs classification pretraining.

TABLE5_SMALL_ROWS = (("classification: CIFAR-10", "cifar10"), ("classification: ImageNet", "imagenet"),
                     ("segmentation: Cityscapes", "cityscapes"))
TABLE5_PAPER_ROWS = TABLE5_SMALL_ROWS[1:]
TABLE5_DATASETS = (S3DIS, SEMANTICKITTI)
TABLE5_SCHEME = "io_bn"


def _table5_rows(scale: str) -> tuple[tuple[str, str], ...]:
    return TABLE5_SMALL_ROWS if scale == SMALL else TABLE5_PAPER_ROWS


def _table5_runs(scale: str, seeds: Sequence[int]) -> list[RunSpec]:
    runs = []
    for dataset in TABLE5_DATASETS:
        for row, source in _table5_rows(scale):
            for seed in seeds:
                runs.append(voxel_run("table5", row, COLUMN_OF[dataset], seed, scale, dataset, TABLE5_SCHEME,
                                       source=source, extra=(f"finetune.scheme={TABLE5_SCHEME}",)))
    return runs


@register_table
def table5() -> TableSpec:
    columns = tuple(COLUMN_OF[name] for name in TABLE5_DATASETS)
    metrics = dict.fromkeys(columns, SEGMENTATION_METRIC)
    return TableSpec(
        name="table5",
        title="Segmentation vs classification pretraining",
        question=("For 3D segmentation, is a 2D segmentation-pretrained backbone a better start than a classification "
                  "one?"),
        layouts={SMALL: TableLayout(tuple(row for row, _ in TABLE5_SMALL_ROWS), columns, metrics),
                 PAPER: TableLayout(tuple(row for row, _ in TABLE5_PAPER_ROWS), columns, metrics)},
        expand=_table5_runs,
        notes=(HEADLINE_NOTE,
               "Scheme I,O,µ,σ,W,b. No segmentation-pretrained 2D checkpoint is available locally: pass one with "
               "--weights cityscapes=PATH (a backbone state dict with the 2D model's key names)."),
        scale_notes={SMALL: (SMALL_BACKBONE_NOTE,)},
    )


# ---------------------------------------------------------------------------------------------------
# Table 6: backbone depth.

DEPTH_LABELS = {"resnet18": "ResNet-18", "resnet50": "ResNet-50", "resnet152": "ResNet-152",
                "cifar_resnet20": "ResNet-20 (CIFAR-10)", "cifar_resnet32": "ResNet-32 (CIFAR-10)",
                "cifar_resnet56": "ResNet-56 (CIFAR-10)"}
TABLE6_SCHEME = "io_bn"


def _table6_runs(scale: str, seeds: Sequence[int]) -> list[RunSpec]:
    setup = scale_setup(scale)
    runs = []
    for dataset in DATASET_COLUMNS:
        for arch in setup.depth_backbones:
            for seed in seeds:
                runs.append(voxel_run("table6", DEPTH_LABELS[arch], COLUMN_OF[dataset], seed, scale, dataset,
                                       f"{arch}-{TABLE6_SCHEME}", source=setup.classification_source, arch=arch,
                                       extra=(f"finetune.scheme={TABLE6_SCHEME}",)))
    return runs


@register_table
def table6() -> TableSpec:
    return TableSpec(
        name="table6",
        title="Backbone depth",
        question="Do deeper image-pretrained backbones transfer better to point clouds?",
        layouts={scale: dataset_layout([DEPTH_LABELS[arch] for arch in scale_setup(scale).depth_backbones])
                 for scale in (SMALL, PAPER)},
        expand=_table6_runs,
        notes=(HEADLINE_NOTE, "Scheme I,O,µ,σ,W,b."),
        scale_notes={SMALL: ("small scale: CIFAR-10 ResNet-20/32/56 from ../shared/weights stand in for the paper's "
                             "ImageNet ResNet-18/50/152.", SMALL_BACKBONE_NOTE),
                     PAPER: ("paper scale: ImageNet checkpoints per depth (--weights imagenet:resnet50=PATH, ...).",)},
    )


# ---------------------------------------------------------------------------------------------------
# Table 7: filter transforms.

# The default T, then every other copy transform (image2point.inflate.transforms), labelled by the axis
# it copies along in our kernel axes; the authors' names where their code offers one.
HANDCRAFTED = (("default T (authors' z-axis)", "default"),
               ("copy_x (authors' x-axis)", "copy_x"),
               ("copy_z", "copy_z"),
               ("copy_x_transposed", "copy_x_transposed"),
               ("copy_y_transposed", "copy_y_transposed"),
               ("copy_z_transposed (authors' y-axis)", "copy_z_transposed"))
LEARNED = (("learned T, shared, default init", "shared", "default"),
           ("learned T, shared, random init", "shared", "random"),
           ("learned T, per conv, default init", "per_conv", "default"),
           ("learned T, per conv, random init", "per_conv", "random"))
TABLE7_DATASETS = (MODELNET40, SEMANTICKITTI)
HANDCRAFTED_SCHEME = "io_stats"
LEARNED_SCHEME = "t"


def _table7_runs(scale: str, seeds: Sequence[int]) -> list[RunSpec]:
    source = scale_setup(scale).classification_source
    runs = []
    for dataset in TABLE7_DATASETS:
        column = COLUMN_OF[dataset]
        for seed in seeds:
            for row, transform in HANDCRAFTED:
                runs.append(voxel_run("table7", row, column, seed, scale, dataset, f"{transform}-{HANDCRAFTED_SCHEME}",
                                       source=source, extra=(f"model.transform={transform}",
                                                             f"finetune.scheme={HANDCRAFTED_SCHEME}")))
            for row, sharing, init in LEARNED:
                runs.append(voxel_run("table7", row, column, seed, scale, dataset,
                                       f"learned_{sharing}_{init}-{LEARNED_SCHEME}", source=source,
                                       extra=(f"finetune.learnable_t={sharing}", f"finetune.t_init={init}",
                                              f"finetune.scheme={LEARNED_SCHEME}")))
    return runs


@register_table
def table7() -> TableSpec:
    columns = tuple(COLUMN_OF[name] for name in TABLE7_DATASETS)
    layout = TableLayout(tuple(row for row, _ in HANDCRAFTED) + tuple(row for row, *_ in LEARNED), columns,
                         {column: DATASET_METRICS[column] for column in columns})
    return TableSpec(
        name="table7",
        title="Filter transforms: handcrafted vs learned T",
        question=("Which filter transform T (2D kernel -> 3D kernel) transfers best: the default T, another copy of "
                  "the 2D kernel along some axis, or a learned T, shared by all convs or one per conv, initialised "
                  "from the default or at random?"),
        layouts={SMALL: layout, PAPER: layout},
        expand=_table7_runs,
        paper={("default T (authors' z-axis)", "ModelNet40"): 83.45,
               ("learned T, shared, default init", "ModelNet40"): 84.36,
               ("learned T, per conv, default init", "ModelNet40"): 87.24,
               ("learned T, shared, random init", "ModelNet40"): 84.40,
               ("learned T, per conv, random init", "ModelNet40"): 86.35},
        notes=(HEADLINE_NOTE,
               "Schemes: learned T rows train I,O and T with BN statistics updated (finetune.scheme=t); the "
               "handcrafted rows train I,O with BN statistics updated (io_stats), i.e. the same minus T, so each "
               "difference is T alone. (Under io_bn a learnable T would stay frozen.)",
               "Handcrafted rows: the default T (the authors' default, 'z-axis', which copies along our y) and the "
               "five other copies of the 2D kernel along one kernel axis with its rows and columns on the other "
               "two (copy_<axis>; _transposed: rows and columns swapped), named by our kernel axes, with the "
               "authors' names where their code has one.",
               "Paper numbers (ModelNet40, ResNet-18 from ImageNet, I,O,µ,σ): the default T from Table 1, the "
               "learned rows from Table 7. The paper's handcrafted T1, T2, T3 (Table 7: 82.21, 81.81, 82.25) copy "
               "along orientations it does not specify, and Figure 3 draws each beside the default, so they stand "
               "in no row here. The paper reports that a learnable, non-shared T beats the handcrafted ones."),
        scale_notes={SMALL: ("small scale: T (and its default init) divided by K (model.normalize_t=true); random "
                             "init has standard deviation 1/K.", SMALL_BACKBONE_NOTE)},
    )
