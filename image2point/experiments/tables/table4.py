"""Table 4: which 2D pretraining data (scale and type) makes an inflated ResNet useful in 3D."""

from __future__ import annotations

from collections.abc import Sequence

from image2point.experiments.paper_numbers import SCRATCH, SOURCES_4
from image2point.experiments.scales import CLASSIFICATION_METRIC, MODELNET40, PAPER, SMALL, SMALL_SETUP
from image2point.experiments.sources import SOURCES
from image2point.experiments.specs import RunSpec, TableLayout, TableSpec, register_table
from image2point.experiments.table_cells import voxel_run
from image2point.experiments.tables.common import (
    HEADLINE_NOTE,
    NOT_THIS_SOURCE,
    PAPER_SCHEMES,
    SMALL_BACKBONE_NOTE,
    gaps,
    moderate_note,
    place,
    place_same_labels,
)

SMALL_SOURCES = (("ImageNet", "imagenet"), ("CIFAR-10", "cifar10"), ("Tiny-ImageNet", "tiny-imagenet"),
                 ("MNIST", "mnist"), ("FractalDB", "fractaldb"), ("random, frozen", "random"))
# The paper's four columns of schemes (its rows; the layouts are transposed), each on ModelNet40.
SMALL_SCHEMES = tuple(scheme for _, scheme in PAPER_SCHEMES)
SMALL_COLUMNS = tuple(f"ModelNet40 · {row}" for row, _ in PAPER_SCHEMES)
# The real ImageNet-1k checkpoint at small scale is a MobileNetV1 x0.25: its rows run on that network, the
# pretrained one and one trained from scratch by the same recipe (one set, shown under every column).
SMALL_IMAGENET_SOURCE = "imagenet"
SMALL_IMAGENET_ARCH = SMALL_SETUP.real_source_archs[SMALL_IMAGENET_SOURCE]
SMALL_IMAGENET_ROW = "ImageNet-1K · MobileNetV1 ×0.25"
SMALL_SCRATCH_ROW = "from scratch · MobileNetV1 ×0.25"
SMALL_SCRATCH_OWNER = (SMALL_SCRATCH_ROW, SMALL_COLUMNS[0])
# Small rows and columns that stand for a paper column and row (the layouts are transposed).
SMALL_SOURCE_TO_PAPER = {"ImageNet": "ImageNet-1K", "Tiny-ImageNet": "Tiny-ImageNet"}
SMALL_COLUMN_TO_PAPER = dict(zip(SMALL_COLUMNS, (row for row, _ in PAPER_SCHEMES), strict=True))
PAPER_SOURCES = dict(zip(SOURCES_4, ("tiny-imagenet", "imagenet", "imagenet21k", "fractaldb-1k", "fractaldb-10k"),
                         strict=True))
PAPER_ARCH = "resnet50"
PAPER_ROWS = (*(row for row, _ in PAPER_SCHEMES), SCRATCH)
# The from-scratch runs do not depend on the source: one set, shown under every column.
SCRATCH_OWNER = (SCRATCH, SOURCES_4[0])


def _small_runs(seeds: Sequence[int]) -> list[RunSpec]:
    runs = []
    for row, source in SMALL_SOURCES:
        for scheme, column in zip(SMALL_SCHEMES, SMALL_COLUMNS, strict=True):
            for seed in seeds:
                runs.append(voxel_run("table4", row, column, seed, SMALL, MODELNET40, scheme, source=source,
                                       extra=(f"finetune.scheme={scheme}",)))
    return runs + _small_imagenet_runs(seeds)


def _small_imagenet_runs(seeds: Sequence[int]) -> list[RunSpec]:
    """The MobileNetV1 rows: ImageNet-1k weights under each scheme, and from scratch; the architecture is in
    the run id, apart from the ResNet-20 runs."""
    arch = SMALL_IMAGENET_ARCH
    runs = [voxel_run("table4", SMALL_IMAGENET_ROW, column, seed, SMALL, MODELNET40, f"{arch}-{scheme}",
                      source=SMALL_IMAGENET_SOURCE, arch=arch, extra=(f"finetune.scheme={scheme}",))
            for scheme, column in zip(SMALL_SCHEMES, SMALL_COLUMNS, strict=True) for seed in seeds]
    runs += [voxel_run("table4", *SMALL_SCRATCH_OWNER, seed, SMALL, MODELNET40, f"{arch}-scratch", source=None,
                       arch=arch, extra=("finetune.scheme=scratch",)) for seed in seeds]
    return runs


def _paper_runs(seeds: Sequence[int]) -> list[RunSpec]:
    runs = []
    for seed in seeds:
        for column, source in PAPER_SOURCES.items():
            for row, scheme in PAPER_SCHEMES:
                runs.append(voxel_run("table4", row, column, seed, PAPER, MODELNET40, scheme, source=source,
                                       arch=PAPER_ARCH, extra=(f"finetune.scheme={scheme}",)))
        runs.append(voxel_run("table4", *SCRATCH_OWNER, seed, PAPER, MODELNET40, "scratch", source=None,
                               arch=PAPER_ARCH, extra=("finetune.scheme=scratch",)))
    return runs


def _table4_runs(scale: str, seeds: Sequence[int]) -> list[RunSpec]:
    return _small_runs(seeds) if scale == SMALL else _paper_runs(seeds)


def _small_layout() -> TableLayout:
    rows = (*(row for row, _ in SMALL_SOURCES), SMALL_IMAGENET_ROW, SMALL_SCRATCH_ROW)
    paper = place(4, (((row, column), (SMALL_COLUMN_TO_PAPER[column], SMALL_SOURCE_TO_PAPER[row]))
                      for row in SMALL_SOURCE_TO_PAPER for column in SMALL_COLUMNS))
    paper |= place(4, (((row, column), theirs) for column in SMALL_COLUMNS for row, theirs in (
        (SMALL_IMAGENET_ROW, (SMALL_COLUMN_TO_PAPER[column], "ImageNet-1K")),
        (SMALL_SCRATCH_ROW, (SCRATCH, "ImageNet-1K")))))
    shared = {(SMALL_SCRATCH_ROW, column): SMALL_SCRATCH_OWNER for column in SMALL_COLUMNS[1:]}
    missing = gaps(((row, column) for row in rows if row not in SMALL_SOURCE_TO_PAPER for column in SMALL_COLUMNS),
                   NOT_THIS_SOURCE)
    missing |= gaps((("FractalDB", column) for column in SMALL_COLUMNS),
                    "the paper's FractalDB-1K / -10K (1,000 / 10,000 categories) are other datasets than this "
                    "10-category one")
    return TableLayout(rows, SMALL_COLUMNS, dict.fromkeys(SMALL_COLUMNS, CLASSIFICATION_METRIC), paper, missing,
                       same_runs_as=shared)


def _paper_layout() -> TableLayout:
    shared = {(SCRATCH, column): SCRATCH_OWNER for column in SOURCES_4[1:]}
    return TableLayout(PAPER_ROWS, SOURCES_4, dict.fromkeys(SOURCES_4, CLASSIFICATION_METRIC),
                       place_same_labels(4, PAPER_ROWS, SOURCES_4), same_runs_as=shared)


def _small_epochs(source: str) -> int:
    return SOURCES[source].settings[SMALL].epochs


@register_table
def table4() -> TableSpec:
    return TableSpec(
        name="table4",
        title="Pretraining dataset: scale and type",
        question=("Which 2D pretraining data makes a frozen backbone useful in 3D: natural images of growing scale, "
                  "synthetic fractals, or (small scale) digits or none (a random frozen backbone)?"),
        layouts={SMALL: _small_layout(), PAPER: _paper_layout()},
        expand=_table4_runs,
        paper_table=4,
        notes=(HEADLINE_NOTE, moderate_note(4),
               "The paper reports that FractalDB pretraining beats ImageNet when only I,O are trained, and that "
               "updating µ,σ costs FractalDB up to 13 points.",
               "Sources pretrained by the experiment itself are made once, into <out>/pretrained/<source>-<arch>/ "
               "(seed 0), and shared by every run and table."),
        scale_notes={SMALL: ("small scale pretraining (CIFAR ResNet-20, 32x32): Tiny-ImageNet sample (10k images, "
                             f"200 classes, {_small_epochs('tiny-imagenet')} epochs), MNIST test digits (9k train, "
                             f"{_small_epochs('mnist')} epochs), FractalDB generated (10 categories x 48 images, "
                             f"{_small_epochs('fractaldb')} epochs); CIFAR-10 is the 50k-image ../shared checkpoint.",
                             SMALL_BACKBONE_NOTE,
                             f"small scale networks: rows 'ImageNet' to 'random, frozen' are the CIFAR ResNet-20; rows "
                             f"'{SMALL_IMAGENET_ROW}' and '{SMALL_SCRATCH_ROW}' are MobileNetV1 x0.25 (the ImageNet-1k "
                             f"checkpoint of ../shared/weights, 46.75 % top-1; from scratch: the same network and recipe, "
                             f"scheme scratch, one set shown under every column). Compare rows on the same network only: "
                             f"rows on different networks are not comparable with each other.",
                             "small scale: under 'whole network' the random backbone is not frozen: that cell is the "
                             "ResNet-20 trained from scratch (its random initialisation, every weight trained)."),
                     PAPER: ("paper scale: ResNet-50 on ModelNet40. Tiny-ImageNet: pretrained here on the full set "
                             "(--data-root tiny-imagenet=PATH; ../shared holds a 10k-image sample only); ImageNet-1K "
                             "and ImageNet-21K: checkpoints given with --weights imagenet:resnet50=PATH and "
                             "--weights imagenet21k:resnet50=PATH; FractalDB-1K / -10K: generated and pretrained "
                             "here at the FractalDB paper's generator settings (see the sources of the dry run).",
                             "paper scale: the from-scratch row is one set of runs, shown under every column; the "
                             "paper prints it once per group of columns (natural images, fractals).")},
    )
