"""Table 5: segmentation vs classification pretraining for 3D segmentation."""

from __future__ import annotations

from collections.abc import Sequence

from image2point.experiments.paper_numbers import IO_BN, PAIRS_5, SCRATCH
from image2point.experiments.scales import PAPER, S3DIS, SEGMENTATION_METRIC, SEMANTICKITTI, SMALL, SMALL_SETUP
from image2point.experiments.specs import RunSpec, TableLayout, TableSpec, register_table
from image2point.experiments.table_cells import COLUMN_OF, voxel_run
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

SMALL_ROWS = (("classification: CIFAR-10", "cifar10"), ("classification: ImageNet", "imagenet"),
              ("segmentation: Cityscapes", "cityscapes"))
SMALL_DATASETS = (S3DIS, SEMANTICKITTI)
SMALL_SCHEME = "io_bn"
# The real Cityscapes checkpoint at small scale is an ESPNet-C encoder: its row runs on that network on
# SemanticKITTI (the paper's pairing), beside the same network from scratch by the same recipe (no ImageNet
# ESPNet-C exists to pair it with).
SMALL_CITYSCAPES_SOURCE = "cityscapes"
SMALL_CITYSCAPES_ARCH = SMALL_SETUP.real_source_archs[SMALL_CITYSCAPES_SOURCE]
SMALL_CITYSCAPES_ROW = "segmentation: Cityscapes · ESPNet-C"
SMALL_SCRATCH_ROW = "from scratch · ESPNet-C"
# The paper's pairings: (source, target dataset) per column; ResNet-18 encoders throughout.
PAPER_PAIRS = dict(zip(PAIRS_5, (("imagenet", SEMANTICKITTI), ("cityscapes", SEMANTICKITTI), ("imagenet", S3DIS),
                                 ("ade20k", S3DIS)), strict=True))
PAPER_ROWS = (*(row for row, _ in PAPER_SCHEMES), SCRATCH)
# One from-scratch set per target dataset, shown under both of its columns.
SCRATCH_OWNERS = {SEMANTICKITTI: (SCRATCH, PAIRS_5[0]), S3DIS: (SCRATCH, PAIRS_5[2])}
# Small cells standing for a paper cell: (row, dataset column) -> the paper's pairing column (scheme io_bn).
SMALL_TO_PAPER = {("classification: ImageNet", "SemanticKITTI"): PAIRS_5[0],
                  ("segmentation: Cityscapes", "SemanticKITTI"): PAIRS_5[1],
                  ("classification: ImageNet", "S3DIS"): PAIRS_5[2]}


def _small_runs(seeds: Sequence[int]) -> list[RunSpec]:
    runs = [voxel_run("table5", row, COLUMN_OF[dataset], seed, SMALL, dataset, SMALL_SCHEME, source=source,
                      extra=(f"finetune.scheme={SMALL_SCHEME}",))
            for dataset in SMALL_DATASETS for row, source in SMALL_ROWS for seed in seeds]
    return runs + _small_cityscapes_runs(seeds)


def _small_cityscapes_runs(seeds: Sequence[int]) -> list[RunSpec]:
    """The ESPNet-C rows: the Cityscapes encoder (I,O,µ,σ,W,b) and from scratch, on both targets as every row
    (S3DIS has no data unless given); the architecture is in the run id, apart from the ResNet-20 runs."""
    arch = SMALL_CITYSCAPES_ARCH
    needs = SMALL_SETUP.backbone_overrides.get(arch, ())
    return [voxel_run("table5", row, COLUMN_OF[dataset], seed, SMALL, dataset, f"{arch}-{scheme}", source=source,
                      arch=arch, extra=(*needs, f"finetune.scheme={scheme}"))
            for dataset in SMALL_DATASETS
            for row, source, scheme in ((SMALL_CITYSCAPES_ROW, SMALL_CITYSCAPES_SOURCE, SMALL_SCHEME),
                                        (SMALL_SCRATCH_ROW, None, "scratch"))
            for seed in seeds]


def _paper_runs(seeds: Sequence[int]) -> list[RunSpec]:
    runs = []
    for seed in seeds:
        for column, (source, dataset) in PAPER_PAIRS.items():
            for row, scheme in PAPER_SCHEMES:
                runs.append(voxel_run("table5", row, column, seed, PAPER, dataset, scheme, source=source,
                                       extra=(f"finetune.scheme={scheme}",)))
        for dataset, owner in SCRATCH_OWNERS.items():
            runs.append(voxel_run("table5", *owner, seed, PAPER, dataset, "scratch", source=None,
                                   extra=("finetune.scheme=scratch",)))
    return runs


def _table5_runs(scale: str, seeds: Sequence[int]) -> list[RunSpec]:
    return _small_runs(seeds) if scale == SMALL else _paper_runs(seeds)


def _small_layout() -> TableLayout:
    resnet_rows = tuple(row for row, _ in SMALL_ROWS)
    columns = tuple(COLUMN_OF[name] for name in SMALL_DATASETS)
    paper = place(5, ((cell, (IO_BN, column)) for cell, column in SMALL_TO_PAPER.items()))
    missing = gaps(((row, column) for row in resnet_rows for column in columns
                    if (row, column) not in SMALL_TO_PAPER),
                   NOT_THIS_SOURCE + " and target (it pairs ImageNet-1K and ADE20K with S3DIS, ImageNet-1K and "
                                     "Cityscapes with SemanticKITTI)")
    kitti, s3dis = COLUMN_OF[SEMANTICKITTI], COLUMN_OF[S3DIS]
    paper |= place(5, (((SMALL_CITYSCAPES_ROW, kitti), (IO_BN, PAIRS_5[1])),
                       ((SMALL_SCRATCH_ROW, kitti), (SCRATCH, PAIRS_5[1])),
                       ((SMALL_SCRATCH_ROW, s3dis), (SCRATCH, PAIRS_5[2]))))
    missing[(SMALL_CITYSCAPES_ROW, s3dis)] = NOT_THIS_SOURCE + " and target (it pairs Cityscapes with SemanticKITTI)"
    rows = (*resnet_rows, SMALL_CITYSCAPES_ROW, SMALL_SCRATCH_ROW)
    return TableLayout(rows, columns, dict.fromkeys(columns, SEGMENTATION_METRIC), paper, missing)


def _paper_layout() -> TableLayout:
    shared = {(SCRATCH, PAIRS_5[1]): SCRATCH_OWNERS[SEMANTICKITTI], (SCRATCH, PAIRS_5[3]): SCRATCH_OWNERS[S3DIS]}
    return TableLayout(PAPER_ROWS, PAIRS_5, dict.fromkeys(PAIRS_5, SEGMENTATION_METRIC),
                       place_same_labels(5, PAPER_ROWS, PAIRS_5), same_runs_as=shared)


@register_table
def table5() -> TableSpec:
    return TableSpec(
        name="table5",
        title="Segmentation vs classification pretraining",
        question=("For 3D segmentation, is a 2D segmentation-pretrained backbone a better start than a classification "
                  "one?"),
        layouts={SMALL: _small_layout(), PAPER: _paper_layout()},
        expand=_table5_runs,
        paper_table=5,
        notes=(HEADLINE_NOTE, moderate_note(5)),
        scale_notes={SMALL: ("small scale: scheme I,O,µ,σ,W,b only. No segmentation-pretrained ResNet is available "
                             "locally: pass one with --weights cityscapes=PATH (a backbone state dict with the 2D "
                             "model's key names).", SMALL_BACKBONE_NOTE,
                             f"small scale networks: the 'classification' rows and 'segmentation: Cityscapes' are the "
                             f"CIFAR ResNet-20; rows '{SMALL_CITYSCAPES_ROW}' and '{SMALL_SCRATCH_ROW}' are the ESPNet-C "
                             f"encoder (p = 2, q = 8; the Cityscapes checkpoint of ../shared/weights; linear input "
                             f"layer, U-Net decoder); from scratch: the same network and recipe, "
                             f"scheme scratch (no ImageNet ESPNet-C exists). Compare rows on the same network only: "
                             f"rows on different networks are not comparable with each other."),
                     PAPER: ("paper scale: ResNet-18 encoders (Section 4.6: only the encoder is loaded) from "
                             "ImageNet-1K (--weights imagenet=PATH), Cityscapes (--weights cityscapes=PATH) and ADE20K "
                             "(--weights ade20k=PATH); Cityscapes and ImageNet-1K to SemanticKITTI, ADE20K and "
                             "ImageNet-1K to S3DIS, four schemes each; one from-scratch set per target, shown under "
                             "both of its columns.",)},
    )
