"""Run a planned table: execute what is pending or resumable (``run_training``, resuming where a run
stopped), skip the rest, then write the table and its figures. Every run in ``<out>/<table>/<run_id>/``;
where and in which state each run is comes from :mod:`image2point.experiments.plan`.
"""

from __future__ import annotations

import datetime
import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from image2point.errors import ConfigError
from image2point.experiments.aggregate import write_table_results
from image2point.experiments.claims import CLAIMS_COMMAND, claim_plans, select_claims, write_claims
from image2point.experiments.figures import write_figures
from image2point.experiments.fractal_sources import check_fractaldb_disk
from image2point.experiments.plan import (
    DEFAULT_OUT_DIR,
    FINISHED,
    METRICS_FILE,
    PERCENT,
    RESUME,
    UNAVAILABLE,
    ExperimentContext,
    PlannedRun,
    describe_plan,
    format_seeds,
    headline_value,
    load_run_config,
    plan_table,
    refuse_stale,
    table_names,
)
from image2point.experiments.protocol import describe_protocol
from image2point.experiments.scales import METRIC_NAMES, scale_setup
from image2point.experiments.sources import Pretraining, run_pretraining
from image2point.experiments.staleness import record_run_source
from image2point.experiments.specs import DEFAULT_TRIALS, TABLES, TableSpec


def execute_plan(table: TableSpec, plans: Sequence[PlannedRun], context: ExperimentContext,
                 echo: Callable[[str], None] = print) -> None:
    """Run what is pending or resumable, one after another; skip the rest. One line per run."""
    from image2point.train.loop import run_training

    metrics = table.layout(context.scale).metrics
    for index, planned in enumerate(plans, start=1):
        prefix = f"[{index}/{len(plans)}] {table.name} {planned.spec.run_id}:"
        metric = metrics[planned.spec.column]
        if planned.status in UNAVAILABLE:
            echo(f"{prefix} {planned.status} ({planned.reason})")
            continue
        if planned.status == FINISHED:
            echo(f"{prefix} skipped (finished), {_format_value(planned.run_dir, metric)}")
            continue
        started = time.perf_counter()
        if planned.pretraining is not None and not planned.pretraining.finished:
            _pretrain(planned.pretraining, context, echo)
            started = time.perf_counter()
        config = load_run_config(planned)
        if planned.pretraining is not None:
            record_run_source(planned.run_dir, planned.pretraining)
        # A directory that exists (an interrupted run, or only the source record) continues: without a last.pt
        # the loop starts afresh in it, where a fresh start would refuse a non-empty directory.
        resume = planned.status == RESUME or planned.run_dir.exists()
        run_training(config, resume=resume, quiet=True)
        action = "resumed" if planned.status == RESUME else "started"
        echo(f"{prefix} {action}, {_format_value(planned.run_dir, metric)} ({time.perf_counter() - started:.1f} s)")


def _format_value(run_dir: Path, metric: str) -> str:
    value = headline_value(run_dir / METRICS_FILE, metric)
    shown = "undefined" if value is None else f"{value:.2f} %"
    return f"{METRIC_NAMES[metric]} {shown}"


def _pretrain(pretraining: Pretraining, context: ExperimentContext, echo: Callable[[str], None]) -> None:
    import torch

    threads = torch.get_num_threads()
    wanted = scale_setup(context.scale).threads
    started = time.perf_counter()
    try:
        if wanted is not None:
            torch.set_num_threads(wanted)
        top1 = run_pretraining(pretraining)
    finally:
        torch.set_num_threads(threads)
    echo(f"pretrained {pretraining.name}: validation top-1 {top1 * PERCENT:.2f} % "
         f"({time.perf_counter() - started:.1f} s) -> {pretraining.checkpoint}")


def command_line(name: str, context: ExperimentContext, seeds: Sequence[int] | None,
                 claims: Sequence[str] = ()) -> str:
    """The command that makes a table, as written in its header (no --seeds: the scale's default trials)."""
    parts = ["image2point experiment", name, f"--scale {context.scale}"]
    if seeds is not None:
        parts.append(f"--seeds {format_seeds(seeds)}")
    if context.cross_validate:
        parts.append("--folds")
    parts += [f"--claim {shlex.quote(selector)}" for selector in claims]
    if context.out_dir != DEFAULT_OUT_DIR:
        parts.append(f"--out-dir {context.out_dir}")
    parts += [f"--weights {key}={path}" for key, path in context.weights.items()]
    parts += [f"--data-root {key}={path}" for key, path in context.data_roots.items()]
    return " ".join(parts)


def plan_trials(table: TableSpec, context: ExperimentContext, seeds: Sequence[int] | None) -> list[PlannedRun]:
    """The table's plan for ``seeds``; without seeds, the table's default ones, and at paper scale each
    column keeps the paper's number of trials (Table 3: 20 / 15 / 10 / 3)."""
    chosen = tuple(seeds) if seeds is not None else table.default_seeds(context.scale)
    return [planned for planned in plan_table(table, context, chosen)
            if table.keeps(planned.spec, context.scale, seeds is not None)]


@dataclass(frozen=True)
class ExperimentRequest:
    """One ``image2point experiment`` invocation; ``seeds`` None: three at small scale, the paper's trials
    (per column) at paper scale."""

    name: str
    context: ExperimentContext
    seeds: tuple[int, ...] | None
    dry_run: bool = False
    aggregate_only: bool = False
    # ``claims`` only: the claims to train and judge (claims.select_claims); empty: every claim.
    claims: tuple[str, ...] = ()
    date: str = field(default_factory=lambda: datetime.date.today().isoformat())


def run_experiment(request: ExperimentRequest, echo: Callable[[str], None] = print) -> list[Path]:
    """Dry-run, run or aggregate the requested tables, or judge the paper's claims from finished runs; returns
    the files written (tables, figures, claims)."""
    if request.name == CLAIMS_COMMAND:
        return _run_claims(request, echo)
    if request.claims:
        raise ConfigError(f"--claim selects claims of 'image2point experiment {CLAIMS_COMMAND}', not of {request.name}")
    names = table_names(request.name)
    plans = {name: plan_trials(TABLES[name], request.context, request.seeds) for name in names}
    for name in names:
        for planned in plans[name]:
            load_run_config(planned)
    if request.dry_run:
        for name in names:
            table = TABLES[name]
            # A stability table's runs are its main table's, listed by the main table's dry run.
            listing = describe_plan(table, plans[name]) if table.stability_of is None else []
            for line in (*describe_protocol(table, plans[name], request.context), *listing):
                echo(line)
        return []
    if not request.aggregate_only:
        # A stale run or a FractalDB render that cannot fit stops the experiment before anything runs; a
        # stability table trains nothing of its own.
        trained = [planned for name in names if TABLES[name].stability_of is None for planned in plans[name]]
        refuse_stale(trained)
        check_fractaldb_disk([planned.pretraining for planned in trained if planned.pretraining is not None],
                             request.context.out_dir)
    written: list[Path] = []
    for name in names:
        table = TABLES[name]
        if table.stability_of is not None:
            echo(f"{name}: no runs of its own; aggregates the runs of {table.stability_of}")
        elif not request.aggregate_only:
            execute_plan(table, plans[name], request.context, echo)
            plans[name] = plan_trials(table, request.context, request.seeds)
        command = command_line(name, request.context, request.seeds)
        files = write_table_results(table, plans[name], request.context, command, request.date)
        files += write_figures(table, plans[name], request.context)
        for path in files:
            echo(f"wrote {path}")
        written += files
    return written


def _run_claims(request: ExperimentRequest, echo: Callable[[str], None]) -> list[Path]:
    """Train the runs of the claims' cells that are not finished (only those cells, not whole tables; with
    ``--claim`` only the named claims'), then judge every claim; ``--dry-run`` lists those runs,
    ``--aggregate-only`` judges what has finished."""
    context = request.context
    seeds = request.seeds if request.seeds is not None else tuple(range(DEFAULT_TRIALS))
    claims = select_claims(request.claims)
    plans = claim_plans(context, seeds, claims)
    for runs in plans.values():
        for planned in runs:
            load_run_config(planned)
    if request.dry_run:
        for name, runs in plans.items():
            for line in describe_plan(TABLES[name], runs):
                echo(line)
    elif not request.aggregate_only:
        refuse_stale([planned for runs in plans.values() for planned in runs])
        check_fractaldb_disk([planned.pretraining for runs in plans.values() for planned in runs
                              if planned.pretraining is not None], context.out_dir)
        for name, runs in plans.items():
            execute_plan(TABLES[name], runs, context, echo)
    # The judgement covers every claim (claims.md always says what the runs on disk support); --claim chose
    # only what trains.
    return write_claims(context, seeds, command_line(CLAIMS_COMMAND, context, request.seeds, request.claims), echo,
                        not request.dry_run)
