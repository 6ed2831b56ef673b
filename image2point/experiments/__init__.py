"""The paper's study as commands: each table of Image2Point (Xu et al., ECCV 2022) as a grid of training runs
at two scales, a runner that skips finished runs and resumes interrupted ones, aggregation into the
paper's layout, and figures. ``image2point experiment table1 --scale small --seeds 3``."""

from image2point.experiments import tables as _tables  # noqa: F401  (registers table1 … table14)
from image2point.experiments import convergence as _convergence  # noqa: F401  (registers the study's figure)
from image2point.experiments.aggregate import CellResult, collect_cells, summarise, write_table_results
from image2point.experiments.paper_numbers import PAPER_CELLS, PaperCell, PaperKind, paper_cell, paper_cells
from image2point.experiments.plan import ExperimentContext, PlannedRun, make_context, parse_seeds, plan_run, plan_table
from image2point.experiments.runner import ExperimentRequest, run_experiment
from image2point.experiments.scales import PAPER, SCALES, SMALL, scale_setup
from image2point.experiments.sources import SOURCES, WeightSource, register_source, resolve_source, shared_root
from image2point.experiments.specs import TABLES, RunSpec, TableLayout, TableSpec, get_table, register_table

__all__ = [
    "PAPER",
    "PAPER_CELLS",
    "SCALES",
    "SMALL",
    "SOURCES",
    "TABLES",
    "CellResult",
    "ExperimentContext",
    "ExperimentRequest",
    "PaperCell",
    "PaperKind",
    "PlannedRun",
    "RunSpec",
    "TableLayout",
    "TableSpec",
    "WeightSource",
    "collect_cells",
    "get_table",
    "make_context",
    "paper_cell",
    "paper_cells",
    "parse_seeds",
    "plan_run",
    "plan_table",
    "register_source",
    "register_table",
    "resolve_source",
    "run_experiment",
    "scale_setup",
    "shared_root",
    "summarise",
    "write_table_results",
]
