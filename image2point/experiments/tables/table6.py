"""Table 6: do deeper image-pretrained backbones transfer better?"""

from __future__ import annotations

from collections.abc import Sequence

from image2point.experiments.paper_numbers import DEPTHS, SCRATCH
from image2point.experiments.scales import CLASSIFICATION_METRIC, MODELNET40, PAPER, SMALL, scale_setup
from image2point.experiments.specs import RunSpec, TableLayout, TableSpec, register_table
from image2point.experiments.table_cells import voxel_run
from image2point.experiments.tables.common import (
    HEADLINE_NOTE,
    PAPER_SCHEMES,
    SMALL_BACKBONE_NOTE,
    moderate_note,
    place,
    place_same_labels,
)

DEPTH_LABELS = {"resnet18": "ResNet-18", "resnet50": "ResNet-50", "resnet152": "ResNet-152",
                "cifar_resnet20": "ResNet-20 (CIFAR-10)", "cifar_resnet32": "ResNet-32 (CIFAR-10)",
                "cifar_resnet56": "ResNet-56 (CIFAR-10)"}
PAPER_ROWS = (*(row for row, _ in PAPER_SCHEMES), SCRATCH)
# Small scale: the schemes the paper's depth findings are about (I,O falls with depth, µ,σ recover it, and
# I,O,µ,σ,W,b evens the depths out); the whole network and scratch rows are paper scale only.
SMALL_SCHEMES = PAPER_SCHEMES[:3]


def _small_columns() -> tuple[str, ...]:
    return tuple(DEPTH_LABELS[arch] for arch in scale_setup(SMALL).depth_backbones)


def _small_runs(seeds: Sequence[int]) -> list[RunSpec]:
    setup = scale_setup(SMALL)
    return [voxel_run("table6", row, DEPTH_LABELS[arch], seed, SMALL, MODELNET40, f"{arch}-{scheme}",
                      source=setup.classification_source, arch=arch, extra=(f"finetune.scheme={scheme}",))
            for row, scheme in SMALL_SCHEMES for arch in setup.depth_backbones for seed in seeds]


def _paper_runs(seeds: Sequence[int]) -> list[RunSpec]:
    setup = scale_setup(PAPER)
    runs = []
    for seed in seeds:
        for arch in setup.depth_backbones:
            column = DEPTH_LABELS[arch]
            for row, scheme in (*PAPER_SCHEMES, (SCRATCH, "scratch")):
                source = None if scheme == "scratch" else setup.classification_source
                runs.append(voxel_run("table6", row, column, seed, PAPER, MODELNET40, f"{arch}-{scheme}",
                                       source=source, arch=arch, extra=(f"finetune.scheme={scheme}",)))
    return runs


def _table6_runs(scale: str, seeds: Sequence[int]) -> list[RunSpec]:
    return _small_runs(seeds) if scale == SMALL else _paper_runs(seeds)


def _small_layout() -> TableLayout:
    """Small: the paper's layout on ModelNet40, ResNet-20/32/56 standing in for ResNet-18/50/152 (columns)."""
    rows, columns = tuple(row for row, _ in SMALL_SCHEMES), _small_columns()
    paper = place(6, (((row, column), (row, depth)) for row in rows
                      for column, depth in zip(columns, DEPTHS, strict=True)))
    return TableLayout(rows, columns, dict.fromkeys(columns, CLASSIFICATION_METRIC), paper)


def _paper_layout() -> TableLayout:
    return TableLayout(PAPER_ROWS, DEPTHS, dict.fromkeys(DEPTHS, CLASSIFICATION_METRIC),
                       place_same_labels(6, PAPER_ROWS, DEPTHS))


@register_table
def table6() -> TableSpec:
    return TableSpec(
        name="table6",
        title="Backbone depth",
        question="Do deeper image-pretrained backbones transfer better to point clouds?",
        layouts={SMALL: _small_layout(), PAPER: _paper_layout()},
        expand=_table6_runs,
        paper_table=6,
        notes=(HEADLINE_NOTE, moderate_note(6)),
        scale_notes={SMALL: ("small scale: ModelNet40 only, as the paper; schemes I,O, I,O,µ,σ and I,O,µ,σ,W,b "
                             "(the whole network and scratch rows run at paper scale); CIFAR-10 ResNet-20/32/56 from "
                             "../shared/weights stand in for the paper's ImageNet ResNet-18/50/152.",
                             SMALL_BACKBONE_NOTE),
                     PAPER: ("paper scale: ImageNet-1K ResNet-18, -50 and -152 (--weights imagenet=PATH, --weights "
                             "imagenet:resnet50=PATH, --weights imagenet:resnet152=PATH) on ModelNet40, four schemes "
                             "each, and each trained from scratch.",)},
    )
