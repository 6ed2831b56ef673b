"""Table 2: image pretraining for other model families: PointNet++ on points, HRNet on range images.

At small scale no Cityscapes HRNet exists, so the projection-based claim is judged on the released Cityscapes
network that does: ESPNet-C (../shared/weights) on the same range images, pretrained against from scratch.
"""

from __future__ import annotations

from collections.abc import Sequence

from image2point.experiments.paper_numbers import HRNET_COLUMN, POINTNET2_COLUMN, SCRATCH, T_ROW, WHOLE
from image2point.experiments.scales import (
    CLASSIFICATION_METRIC,
    MODELNET40,
    PAPER,
    SEGMENTATION_METRIC,
    SEMANTICKITTI,
    SMALL,
    SMALL_CITYSCAPES_ARCH,
    scale_setup,
)
from image2point.experiments.specs import RunSpec, TableLayout, TableSpec, register_table
from image2point.experiments.table_cells import family_run
from image2point.experiments.tables.common import HEADLINE_NOTE, moderate_note, place, place_same_labels

SMALL_ROWS = ("image-pretrained", "from scratch")
ESPNET_COLUMN = "ESPNet-C range images · SemanticKITTI"
SMALL_COLUMNS = ("PointNet++ · ModelNet40", "HRNet-W18 range images · SemanticKITTI", ESPNET_COLUMN)
PAPER_COLUMNS = (POINTNET2_COLUMN, HRNET_COLUMN)
# Row -> (scheme, pretrained). Small: both rows train everything and differ only in the initial weights.
SMALL_SCHEMES = {"image-pretrained": ("all", True), "from scratch": ("all", False)}
PAPER_SCHEMES = {T_ROW: ("io_stats", True), WHOLE: ("all", True), SCRATCH: ("all", False)}
HRNET_ARCH = {SMALL: "hrnet_w18", PAPER: "hrnet_w48"}
# The paper's HRNet comes from Cityscapes segmentation.
HRNET_SOURCE = "cityscapes"
# Small scale: the Cityscapes ESPNet-C encoder of ../shared in HRNet's place (the range recipe names HRNet-W18).
ESPNET_OVERRIDES = (f"model.backbone={SMALL_CITYSCAPES_ARCH}",)


def _schemes(scale: str) -> dict[str, tuple[str, bool]]:
    return SMALL_SCHEMES if scale == SMALL else PAPER_SCHEMES


def _table2_runs(scale: str, seeds: Sequence[int]) -> list[RunSpec]:
    pointnet2_source = scale_setup(scale).pointnet2_source
    columns = SMALL_COLUMNS if scale == SMALL else PAPER_COLUMNS
    runs = []
    for seed in seeds:
        for row, (scheme, pretrained) in _schemes(scale).items():
            runs.append(family_run("table2", row, columns[0], seed, scale, MODELNET40, "pointnet2",
                                    "pointnet2_ssg", source=pointnet2_source if pretrained else None, scheme=scheme))
            runs.append(family_run("table2", row, columns[1], seed, scale, SEMANTICKITTI, "range",
                                    HRNET_ARCH[scale], source=HRNET_SOURCE if pretrained else None, scheme=scheme))
            if scale == SMALL:
                runs.append(family_run("table2", row, ESPNET_COLUMN, seed, scale, SEMANTICKITTI, "range",
                                       SMALL_CITYSCAPES_ARCH, source=HRNET_SOURCE if pretrained else None,
                                       scheme=scheme, extra=ESPNET_OVERRIDES))
    return runs


def _layout(scale: str) -> TableLayout:
    columns = SMALL_COLUMNS if scale == SMALL else PAPER_COLUMNS
    rows = tuple(_schemes(scale))
    metrics = {column: SEGMENTATION_METRIC for column in columns[1:]} | {columns[0]: CLASSIFICATION_METRIC}
    if scale == PAPER:
        return TableLayout(rows, columns, metrics, place_same_labels(2, rows, columns))
    to_paper = {"image-pretrained": WHOLE, "from scratch": SCRATCH}
    # Both range-image columns stand beside the paper's HRNetV2-W48 numbers (for orientation only).
    theirs_of = dict(zip(SMALL_COLUMNS, (*PAPER_COLUMNS, HRNET_COLUMN), strict=True))
    paper = place(2, (((row, ours), (to_paper[row], theirs)) for row in rows for ours, theirs in theirs_of.items()))
    return TableLayout(rows, columns, metrics, paper)


@register_table
def table2() -> TableSpec:
    return TableSpec(
        name="table2",
        title="Other model families: PointNet++ on points, HRNet on range images",
        question=("Does image pretraining also help networks that are not voxel ConvNets: PointNet++ pretrained on "
                  "images with each pixel a point, and a 2D HRNet on LiDAR range images?"),
        layouts={SMALL: _layout(SMALL), PAPER: _layout(PAPER)},
        expand=_table2_runs,
        paper_table=2,
        notes=(HEADLINE_NOTE, moderate_note(2),
               "The from-scratch row trains every weight from random ones (finetune.scheme=all)."),
        scale_notes={
            SMALL: ("small scale: PointNet++ pretrained here on MNIST digits at 16x16 pixels (each pixel a point, "
                    "four epochs), finetuned 6 epochs on 512 points (Adam 1e-3, batch 8): an epoch of the ModelNet40 "
                    "sample costs PointNet++ about 17 s on one core. HRNet-W18: 64x512 range images, 12 epochs. "
                    "Both rows train everything; the paper's I,O,µ,σ row is listed below the table.",
                    "small scale: the paper's numbers (PointNet++ from Tiny-ImageNet, HRNetV2-W48 from Cityscapes, "
                    "full data) stand beside ours for orientation only.",
                    "HRNet-W18 needs Cityscapes HRNet weights (--weights cityscapes:hrnet_w18=PATH).",
                    f"small scale, '{ESPNET_COLUMN}': no Cityscapes HRNet exists here, so the projection-based "
                    "claim is judged on the released Cityscapes network that does, the ESPNet-C encoder (p = 2, q = 8) "
                    "of ../shared/weights, in HRNet's place: the same range images and recipe (64x512, 12 epochs, "
                    "everything trains), its Cityscapes weights against the same network from scratch; claim "
                    "'Table 2 · range images, ESPNet-C Cityscapes' of `image2point experiment claims --scale small "
                    "--folds`. Its numbers are not comparable with the HRNet-W18 column's."),
            PAPER: ("paper scale: PointNet++ (SSG) pretrained by the experiment on Tiny-ImageNet, each pixel a point "
                    "(needs the full set: --data-root tiny-imagenet=PATH), finetuned with PointNet++'s ModelNet40 "
                    "recipe (Adam 1e-3, batch 32, 200 epochs; appendix 6.1); HRNetV2-W48 (model.backbone=hrnet_w48, "
                    "built by the project) from Cityscapes (--weights cityscapes:hrnet_w48=PATH) on SemanticKITTI "
                    "range images. I,O,µ,σ: input and output layers train, BN statistics update.",),
        },
    )
