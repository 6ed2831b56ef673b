"""Tables 8-14: the paper's stability analysis (appendix 6.5), as views of the runs of Tables 1-7.

A stability table adds no runs: it plans the runs of its main table (same run directories, same trials)
and aggregates them as mean ± std, beside the paper's mean ± std of the same cell.
"""

from __future__ import annotations

from dataclasses import replace

from image2point.experiments.paper_numbers import STABILITY_OF, stability_cell
from image2point.experiments.specs import TABLES, TableLayout, TableSpec, register_spec

STABILITY_NOTE = ("A stability table adds no runs: it aggregates the trials of {main}'s runs (run "
                  "`image2point experiment {main}` first) as mean ± sample std, beside the paper's mean ± std of "
                  "Table {number} (appendix 6.5).")


def _stability_layout(layout: TableLayout) -> TableLayout:
    """The main layout with each paper cell replaced by its mean ± std."""
    return replace(layout, paper={key: stability_cell(cell) for key, cell in layout.paper.items()})


def stability_table(main: TableSpec) -> TableSpec:
    number = STABILITY_OF[main.paper_table]
    return TableSpec(
        name=f"table{number}",
        title=f"Stability of {main.name} ({main.title}): mean ± std over the trials",
        question=f"How much do the cells of {main.name} vary over the paper's trials (seeds)?",
        layouts={scale: _stability_layout(layout) for scale, layout in main.layouts.items()},
        expand=main.expand,
        paper_table=number,
        trials=main.trials,
        stability_of=main.name,
        notes=(STABILITY_NOTE.format(main=main.name, number=number),
               *(note for note in main.notes if not note.startswith("Paper numbers: Table"))),
        scale_notes=main.scale_notes,
    )


def register_stability_tables() -> None:
    for number in sorted(STABILITY_OF):
        register_spec(stability_table(TABLES[f"table{number}"]))
