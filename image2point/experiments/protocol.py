"""The dry run's summary of a table's protocol: the paper's rows and columns, backbones, datasets, trials,
where every weights source comes from (available / made here / missing), and the number of runs."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from image2point.experiments import fractal_sources
from image2point.experiments.plan import MISSING, NO_DATA, ExperimentContext, PlannedRun
from image2point.experiments.scales import DATASET_LABELS, scale_setup
from image2point.experiments.sources import Pretraining
from image2point.experiments.specs import TableSpec

BACKBONE_KEY = "model.backbone="


def _backbone(planned: PlannedRun, default: str) -> str:
    given = [item[len(BACKBONE_KEY):] for item in planned.spec.overrides if item.startswith(BACKBONE_KEY)]
    return given[-1] if given else default


def _trials(table: TableSpec, plans: Sequence[PlannedRun], columns: Sequence[str]) -> str:
    """Seeds per column, as planned ('3 per cell', or per column where they differ)."""
    per_column = {column: len({p.spec.seed for p in plans if p.spec.column == column}) for column in columns}
    per_column = {column: count for column, count in per_column.items() if count}
    if len(set(per_column.values())) <= 1:
        count = next(iter(per_column.values()), 0)
        return f"{count} per cell"
    return ", ".join(f"{count} ({column})" for column, count in per_column.items())


def describe_pretraining(pretraining: Pretraining) -> str:
    """One line: what the experiment makes for a source before its first run."""
    settings = pretraining.settings
    training = f"{settings.epochs} epochs, batch {settings.batch_size}, lr {settings.lr}"
    if pretraining.root is None:
        return f"{fractal_sources.describe_fractaldb(pretraining)}; then {training}"
    side = f"{settings.image_size} px" if settings.image_size else "native size"
    return f"pretrained here on {pretraining.root} ({side}, {training})"


def _source_lines(plans: Sequence[PlannedRun], default_arch: str) -> list[str]:
    """One line per (source, architecture): available (the checkpoint), made here (how), or missing (why),
    and how many runs start from it."""
    lines: dict[str, str] = {}
    counts: Counter[str] = Counter()
    # A run without data never resolves its weights: the line comes from a run with data where there is one.
    for planned in sorted(plans, key=lambda p: p.status == NO_DATA):
        source = planned.spec.source
        if source is None:
            continue
        key = f"{source}:{planned.spec.arch or default_arch}"
        counts[key] += 1
        if key in lines:
            continue
        if planned.status == NO_DATA:
            lines[key] = f"not looked up: no run from it has data ({planned.reason})"
        elif planned.status == MISSING:
            lines[key] = f"missing: {planned.reason}"
        elif planned.pretraining is not None and not planned.pretraining.finished:
            lines[key] = f"made: {describe_pretraining(planned.pretraining)}"
        else:
            checkpoint = next((o.partition("=")[2] for o in planned.overrides if o.startswith("model.pretrained=")),
                              "null")
            lines[key] = "available: random weights" if checkpoint == "null" else f"available: {checkpoint}"
    return [f"    {key}  {status} ({counts[key]} runs)" for key, status in lines.items()]


def describe_protocol(table: TableSpec, plans: Sequence[PlannedRun], context: ExperimentContext) -> list[str]:
    """The header of a table's dry run."""
    layout = table.layout(context.scale)
    default_arch = scale_setup(context.scale).backbone
    paper = f"paper Table {table.paper_table}" if table.is_paper_table else "not a table of the paper"
    if table.stability_of:
        paper += f"; adds no runs: the runs of {table.stability_of}, as mean ± std"
    statuses = Counter(planned.status for planned in plans)
    lines = [
        f"{table.name}: {table.title} [{paper}] at {context.scale} scale",
        f"  rows: {' | '.join(layout.rows)}",
        f"  columns: {' | '.join(layout.columns)}",
        f"  backbones: {', '.join(sorted({_backbone(p, default_arch) for p in plans}))}",
        f"  datasets: {', '.join(sorted({DATASET_LABELS[p.spec.dataset] for p in plans}))}",
        f"  trials: {_trials(table, plans, layout.columns)}",
        "  sources:",
        *(_source_lines(plans, default_arch) or ["    none (every run starts from random weights)"]),
        f"  runs: {len(plans)} ({', '.join(f'{count} {status}' for status, count in statuses.items())})",
    ]
    if table.is_paper_table:
        placed = set(layout.paper.values())
        own = sum(cell.table == table.paper_table for cell in placed)
        borrowed = sorted({cell.table for cell in placed} - {table.paper_table})
        others = f" (and {len(placed) - own} of Table {', '.join(map(str, borrowed))})" if borrowed else ""
        lines.append(f"  paper cells: {len(table.paper_cells())} in the paper's table, {own} beside ours{others}, "
                     f"{len(table.unplaced_paper_cells(context.scale))} listed apart")
    lines += [f"  note: {note}" for note in table.notes_for(context.scale)]
    return lines
