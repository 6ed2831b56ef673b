"""What the convergence study writes beside its table: paired differences between training lengths and the
learning-curve figure.

Every budget of a row ran with the same seeds and folds, so two budgets were tested on the same units and
their difference is paired exactly as two rows of a claim are (:mod:`image2point.experiments.paired`):
longer minus shorter budget within a row (the next budget, and the longest), and I,O,µ,σ,W,b minus scratch
at each budget (claim (b) as a function of the training length). ``convergence.md`` and ``convergence.json``
hold them with the final-epoch training loss of every cell; ``convergence_curves.png`` draws the final metric
against the budget and the per-epoch training loss of every budget (from each run's ``metrics.jsonl``).
"""

from __future__ import annotations

import enum
import json
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from image2point.checkpoint import atomic_write
from image2point.experiments.aggregate import OK, CellResult, collect_cells
from image2point.experiments.claims import describe_units, unit_outcomes
from image2point.experiments.figures import _pyplot, _save, register_figure
from image2point.experiments.folds import confusion_metric, final_confusion
from image2point.experiments.paired import (
    DEFAULT_REPLICATES,
    Direction,
    Measure,
    PairedDifference,
    pair_units,
    paired_difference,
)
from image2point.experiments.plan import METRICS_FILE, STALE, ExperimentContext, PlannedRun
from image2point.experiments.scales import DATASET_LABELS, METRIC_NAMES
from image2point.experiments.specs import Cell, TableSpec
from image2point.experiments.tables.convergence import (
    BUDGET_OF,
    BUDGETS,
    PRETRAINED_ROW,
    ROWS,
    SCRATCH_ROW,
    SMALL_SCALE_BUDGET,
    budget_column,
)
from image2point.train.outcomes import OUTCOMES_FILE, Outcomes, read_outcomes
from image2point.train.run_log import METRICS_HISTORY

CONVERGENCE_MD, CONVERGENCE_JSON, CONVERGENCE_PNG = "convergence.md", "convergence.json", "convergence_curves.png"
BOOTSTRAP_SEED = 0


class ComparisonKind(enum.Enum):
    """Which two cells a comparison pairs."""

    NEXT_BUDGET = "next budget"
    LONGEST_BUDGET = "longest budget"
    PRETRAINING = "pretrained − scratch"


@dataclass(frozen=True)
class Comparison:
    """Cell ``a`` minus cell ``b`` of the study, on one dataset."""

    kind: ComparisonKind
    dataset: str
    a: Cell
    b: Cell

    @property
    def label(self) -> str:
        if self.kind == ComparisonKind.PRETRAINING:
            return f"{self.a[0]} − {self.b[0]} · {self.a[1]}"
        return f"{self.a[0]} · {DATASET_LABELS[self.dataset]}: {_epochs(self.a)} − {_epochs(self.b)} epochs"


def _epochs(cell: Cell) -> int:
    return BUDGET_OF[cell[1]][1]


@dataclass(frozen=True)
class ComparisonResult:
    """A comparison's paired difference over the seeds whose runs of both cells have all finished, or None."""

    comparison: Comparison
    result: PairedDifference | None
    seeds: tuple[int, ...]
    units: str | None
    missing: tuple[str, ...]

    @property
    def reading(self) -> str | None:
        """holds: A above B; reversed: A below B; cannot tell: the interval holds 0."""
        return None if self.result is None else self.result.verdict(Direction.A_ABOVE_B).value


def comparisons() -> tuple[Comparison, ...]:
    """Per dataset: each row's budget against the next and against the longest; then pretrained − scratch."""
    found = []
    for dataset, budgets in BUDGETS.items():
        columns = [budget_column(dataset, epochs) for epochs in budgets]
        for row in ROWS:
            found += [Comparison(ComparisonKind.NEXT_BUDGET, dataset, (row, longer), (row, shorter))
                      for shorter, longer in zip(columns, columns[1:])]
            found += [Comparison(ComparisonKind.LONGEST_BUDGET, dataset, (row, columns[-1]), (row, shorter))
                      for shorter in columns[:-2]]
        found += [Comparison(ComparisonKind.PRETRAINING, dataset, (PRETRAINED_ROW, column), (SCRATCH_ROW, column))
                  for column in columns]
    return tuple(found)


def _finished(planned: PlannedRun) -> bool:
    """Finished, with its outcomes, and not stale (a run the plan no longer asks for)."""
    return planned.status != STALE and all((planned.run_dir / name).is_file() for name in (METRICS_FILE, OUTCOMES_FILE))


def compare(comparison: Comparison, plans: Sequence[PlannedRun], measure: Measure,
            replicates: int = DEFAULT_REPLICATES) -> ComparisonResult:
    """Pair the two cells' runs by seed and fold (see :func:`image2point.experiments.claims.evaluate_claim`)."""
    cells = {cell: [p for p in plans if (p.spec.row, p.spec.column) == cell] for cell in (comparison.a, comparison.b)}
    runs = [p for cell_runs in cells.values() for p in cell_runs]
    missing = tuple(p.spec.run_id for p in runs if not _finished(p))
    seeds = sorted({p.spec.seed for p in runs})
    complete = tuple(seed for seed in seeds if all(_finished(p) for p in runs if p.spec.seed == seed))
    if not complete:
        return ComparisonResult(comparison, None, (), None, missing)
    folds = sorted({p.fold for p in runs}, key=lambda fold: -1 if fold is None else fold)
    paired, units = [], None
    for fold in folds:
        outcomes = {cell: [_outcomes(cell_runs, seed, fold) for seed in complete] for cell, cell_runs in cells.items()}
        sample = outcomes[comparison.a][0]
        units = describe_units(sample)
        paired.append(pair_units([unit_outcomes(o)[0] for o in outcomes[comparison.a]],
                                 [unit_outcomes(o)[0] for o in outcomes[comparison.b]], unit_outcomes(sample)[1]))
    result = paired_difference(paired, measure, replicates, BOOTSTRAP_SEED)
    return ComparisonResult(comparison, result, complete, units, missing)


def _outcomes(runs: Sequence[PlannedRun], seed: int, fold: int | None) -> Outcomes:
    planned = next(p for p in runs if p.spec.seed == seed and p.fold == fold)
    return read_outcomes(planned.run_dir / OUTCOMES_FILE)


def loss_history(run_dir: Path) -> list[float]:
    """The mean training loss of every epoch of a run (``metrics.jsonl``), in order."""
    lines = (run_dir / METRICS_HISTORY).read_text().splitlines()
    return [json.loads(line)["train_loss"] for line in lines if line.strip()]


def loss_curves(plans: Sequence[PlannedRun]) -> dict[Cell, list[float]]:
    """Per cell, the training loss of every epoch averaged over its finished runs (folds and seeds)."""
    histories: dict[Cell, list[list[float]]] = {}
    for planned in plans:
        if planned.status != STALE and (planned.run_dir / METRICS_FILE).is_file():
            histories.setdefault((planned.spec.row, planned.spec.column), []).append(loss_history(planned.run_dir))
    return {cell: [statistics.fmean(epoch) for epoch in zip(*runs, strict=True)] for cell, runs in histories.items()}


def fold_values(plans: Sequence[PlannedRun], metrics: Mapping[str, str]) -> dict[Cell, list[float]]:
    """Per cell, each finished run's own final metric (one fold's test units), in percent."""
    values: dict[Cell, list[float]] = {}
    for planned in (p for p in plans if p.status != STALE):
        confusion = final_confusion(planned.run_dir / METRICS_FILE)
        value = None if confusion is None else confusion_metric(confusion, metrics[planned.spec.column])
        if value is not None:
            values.setdefault((planned.spec.row, planned.spec.column), []).append(value)
    return values


def plot_convergence(cells: Sequence[CellResult], folds: Mapping[Cell, list[float]],
                     losses: Mapping[Cell, list[float]], title: str, out: Path) -> Path | None:
    """Per dataset (a row of panels): the final metric against the budget, one line per row (mean over seeds,
    sample std as error bar where there are several, each fold's own value as a dot); then, per row, the
    training loss of every epoch of every budget."""
    if not any(cell.status == OK for cell in cells):
        return None
    plt = _pyplot()
    by_cell = {(cell.row, cell.column): cell for cell in cells}
    figure, axes = plt.subplots(len(BUDGETS), 1 + len(ROWS), figsize=(4.4 * (1 + len(ROWS)), 3.6 * len(BUDGETS)),
                                squeeze=False)
    for panels, (dataset, budgets) in zip(axes, BUDGETS.items(), strict=True):
        _plot_final(panels[0], by_cell, folds, dataset, budgets)
        for axis, row in zip(panels[1:], ROWS, strict=True):
            for epochs in budgets:
                curve = losses.get((row, budget_column(dataset, epochs)))
                if curve:
                    axis.plot(range(1, len(curve) + 1), curve, label=f"{epochs} epochs")
            _loss_axes(axis, f"{DATASET_LABELS[dataset]} · {row}")
    figure.suptitle(title)
    figure.tight_layout()
    return _save(figure, out)


def _loss_axes(axis, title: str) -> None:
    from matplotlib.ticker import FormatStrFormatter, MaxNLocator

    axis.set_yscale("log")
    axis.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    axis.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
    axis.tick_params(axis="y", which="minor", labelsize="x-small")
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.set_xlabel("epoch")
    axis.set_ylabel("training loss (mean over runs)")
    axis.set_title(title)
    if axis.get_lines():
        axis.legend(fontsize="x-small")


def _plot_final(axis, by_cell: Mapping[Cell, CellResult], folds: Mapping[Cell, list[float]], dataset: str,
                budgets: Sequence[int]) -> None:
    metric = by_cell[(ROWS[0], budget_column(dataset, budgets[0]))].metric
    for offset, row in zip((-0.04, 0.04), ROWS, strict=True):
        cells = [(epochs, by_cell[(row, budget_column(dataset, epochs))]) for epochs in budgets]
        shown = [(epochs, cell) for epochs, cell in cells if cell.status == OK and cell.mean is not None]
        line = axis.errorbar([epochs for epochs, _ in shown], [cell.mean for _, cell in shown],
                             yerr=[cell.std or 0.0 for _, cell in shown], marker="o", capsize=3, label=row)
        for epochs in budgets:
            values = folds.get((row, budget_column(dataset, epochs)), [])
            axis.scatter([epochs * 2 ** offset] * len(values), values, s=8, alpha=0.35, color=line[0].get_color())
    axis.axvline(SMALL_SCALE_BUDGET[dataset], color="grey", linestyle=":", label="small scale's length now")
    axis.set_xscale("log", base=2)
    axis.set_xticks(list(budgets), [str(epochs) for epochs in budgets])
    axis.set_xlabel("training budget (epochs, cosine to 0)")
    axis.set_ylabel(f"{METRIC_NAMES[metric]} (%), final epoch")
    axis.set_title(f"{DATASET_LABELS[dataset]}: pooled over folds (dots: each fold)")
    axis.legend(fontsize="x-small")


def render_comparisons(results: Sequence[ComparisonResult], losses: Mapping[Cell, list[float]], command: str) -> str:
    """convergence.md: the paired differences, then the final training loss of every cell."""
    lines = ["# Convergence: paired differences between training lengths", "", f"- command: `{command}`",
             "- difference: A − B in percentage points, mean over seeds of the metric pooled over folds; 95 % "
             "interval: bootstrap over test units within folds (one draw shared by both cells) and over seeds "
             "(with one seed, over the test units only: training noise is not in it)",
             "- reading: holds = A above B, reversed = A below B, cannot tell = the interval contains 0", "",
             "| comparison | kind | difference | 95 % interval | reading | seeds | units |",
             "|---|---|---:|---|---|---|---|"]
    for item in results:
        if item.result is None:
            lines.append(f"| {item.comparison.label} | {item.comparison.kind.value} | | | not finished "
                         f"({len(item.missing)} runs missing) | | |")
            continue
        result = item.result
        lines.append(f"| {item.comparison.label} | {item.comparison.kind.value} | {result.difference:+.2f} | "
                     f"[{result.low:+.2f}, {result.high:+.2f}] | {item.reading} | {','.join(map(str, item.seeds))} "
                     f"| {result.units} {item.units} |")
    lines += ["", "Training loss of the last epoch (mean over the cell's finished runs):", "",
              "| row | budget | training loss |", "|---|---|---:|"]
    for (row, column), curve in sorted(losses.items(), key=lambda item: _cell_order(item[0])):
        lines.append(f"| {row} | {column} | {curve[-1]:.4f} |")
    return "\n".join(lines) + "\n"


def _cell_order(cell: Cell) -> tuple[int, int, int]:
    """Row, then dataset, then budget."""
    dataset, epochs = BUDGET_OF[cell[1]]
    return ROWS.index(cell[0]), list(BUDGETS).index(dataset), epochs


def comparisons_payload(results: Sequence[ComparisonResult], losses: Mapping[Cell, list[float]],
                        command: str) -> dict:
    entries = [{"comparison": item.comparison.label, "kind": item.comparison.kind.value,
                "dataset": item.comparison.dataset, "a": list(item.comparison.a), "b": list(item.comparison.b),
                "difference": None if item.result is None else item.result.difference,
                "interval": None if item.result is None else [item.result.low, item.result.high],
                "per_seed": None if item.result is None else list(item.result.per_seed),
                "reading": item.reading, "seeds": list(item.seeds), "units": item.units,
                "unit_count": None if item.result is None else item.result.units,
                "missing_runs": list(item.missing)} for item in results]
    curves = [{"row": row, "column": column, "train_loss": curve} for (row, column), curve in losses.items()]
    return {"command": command, "unit": "percentage points", "comparisons": entries, "train_loss": curves}


@register_figure("convergence")
def write_convergence(table: TableSpec, plans: Sequence[PlannedRun], context: ExperimentContext) -> list[Path]:
    """Everything the study writes beside its table: the figure, and the paired differences with the losses."""
    layout = table.layout(context.scale)
    cells = collect_cells(table, plans, context.scale)
    losses = loss_curves(plans)
    directory = context.out_dir / table.name
    directory.mkdir(parents=True, exist_ok=True)
    figure = plot_convergence(cells, fold_values(plans, layout.metrics), losses,
                              f"{table.name}: {table.title} ({context.scale} scale)", directory / CONVERGENCE_PNG)
    results = [compare(item, plans, Measure(layout.metrics[item.a[1]])) for item in comparisons()]
    command = _command(directory)
    contents = {CONVERGENCE_MD: render_comparisons(results, losses, command),
                CONVERGENCE_JSON: json.dumps(comparisons_payload(results, losses, command), indent=2,
                                             ensure_ascii=False) + "\n"}
    for name, text in contents.items():
        with atomic_write(directory / name, "w") as stream:
            stream.write(text)
    return [*([] if figure is None else [figure]), *(directory / name for name in contents)]


def _command(directory: Path) -> str:
    """The table's command, as the aggregation just wrote it into results.json beside."""
    results = directory / "results.json"
    return json.loads(results.read_text())["command"] if results.is_file() else ""
