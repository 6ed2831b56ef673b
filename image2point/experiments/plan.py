"""Plan the runs of a table: where each runs, and whether it is finished, resumable, pending, missing or
without data. Aggregation and figures read plans; :mod:`image2point.experiments.runner` executes them.

A run directory with ``metrics.json`` is finished; one with ``last.pt`` but no ``metrics.json`` is
resumed; otherwise the run is pending. Runs whose weights or data are not available are listed as
missing / no data and never run. A run that is not what the plan now asks for (another config, another or a
vanished source pretraining: :mod:`image2point.experiments.staleness`) is stale: never resumed, never read into
a table, and refused before anything trains.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from image2point.errors import ConfigError, DataError
from image2point.experiments.folds import expand_folds
from image2point.experiments.scales import PAPER, REPOSITORY_ROOT, SMALL, scale_setup
from image2point.experiments.sources import (
    PRETRAINING_DATASETS,
    SHARED_ENV,
    SOURCES,
    Pretraining,
    SourceContext,
    resolve_source,
    shared_root,
)
from image2point.experiments.specs import TABLES, RunSpec, TableSpec, get_table
from image2point.experiments.staleness import pretraining_stale_reason, run_stale_reason
from image2point.train.config import RunConfig, load_config

DEFAULT_OUT_DIR = Path("runs/experiments")
ALL_TABLES = "all"
METRICS_FILE = "metrics.json"
LAST_CHECKPOINT = "last.pt"
FINISHED, RESUME, PENDING, MISSING, NO_DATA, STALE = "finished", "resume", "pending", "missing", "no data", "stale"
RUNNABLE = (RESUME, PENDING)
# Runs a table cannot use: their cells show the reason instead of a value.
UNAVAILABLE = (MISSING, NO_DATA, STALE)
PERCENT = 100.0


@dataclass(frozen=True)
class ExperimentContext:
    """What the command line says beyond the table: scale, output directory, given weights and data."""

    scale: str = SMALL
    out_dir: Path = DEFAULT_OUT_DIR
    weights: Mapping[str, Path] = field(default_factory=dict)
    data_roots: Mapping[str, Path] = field(default_factory=dict)
    shared: Path = field(default_factory=shared_root)
    # Cross-validate the datasets the scale names folds for (ScaleSetup.folds); False: official splits.
    cross_validate: bool = False

    def source_context(self) -> SourceContext:
        return SourceContext(self.scale, scale_setup(self.scale).backbone, self.out_dir, self.weights,
                             self.data_roots, self.shared)


@dataclass(frozen=True)
class PlannedRun:
    """A run with its directory, status and full override list (``reason`` for missing / no data)."""

    spec: RunSpec
    run_dir: Path
    status: str
    overrides: tuple[str, ...]
    reason: str | None = None
    pretraining: Pretraining | None = None
    # The cross-validation fold this run evaluates (image2point.experiments.folds); None: official splits.
    fold: int | None = None

    @property
    def recipe(self) -> Path:
        return REPOSITORY_ROOT / self.spec.recipe


def parse_seeds(text: str | None) -> tuple[int, ...] | None:
    """``"3"``: seeds 0, 1, 2; ``"0,1,2"`` or ``"5,"``: exactly those seeds; None (no --seeds): None, the
    table's default (three; at paper scale the paper's trials per column)."""
    if text is None:
        return None
    try:
        if "," in text:
            seeds = tuple(int(part) for part in text.split(",") if part.strip())
        else:
            seeds = tuple(range(int(text)))
    except ValueError:
        raise ConfigError(f"--seeds {text!r}: expected a count (3) or a comma-separated list (0,1,2)") from None
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds {text!r}: expected at least one seed, none negative, none repeated")
    return seeds


def format_seeds(seeds: Sequence[int]) -> str:
    """The ``--seeds`` text that :func:`parse_seeds` reads back as ``seeds``."""
    if tuple(seeds) == tuple(range(len(seeds))):
        return str(len(seeds))
    return ",".join(map(str, seeds)) + ("," if len(seeds) == 1 else "")


def parse_assignments(items: Sequence[str], option: str, known: Sequence[str]) -> dict[str, Path]:
    """``NAME=PATH`` pairs of ``--weights`` / ``--data-root``; NAME (before any ``:ARCH``) must be known and
    PATH must exist."""
    parsed: dict[str, Path] = {}
    for item in items:
        name, separator, path = item.partition("=")
        if not separator or not name or not path:
            raise ConfigError(f"{option} {item!r}: expected NAME=PATH")
        if name.partition(":")[0] not in known:
            raise ConfigError(f"{option} {item!r}: unknown name {name.partition(':')[0]!r}; known: {', '.join(known)}")
        if not Path(path).exists():
            raise DataError(f"no such file or directory ({option} {name}=...)", path)
        parsed[name] = Path(path).resolve()
    return parsed


def make_context(scale: str, out_dir: str | Path, weights: Sequence[str] = (),
                 data_roots: Sequence[str] = (), cross_validate: bool = False) -> ExperimentContext:
    """Validate the command line's scale, ``--weights`` and ``--data-root`` into a context."""
    setup = scale_setup(scale)
    datasets = (*setup.datasets, *PRETRAINING_DATASETS)
    return ExperimentContext(scale, Path(out_dir), parse_assignments(weights, "--weights", tuple(SOURCES)),
                             parse_assignments(data_roots, "--data-root", datasets), shared_root(), cross_validate)


def table_names(name: str) -> list[str]:
    """``all``: the paper's fourteen tables (studies of ours run by name only)."""
    if name == ALL_TABLES:
        return [key for key, table in TABLES.items() if table.is_paper_table]
    return [get_table(name).name]


def _data_root(spec: RunSpec, context: ExperimentContext) -> tuple[Path | None, str | None]:
    """The dataset's root for ``data.root`` (None: the recipe's own), or why there is no data."""
    if spec.dataset in context.data_roots:
        return context.data_roots[spec.dataset], None
    if context.scale == PAPER:
        return None, None
    shared_path = scale_setup(context.scale).dataset(spec.dataset).shared_path
    if shared_path is None:
        return None, (f"{spec.dataset} is not in the shared directory; pass --data-root {spec.dataset}=PATH")
    root = context.shared / shared_path
    if not root.is_dir():
        raise DataError(f"shared {spec.dataset} data not found (set {SHARED_ENV} or pass --data-root "
                        f"{spec.dataset}=PATH)", root)
    return root, None


def plan_run(spec: RunSpec, context: ExperimentContext) -> PlannedRun:
    """Where ``spec`` runs, whether it is finished, resumable, pending, missing or without data."""
    run_dir = context.out_dir / spec.table / spec.run_id
    root, no_data = _data_root(spec, context)
    resolution = None
    if spec.source is not None:
        resolution = resolve_source(spec.source, spec.arch or scale_setup(context.scale).backbone,
                                    context.source_context())
    checkpoint = None if resolution is None else resolution.checkpoint
    overrides = (*spec.overrides, *(() if root is None else (f"data.root={root}",)),
                 f"model.pretrained={checkpoint if checkpoint is not None else 'null'}", f"train.run_dir={run_dir}")
    if no_data is not None:
        return PlannedRun(spec, run_dir, NO_DATA, overrides, no_data)
    if resolution is not None and resolution.missing is not None:
        return PlannedRun(spec, run_dir, MISSING, overrides, resolution.missing)
    if (run_dir / METRICS_FILE).is_file():
        status = FINISHED
    elif (run_dir / LAST_CHECKPOINT).is_file():
        status = RESUME
    else:
        status = PENDING
    pretraining = None if resolution is None else resolution.pretraining
    stale = _stale_reason(spec, run_dir, overrides, status, pretraining)
    if stale is not None:
        return PlannedRun(spec, run_dir, STALE, overrides, stale, pretraining)
    return PlannedRun(spec, run_dir, status, overrides, None, pretraining)


def _stale_reason(spec: RunSpec, run_dir: Path, overrides: Sequence[str], status: str,
                  pretraining: Pretraining | None) -> str | None:
    """Why the run is stale (image2point.experiments.staleness), or None."""
    if pretraining is not None and (reason := pretraining_stale_reason(pretraining)) is not None:
        return reason
    if status == PENDING:
        return None
    return run_stale_reason(run_dir, load_config(REPOSITORY_ROOT / spec.recipe, list(overrides)), pretraining)


def refuse_stale(plans: Sequence[PlannedRun]) -> None:
    """Stop before anything trains when a planned run is stale: one line, the first such run and its reason."""
    stale = [planned for planned in plans if planned.status == STALE]
    if stale:
        others = f" ({len(stale) - 1} more stale runs)" if len(stale) > 1 else ""
        raise ConfigError(f"{stale[0].run_dir}: {stale[0].reason}{others}")


def plan_table(table: TableSpec, context: ExperimentContext, seeds: Sequence[int]) -> list[PlannedRun]:
    """Every run of the table; with ``context.cross_validate`` each is repeated per fold where the scale
    names folds for its dataset (run id ``...-sN-fK``, see :mod:`image2point.experiments.folds`)."""
    folds = scale_setup(context.scale).folds if context.cross_validate else {}
    return [dataclasses.replace(plan_run(fold_spec, context), fold=fold)
            for spec in table.runs(context.scale, seeds)
            for fold_spec, fold in expand_folds(spec, folds.get(spec.dataset))]


def load_run_config(planned: PlannedRun) -> RunConfig:
    """The run's typed config: its recipe with every override (validates keys and values)."""
    return load_config(planned.recipe, list(planned.overrides))


def describe_plan(table: TableSpec, plans: Sequence[PlannedRun]) -> list[str]:
    """The dry-run listing: one line per run (id, status, run dir), then its recipe and overrides."""
    lines = [f"{table.name}: {table.title} ({len(plans)} runs)"]
    for planned in plans:
        status = planned.status
        if planned.reason:
            status = f"{status}: {planned.reason}"
        elif planned.pretraining is not None and not planned.pretraining.finished and status in RUNNABLE:
            status = f"{status} (after pretraining {planned.pretraining.name})"
        lines.append(f"  {planned.spec.run_id}  [{status}]  {planned.run_dir}")
        lines.append(f"      {planned.spec.recipe} {' '.join(planned.overrides)}")
    return lines


def headline_value(metrics_file: Path, metric: str) -> float | None:
    """The final-epoch ``metric`` of a finished run, in percent (None when undefined)."""
    value = json.loads(metrics_file.read_text())["final"].get(metric)
    return None if value is None else value * PERCENT
