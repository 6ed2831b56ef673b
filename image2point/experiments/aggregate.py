"""From run directories to a table: ``results.json``, ``results.csv`` and ``table.md`` in the paper's layout.

Works on a partially finished grid: a cell reports how many of its seeds have finished. Values are the
final-epoch metric in percent; std is the sample standard deviation (ddof=1), null for a single run.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from image2point.checkpoint import atomic_write
from image2point.experiments.folds import pooled_seed_values
from image2point.experiments.plan import UNAVAILABLE, ExperimentContext, PlannedRun
from image2point.experiments.paper_numbers import PaperCell
from image2point.experiments.scales import METRIC_NAMES, scale_setup
from image2point.experiments.specs import TableLayout, TableSpec

OK, PENDING_CELL, EMPTY = "ok", "pending", "n/a"
# Beside a cell the paper has no number for; its reason is in ``paper_gap``.
NO_PAPER = "—"
RESULTS_JSON, RESULTS_CSV, TABLE_MD = "results.json", "results.csv", "table.md"
CSV_FIELDS = ("table", "row", "column", "metric", "status", "n", "expected", "mean", "std", "paper", "paper_std",
              "paper_kind", "paper_cell", "paper_gap", "seeds", "values", "runs", "reason")


@dataclass(frozen=True)
class CellResult:
    """One cell: the finished runs' seeds and values (percent), their mean and sample std."""

    row: str
    column: str
    metric: str
    status: str
    runs: tuple[str, ...]
    seeds: tuple[int, ...]
    values: tuple[float, ...]
    mean: float | None
    std: float | None
    n: int
    expected: int
    # The paper's number beside this cell (percent; ``paper_std`` for Tables 8-14), which cell of the paper
    # it is, and what kind; or, when there is none, why (``paper_gap``).
    paper: float | None
    reason: str | None = None
    paper_std: float | None = None
    paper_kind: str | None = None
    paper_cell: str | None = None
    paper_gap: str | None = None

    def paper_text(self) -> str:
        """``78.69``, ``79.32 ± 0.46``, or ``—`` where the paper has no such cell."""
        if self.paper is None:
            return NO_PAPER
        return f"{self.paper:.2f}" if self.paper_std is None else f"{self.paper:.2f} ± {self.paper_std:.2f}"


def summarise(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (ddof=1); the std of one value is None, of none both are."""
    if not values:
        return None, None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def collect_cells(table: TableSpec, plans: Sequence[PlannedRun], scale: str) -> list[CellResult]:
    """Every cell of the layout, row by row, from the run directories of ``plans``."""
    layout = table.layout(scale)
    cells = []
    for row in layout.rows:
        for column in layout.columns:
            runs_cell = layout.runs_cell(row, column)
            cell_plans = sorted((p for p in plans if (p.spec.row, p.spec.column) == runs_cell),
                                key=lambda p: p.spec.seed)
            result = _cell(row, column, layout.metrics[column], cell_plans)
            cells.append(replace(result, **_paper_fields(layout, row, column)))
    return cells


def _paper_fields(layout: TableLayout, row: str, column: str) -> dict:
    cell = layout.paper.get((row, column))
    if cell is None:
        return {"paper": None, "paper_gap": layout.paper_gap(row, column)}
    return {"paper": cell.value, "paper_std": cell.std, "paper_kind": cell.kind.value, "paper_cell": cell.label}


def _cell(row: str, column: str, metric: str, plans: Sequence[PlannedRun]) -> CellResult:
    paper = None
    unavailable = next((p for p in plans if p.status in UNAVAILABLE), None)
    if unavailable is not None:
        return CellResult(row, column, metric, unavailable.status, (), (), (), None, None, 0, len(plans), paper,
                          unavailable.reason)
    # One value per seed: a run's own headline, or with folds the metric of its folds' pooled confusions.
    pooled = [seed_value for seed_value in pooled_seed_values(plans, metric) if seed_value.value is not None]
    values = tuple(seed_value.value for seed_value in pooled)
    mean, std = summarise(values)
    status = OK if pooled else (PENDING_CELL if plans else EMPTY)
    expected = len({planned.spec.seed for planned in plans})
    return CellResult(row, column, metric, status, tuple(run for seed_value in pooled for run in seed_value.runs),
                      tuple(seed_value.seed for seed_value in pooled), values, mean, std, len(pooled), expected, paper)


def footnotes(cells: Sequence[CellResult]) -> dict[str, int]:
    """Every distinct reason a cell is missing or has no data, numbered in order of appearance."""
    numbers: dict[str, int] = {}
    for cell in cells:
        if cell.reason is not None and cell.reason not in numbers:
            numbers[cell.reason] = len(numbers) + 1
    return numbers


def format_cell(cell: CellResult, notes: dict[str, int]) -> str:
    """``35.20 ± 4.10 (3)``; ``(2 of 3)`` while seeds are unfinished; ``missing [1]`` with a footnote."""
    if cell.status in UNAVAILABLE:
        return f"{cell.status} [{notes[cell.reason]}]"
    if cell.status == EMPTY:
        return EMPTY
    count = f"{cell.n}" if cell.n == cell.expected else f"{cell.n} of {cell.expected}"
    if cell.mean is None:
        return f"pending ({count})"
    spread = "" if cell.std is None else f" ± {cell.std:.2f}"
    return f"{cell.mean:.2f}{spread} ({count})"


def paper_gap_notes(cells: Sequence[CellResult]) -> dict[str, str]:
    """Every distinct reason a cell has no paper number, lettered (a, b, ...) in order of appearance."""
    letters: dict[str, str] = {}
    for cell in cells:
        if cell.paper is None and cell.paper_gap is not None and cell.paper_gap not in letters:
            letters[cell.paper_gap] = chr(ord("a") + len(letters) % 26) * (1 + len(letters) // 26)
    return letters


def format_paper(cell: CellResult, letters: dict[str, str]) -> str:
    if cell.paper is None and cell.paper_gap is not None:
        return f"{NO_PAPER} ({letters[cell.paper_gap]})"
    return cell.paper_text()


def _unplaced_lines(table: TableSpec, scale: str) -> list[str]:
    unplaced = table.unplaced_paper_cells(scale)
    if not unplaced:
        return []
    lines = ["", f"Paper cells beside none of ours at this scale ({len(unplaced)}):", ""]
    lines += [f"- {cell.label}: {cell.text()}" for cell in unplaced]
    return lines


def render_markdown(table: TableSpec, cells: Sequence[CellResult], scale: str, command: str, date: str,
                    folds: Mapping[str, int] | None = None) -> str:
    """The table in the paper's layout, each of our cells beside the paper's number, with its header
    (``folds``: the folds per dataset of a cross-validated run)."""
    layout = table.layout(scale)
    notes = footnotes(cells)
    metrics = "; ".join(f"{column}: {METRIC_NAMES[layout.metrics[column]]}" for column in layout.columns)
    lines = [
        f"# {table.name}: {table.title}",
        "",
        table.question,
        "",
        f"- command: `{command}`",
        f"- date: {date}",
        f"- scale: {scale} ({scale_setup(scale).description})",
        f"- metric: {metrics}; percent, mean ± sample std over seeds (number of seeds)",
        *_folds_lines(folds),
        "",
        *_grid_lines(table, cells, layout, notes),
    ]
    if table.is_paper_table:
        lines += _paper_lines(table, cells, scale)
    lines.append("")
    lines += [f"- {note}" for note in table.notes_for(scale)]
    if notes:
        lines.append("")
        lines += [f"[{number}] {reason}" for reason, number in notes.items()]
    return "\n".join(lines) + "\n"


def _folds_lines(folds: Mapping[str, int] | None) -> list[str]:
    if not folds:
        return []
    counts = ", ".join(f"{dataset} {count}" for dataset, count in folds.items())
    return [f"- cross-validated (folds per dataset: {counts}): a seed's value is the metric of its folds' "
            "pooled confusions, every sample of the dataset tested once; the train / test split the notes give "
            "is that of runs without --folds"]


def _grid_lines(table: TableSpec, cells: Sequence[CellResult], layout: TableLayout,
                notes: dict[str, int]) -> list[str]:
    """Row by row, each of our cells beside the paper's number (a study that is no table of the paper: ours only)."""
    paper = table.is_paper_table
    letters = paper_gap_notes(cells)
    by_cell = {(cell.row, cell.column): cell for cell in cells}
    lines = ["| | " + " | ".join(f"{column} | paper" if paper else column for column in layout.columns) + " |",
             "|---|" + "---:|" * (2 if paper else 1) * len(layout.columns)]
    for row in layout.rows:
        entries = []
        for column in layout.columns:
            cell = by_cell[(row, column)]
            entries += [format_cell(cell, notes), format_paper(cell, letters)] if paper else [format_cell(cell, notes)]
        lines.append(f"| {row} | " + " | ".join(entries) + " |")
    return lines


def _paper_lines(table: TableSpec, cells: Sequence[CellResult], scale: str) -> list[str]:
    """Which table of the paper stands beside ours, why a cell has none, and the paper's cells left apart."""
    letters = paper_gap_notes(cells)
    kinds = sorted({cell.paper_kind for cell in cells if cell.paper_kind})
    gap = f"; {NO_PAPER}: the paper has no such cell, because:" if letters else "."
    lines = ["", f"paper: the paper's Table {table.paper_table} ({'; '.join(kinds) or 'no cell placed'}){gap}"]
    lines += [f"({letter}) {reason}" for reason, letter in letters.items()]
    return lines + _unplaced_lines(table, scale)


def render_csv(table: TableSpec, cells: Sequence[CellResult]) -> str:
    stream = io.StringIO()
    writer = csv.DictWriter(stream, CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for cell in cells:
        writer.writerow({
            "table": table.name, "row": cell.row, "column": cell.column, "metric": cell.metric,
            "status": cell.status, "n": cell.n, "expected": cell.expected,
            "mean": "" if cell.mean is None else f"{cell.mean:.4f}",
            "std": "" if cell.std is None else f"{cell.std:.4f}",
            "paper": NO_PAPER if cell.paper is None else cell.paper,
            "paper_std": "" if cell.paper_std is None else cell.paper_std, "paper_kind": cell.paper_kind or "",
            "paper_cell": cell.paper_cell or "", "paper_gap": cell.paper_gap or "",
            "seeds": ";".join(map(str, cell.seeds)),
            "values": ";".join(f"{value:.4f}" for value in cell.values), "runs": ";".join(cell.runs),
            "reason": cell.reason or "",
        })
    return stream.getvalue()


def results_payload(table: TableSpec, cells: Sequence[CellResult], scale: str, command: str, date: str) -> dict:
    layout = table.layout(scale)
    return {
        "table": table.name, "title": table.title, "question": table.question, "scale": scale,
        "command": command, "date": date, "unit": "percent", "rows": list(layout.rows),
        "columns": list(layout.columns), "metrics": dict(layout.metrics), "notes": list(table.notes_for(scale)),
        "footnotes": {str(number): reason for reason, number in footnotes(cells).items()},
        "paper_table": table.paper_table, "stability_of": table.stability_of,
        "cells": [asdict(cell) for cell in cells],
        "unplaced_paper_cells": [_paper_cell_payload(cell) for cell in table.unplaced_paper_cells(scale)],
    }


def _paper_cell_payload(cell: PaperCell) -> dict:
    return {"table": cell.table, "row": cell.row, "column": cell.column, "value": cell.value, "std": cell.std,
            "kind": cell.kind.value, "trials": cell.trials, "spans": list(cell.spans)}


def write_table_results(table: TableSpec, plans: Sequence[PlannedRun], context: ExperimentContext, command: str,
                        date: str) -> list[Path]:
    """Write ``results.json``, ``results.csv`` and ``table.md`` into ``<out>/<table>/``."""
    cells = collect_cells(table, plans, context.scale)
    directory = context.out_dir / table.name
    directory.mkdir(parents=True, exist_ok=True)
    # The folds of the datasets this table runs on, not of every dataset the scale folds.
    datasets = {planned.spec.dataset for planned in plans}
    folds = ({name: count for name, count in scale_setup(context.scale).folds.items() if name in datasets}
             if context.cross_validate else None)
    contents = {
        RESULTS_JSON: json.dumps(results_payload(table, cells, context.scale, command, date), indent=2,
                                 ensure_ascii=False) + "\n",
        RESULTS_CSV: render_csv(table, cells),
        TABLE_MD: render_markdown(table, cells, context.scale, command, date, folds),
    }
    for name, text in contents.items():
        with atomic_write(directory / name, "w") as stream:
            stream.write(text)
    return [directory / name for name in contents]
