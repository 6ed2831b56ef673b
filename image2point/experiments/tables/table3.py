"""Table 3: data efficiency: image-pretrained vs from scratch on subsets of ModelNet40."""

from __future__ import annotations

from collections.abc import Sequence

from image2point.experiments.paper_numbers import FRACTION_TRIALS, FRACTIONS, NOT_PRETRAINED, PRETRAINED
from image2point.experiments.scales import CLASSIFICATION_METRIC, MODELNET40, PAPER, SMALL, scale_setup
from image2point.experiments.specs import RunSpec, TableLayout, TableSpec, register_table
from image2point.experiments.table_cells import voxel_run
from image2point.experiments.tables.common import (
    HEADLINE_NOTE,
    SMALL_BACKBONE_NOTE,
    gaps,
    moderate_note,
    place,
    place_same_labels,
)

SMALL_ROWS = (("image-pretrained, I,O,µ,σ,W,b", "io_bn"), ("from scratch", "scratch"))
# The paper finetunes the whole ImageNet ResNet-50 (Section 4.3).
PAPER_ROWS = ((PRETRAINED, "all"), (NOT_PRETRAINED, "scratch"))
PAPER_ARCH = "resnet50"
PAPER_FRACTIONS = tuple(zip(FRACTIONS, (0.01, 0.05, 0.10, 1.0), strict=True))
# The ModelNet40 sample has 1-11 training shapes per class: 1, 5 and 10 % would all keep one shape per
# class, so the small scale keeps 1, 2 and 4 shapes per class (36, 53 and 77 of 94 shapes).
SMALL_PER_CLASS = (("1 / class", 1), ("2 / class", 2), ("4 / class", 4), ("100 %", None))
SMALL_SCHEME_GAP = "the paper finetunes the whole ResNet-50 here; this row trains I,O,µ,σ,W,b"
SMALL_SUBSET_GAP = "the paper's columns are 1, 5 and 10 % of the full training set, not shapes per class"


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
    arch = None if scale == SMALL else PAPER_ARCH
    runs = []
    for row, scheme in SMALL_ROWS if scale == SMALL else PAPER_ROWS:
        for seed in seeds:
            for column, part, extra in _subset_overrides(scale, seed):
                pretrained = scheme != "scratch"
                runs.append(voxel_run("table3", row, column, seed, scale, MODELNET40, f"{scheme}-{part}",
                                       source=source if pretrained else None, arch=arch,
                                       extra=(*extra, f"finetune.scheme={scheme}")))
    return runs


def _small_layout() -> TableLayout:
    rows = tuple(row for row, _ in SMALL_ROWS)
    columns = tuple(column for column, _ in SMALL_PER_CLASS)
    paper = place(3, ((("from scratch", "100 %"), (NOT_PRETRAINED, "100 %")),))
    missing = {**gaps(((rows[0], column) for column in columns), SMALL_SCHEME_GAP),
               **gaps(((rows[1], column) for column in columns[:-1]), SMALL_SUBSET_GAP)}
    return TableLayout(rows, columns, dict.fromkeys(columns, CLASSIFICATION_METRIC), paper, missing)


def _paper_layout() -> TableLayout:
    rows = tuple(row for row, _ in PAPER_ROWS)
    return TableLayout(rows, FRACTIONS, dict.fromkeys(FRACTIONS, CLASSIFICATION_METRIC),
                       place_same_labels(3, rows, FRACTIONS))


@register_table
def table3() -> TableSpec:
    return TableSpec(
        name="table3",
        title="Data efficiency",
        question="Does image pretraining help more when little labelled 3D data is available?",
        layouts={SMALL: _small_layout(), PAPER: _paper_layout()},
        expand=_table3_runs,
        paper_table=3,
        trials=FRACTION_TRIALS,
        notes=(HEADLINE_NOTE, moderate_note(3),
               "ModelNet40; subsets are stratified per class and drawn with the run's seed (data.subset_seed), "
               "so the spread includes which shapes were kept."),
        scale_notes={SMALL: ("small scale: the sample has 1-11 training shapes per class, so 1, 5 and 10 % would "
                             "all keep one shape per class (a class keeps at least one); the columns keep 1, 2 and "
                             "4 shapes per class instead (data.per_class: 36, 53 and 77 of 94 shapes).",
                             SMALL_BACKBONE_NOTE),
                     PAPER: ("paper scale: the whole ResNet-50 from ImageNet-1K (--weights imagenet:resnet50=PATH) "
                             "finetuned (w/ pretraining) or trained from scratch (w/o) on 1, 5, 10 and 100 % of the "
                             "ModelNet40 training set, evaluated on the whole test set; 20, 15, 10 and 3 trials "
                             "(Table 10, appendix 6.5).",)},
    )
