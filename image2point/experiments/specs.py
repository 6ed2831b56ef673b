"""A table of the paper as data: its layout, the paper's numbers, and the grid of runs that fills it."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from image2point.errors import ConfigError
from image2point.experiments.paper_numbers import DEFAULT_TRIALS, PaperCell, paper_cells
from image2point.experiments.scales import PAPER, SCALES

# Run ids name directories: lower-case letters, digits, '_' and '-' only.
UNSAFE_ID_CHARACTERS = re.compile(r"[^a-z0-9_-]+")


@dataclass(frozen=True)
class RunSpec:
    """One training run of a table cell: a base recipe plus ``key=value`` overrides.

    ``source`` is the weights source whose checkpoint becomes ``model.pretrained`` for ``arch`` (it may
    need pretraining first, or be missing); None trains without pretrained weights. ``model.pretrained``,
    ``data.root`` and ``train.run_dir`` are added when the run is planned.
    """

    table: str
    row: str
    column: str
    seed: int
    run_id: str
    dataset: str
    recipe: str
    overrides: tuple[str, ...]
    source: str | None = None
    arch: str | None = None


Cell = tuple[str, str]
NO_PAPER_CELL = "the paper has no cell for this row and column"


@dataclass(frozen=True)
class TableLayout:
    """Row and column labels at one scale, the headline metric of every column, and the paper's number
    beside each of our cells.

    ``paper`` maps (row, column) to the paper's cell shown beside it; a cell without one shows "—" and
    the reason in ``paper_gaps`` (else :data:`NO_PAPER_CELL`). ``same_runs_as`` maps a cell to the cell
    whose runs it shows (a from-scratch row does not depend on the pretraining source of its column).
    """

    rows: tuple[str, ...]
    columns: tuple[str, ...]
    metrics: Mapping[str, str]
    paper: Mapping[Cell, PaperCell] = field(default_factory=dict)
    paper_gaps: Mapping[Cell, str] = field(default_factory=dict)
    same_runs_as: Mapping[Cell, Cell] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if set(self.metrics) != set(self.columns):
            raise ValueError(f"every column needs a metric: columns {self.columns}, metrics {sorted(self.metrics)}")
        cells = {(row, column) for row in self.rows for column in self.columns}
        for name, keys in (("paper", set(self.paper)), ("paper_gaps", set(self.paper_gaps)),
                           ("same_runs_as", set(self.same_runs_as) | set(self.same_runs_as.values()))):
            if not keys <= cells:
                raise ValueError(f"{name} names cells outside the layout: {sorted(keys - cells)}")

    def paper_gap(self, row: str, column: str) -> str:
        """Why the cell has no paper number beside it."""
        return self.paper_gaps.get((row, column), NO_PAPER_CELL)

    def runs_cell(self, row: str, column: str) -> Cell:
        """The cell whose runs (row, column) shows: itself, or the one it shares them with."""
        return self.same_runs_as.get((row, column), (row, column))


Expand = Callable[[str, Sequence[int]], list[RunSpec]]


@dataclass(frozen=True)
class TableSpec:
    """A table of the paper: what it asks, its layout per scale, and how (scale, seeds) become runs.

    ``paper_table`` is the paper's table number (1-14); the layouts place its cells beside ours.
    ``trials`` is the paper's number of trials per column at paper scale (absent: three); a run of
    ``--scale paper`` without ``--seeds`` makes that many. A stability table (Tables 8-14) names its main
    table in ``stability_of``: it adds no runs, it aggregates the trials of the main table's runs as
    mean ± std. ``notes`` apply at every scale, ``scale_notes`` at one. A study of ours that is no table of
    the paper has ``paper_table`` 0; ``absent_scales`` says why it has no layout at a scale.
    """

    name: str
    title: str
    question: str
    layouts: Mapping[str, TableLayout]
    expand: Expand
    paper_table: int = 0
    trials: Mapping[str, int] = field(default_factory=dict)
    stability_of: str | None = None
    notes: tuple[str, ...] = ()
    scale_notes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    absent_scales: Mapping[str, str] = field(default_factory=dict)

    @property
    def is_paper_table(self) -> bool:
        return self.paper_table > 0

    def layout(self, scale: str) -> TableLayout:
        if scale in self.absent_scales:
            raise ConfigError(f"{self.name} --scale {scale}: {self.absent_scales[scale]}")
        if scale not in self.layouts:
            raise ConfigError(f"{self.name} has no layout for scale {scale!r}; choose one of {', '.join(SCALES)}")
        return self.layouts[scale]

    def runs(self, scale: str, seeds: Sequence[int]) -> list[RunSpec]:
        """The grid of runs, checked: every run in a cell of the layout that keeps its own runs, ids unique."""
        layout = self.layout(scale)
        runs = self.expand(scale, seeds)
        seen: set[str] = set()
        for run in runs:
            if run.row not in layout.rows or run.column not in layout.columns:
                raise ValueError(f"{self.name}: run {run.run_id} is outside the layout ({run.row!r}, {run.column!r})")
            if (run.row, run.column) in layout.same_runs_as:
                raise ValueError(f"{self.name}: run {run.run_id} is in a cell that shows another cell's runs")
            if run.run_id in seen:
                raise ValueError(f"{self.name}: run id {run.run_id} appears twice")
            seen.add(run.run_id)
        return runs

    def notes_for(self, scale: str) -> tuple[str, ...]:
        return self.notes + tuple(self.scale_notes.get(scale, ()))

    def trials_of(self, column: str) -> int:
        """The paper's number of trials of a column (paper scale)."""
        return self.trials.get(column, DEFAULT_TRIALS)

    def default_seeds(self, scale: str) -> tuple[int, ...]:
        """Seeds when none are given: the paper's trials (the most of any column) at paper scale, else 3."""
        columns = self.layout(scale).columns
        count = max(self.trials_of(column) for column in columns) if scale == PAPER else DEFAULT_TRIALS
        return tuple(range(count))

    def keeps(self, run: RunSpec, scale: str, seeds_given: bool) -> bool:
        """Whether a run of the expansion belongs to the table: at paper scale without --seeds, a column
        keeps the paper's number of trials (seeds 0 .. trials - 1)."""
        return seeds_given or scale != PAPER or run.seed < self.trials_of(run.column)

    def paper_cells(self) -> tuple[PaperCell, ...]:
        """Every number of the paper's table (none for a table without one)."""
        return paper_cells(self.paper_table) if self.paper_table else ()

    def unplaced_paper_cells(self, scale: str) -> tuple[PaperCell, ...]:
        """The paper's cells of this table that stand beside none of our cells at ``scale``."""
        placed = set(self.layout(scale).paper.values())
        return tuple(cell for cell in self.paper_cells() if cell not in placed)


TABLES: dict[str, TableSpec] = {}


def register_table(builder: Callable[[], TableSpec]) -> Callable[[], TableSpec]:
    """Decorator: register the table ``builder`` returns under the builder's name (``table1`` …)."""
    spec = builder()
    if spec.name != builder.__name__:
        raise ValueError(f"table builder {builder.__name__} returns a table named {spec.name!r}")
    register_spec(spec)
    return builder


def register_spec(spec: TableSpec) -> TableSpec:
    """Register a table built without a builder of its own (the stability tables)."""
    if spec.name in TABLES:
        raise ValueError(f"table {spec.name!r} is registered twice")
    TABLES[spec.name] = spec
    return spec


def get_table(name: str) -> TableSpec:
    if name not in TABLES:
        raise ConfigError(f"unknown table {name!r}; choose one of {', '.join(TABLES)} or all")
    return TABLES[name]


def run_id(*parts: str, seed: int) -> str:
    """A readable, filesystem-safe, deterministic id: ``modelnet40-cifar10-io-s0``."""
    safe = [UNSAFE_ID_CHARACTERS.sub("_", part.lower()).strip("_") for part in parts]
    return "-".join([part for part in safe if part] + [f"s{seed}"])
