"""A table of the paper as data: its layout, the paper's numbers, and the grid of runs that fills it."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from image2point.errors import ConfigError
from image2point.experiments.scales import SCALES

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


@dataclass(frozen=True)
class TableLayout:
    """Row and column labels at one scale, and the headline metric of every column."""

    rows: tuple[str, ...]
    columns: tuple[str, ...]
    metrics: Mapping[str, str]

    def __post_init__(self) -> None:
        if set(self.metrics) != set(self.columns):
            raise ValueError(f"every column needs a metric: columns {self.columns}, metrics {sorted(self.metrics)}")


Expand = Callable[[str, Sequence[int]], list[RunSpec]]


@dataclass(frozen=True)
class TableSpec:
    """A table of the paper: what it asks, its layout per scale, and how (scale, seeds) become runs.

    ``paper`` holds the paper's numbers (percent) by (row, column) where transcribed; every other cell
    is shown as "n/t". ``notes`` apply at every scale, ``scale_notes`` at one.
    """

    name: str
    title: str
    question: str
    layouts: Mapping[str, TableLayout]
    expand: Expand
    paper: Mapping[tuple[str, str], float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    scale_notes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def layout(self, scale: str) -> TableLayout:
        if scale not in self.layouts:
            raise ConfigError(f"{self.name} has no layout for scale {scale!r}; choose one of {', '.join(SCALES)}")
        return self.layouts[scale]

    def runs(self, scale: str, seeds: Sequence[int]) -> list[RunSpec]:
        """The grid of runs, checked: every run in a cell of the layout, run ids unique."""
        layout = self.layout(scale)
        runs = self.expand(scale, seeds)
        seen: set[str] = set()
        for run in runs:
            if run.row not in layout.rows or run.column not in layout.columns:
                raise ValueError(f"{self.name}: run {run.run_id} is outside the layout ({run.row!r}, {run.column!r})")
            if run.run_id in seen:
                raise ValueError(f"{self.name}: run id {run.run_id} appears twice")
            seen.add(run.run_id)
        return runs

    def notes_for(self, scale: str) -> tuple[str, ...]:
        return self.notes + tuple(self.scale_notes.get(scale, ()))


TABLES: dict[str, TableSpec] = {}


def register_table(builder: Callable[[], TableSpec]) -> Callable[[], TableSpec]:
    """Decorator: register the table ``builder`` returns under the builder's name (``table1`` …)."""
    spec = builder()
    if spec.name != builder.__name__:
        raise ValueError(f"table builder {builder.__name__} returns a table named {spec.name!r}")
    if spec.name in TABLES:
        raise ValueError(f"table {spec.name!r} is registered twice")
    TABLES[spec.name] = spec
    return builder


def get_table(name: str) -> TableSpec:
    if name not in TABLES:
        raise ConfigError(f"unknown table {name!r}; choose one of {', '.join(TABLES)} or all")
    return TABLES[name]


def run_id(*parts: str, seed: int) -> str:
    """A readable, filesystem-safe, deterministic id: ``modelnet40-cifar10-io-s0``."""
    safe = [UNSAFE_ID_CHARACTERS.sub("_", part.lower()).strip("_") for part in parts]
    return "-".join([part for part in safe if part] + [f"s{seed}"])
