"""Figures next to a table (PNG, matplotlib Agg): schemes as bars (Table 1), data-efficiency curves (Table 3),
and the learned filter transforms T as images (Table 7, as the paper's Figures 5-6)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch

from image2point.checkpoint import atomic_write, load_training_checkpoint
from image2point.errors import CheckpointError
from image2point.experiments.aggregate import OK, CellResult, collect_cells
from image2point.experiments.plan import STALE, ExperimentContext, PlannedRun
from image2point.experiments.scales import METRIC_NAMES
from image2point.experiments.specs import TableSpec
from image2point.experiments.tables.table7 import learned_row
from image2point.inflate.transforms import filter_transform

BEST_CHECKPOINT = "best.pt"
# A learnable T is the parameter ``transform`` of the FilterTransform a conv keeps as ``transform``
# (image2point/inflate/learnable.py, InflatedSparseConv3d in image2point/inflate/converter.py).
TRANSFORM_KEY_SUFFIX = ".transform.transform"
KERNEL_SIZE = 3
DPI = 120
PER_CONV_COLUMNS = 6

FigureWriter = Callable[[TableSpec, Sequence[PlannedRun], ExperimentContext], list[Path]]
FIGURES: dict[str, FigureWriter] = {}


def register_figure(table_name: str) -> Callable[[FigureWriter], FigureWriter]:
    """Decorator: ``writer(table, plans, context)`` draws the figures of ``table_name``."""

    def decorator(writer: FigureWriter) -> FigureWriter:
        FIGURES[table_name] = writer
        return writer

    return decorator


def write_figures(table: TableSpec, plans: Sequence[PlannedRun], context: ExperimentContext) -> list[Path]:
    """The table's figures (none for tables without one, or before any run has finished)."""
    writer = FIGURES.get(table.name)
    return [] if writer is None else writer(table, plans, context)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure, path: Path) -> Path:
    plt = _pyplot()
    with atomic_write(path, "wb") as stream:
        figure.savefig(stream, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(figure)
    return path


def _columns_with_results(cells: Sequence[CellResult], columns: Sequence[str]) -> list[str]:
    return [column for column in columns if any(c.column == column and c.status == OK for c in cells)]


def plot_bars(cells: Sequence[CellResult], rows: Sequence[str], columns: Sequence[str], title: str,
              out: Path) -> Path | None:
    """One panel per column with results: a bar per row (mean) with its std as error bar."""
    shown = _columns_with_results(cells, columns)
    if not shown:
        return None
    plt = _pyplot()
    by_cell = {(cell.row, cell.column): cell for cell in cells}
    figure, axes = plt.subplots(1, len(shown), figsize=(4.2 * len(shown), 3.6), squeeze=False)
    for axis, column in zip(axes[0], shown, strict=True):
        row_cells = [by_cell[(row, column)] for row in rows]
        positions = [index for index, cell in enumerate(row_cells) if cell.status == OK]
        axis.bar(positions, [row_cells[i].mean for i in positions],
                 yerr=[row_cells[i].std or 0.0 for i in positions], capsize=3, color="tab:blue", alpha=0.8)
        axis.set_xticks(range(len(rows)), rows, rotation=45, ha="right")
        metric = row_cells[positions[0]].metric
        axis.set_title(column)
        axis.set_ylabel(f"{METRIC_NAMES[metric]} (%)")
    figure.suptitle(title)
    return _save(figure, out)


def plot_curves(cells: Sequence[CellResult], rows: Sequence[str], columns: Sequence[str], title: str,
                out: Path) -> Path | None:
    """Metric over the columns (data sizes), one line per row with a mean ± std band."""
    if not _columns_with_results(cells, columns):
        return None
    plt = _pyplot()
    by_cell = {(cell.row, cell.column): cell for cell in cells}
    figure, axis = plt.subplots(figsize=(5.5, 3.8))
    metric = next(cell.metric for cell in cells if cell.status == OK)
    for row in rows:
        points = [(index, by_cell[(row, column)]) for index, column in enumerate(columns)
                  if by_cell[(row, column)].status == OK]
        if not points:
            continue
        xs = [index for index, _ in points]
        means = [cell.mean for _, cell in points]
        spreads = [cell.std or 0.0 for _, cell in points]
        axis.plot(xs, means, marker="o", label=row)
        axis.fill_between(xs, [m - s for m, s in zip(means, spreads)], [m + s for m, s in zip(means, spreads)],
                          alpha=0.2)
    axis.set_xticks(range(len(columns)), columns)
    axis.set_xlabel("training data")
    axis.set_ylabel(f"{METRIC_NAMES[metric]} (%)")
    axis.legend(fontsize="small")
    axis.set_title(title)
    return _save(figure, out)


def load_learned_transforms(checkpoint: Path) -> dict[str, torch.Tensor]:
    """The learnable T tensors of a training checkpoint by conv name, each tied (shared) tensor once."""
    transforms, seen = {}, set()
    for key, tensor in load_training_checkpoint(checkpoint).model.items():
        if key.endswith(TRANSFORM_KEY_SUFFIX) and tensor.data_ptr() not in seen:
            seen.add(tensor.data_ptr())
            transforms[key.removesuffix(TRANSFORM_KEY_SUFFIX)] = tensor.float()
    return transforms


def plot_transforms(default: torch.Tensor, shared: torch.Tensor | None, per_conv: Mapping[str, torch.Tensor],
                    title: str, out: Path) -> Path:
    """The default T, the shared learned T and every per-conv learned T as K²×K³ images; each learned panel
    says how far it moved from the default, ‖T − T_default‖ / ‖T_default‖."""
    plt = _pyplot()

    def moved(name: str, tensor: torch.Tensor) -> str:
        return f"{name} (Δ {float((tensor - default).norm() / default.norm()):.2f})"

    panels = [("default T", default)] + ([(moved("learned T, shared", shared), shared)] if shared is not None else [])
    panels += [(moved(name.removeprefix("backbone."), tensor), tensor) for name, tensor in per_conv.items()]
    columns = min(PER_CONV_COLUMNS, len(panels))
    rows = -(-len(panels) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(2.6 * columns, 1.3 * rows + 0.6), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, (name, tensor) in zip(axes.flat, panels):
        limit = float(tensor.abs().max()) or 1.0
        axis.imshow(tensor.numpy(), cmap="coolwarm", vmin=-limit, vmax=limit, interpolation="nearest")
        axis.set_title(name, fontsize=7)
    figure.suptitle(title, fontsize=9)
    return _save(figure, out)


@register_figure("table1")
def _table1_figure(table: TableSpec, plans: Sequence[PlannedRun], context: ExperimentContext) -> list[Path]:
    layout = table.layout(context.scale)
    cells = collect_cells(table, plans, context.scale)
    path = plot_bars(cells, layout.rows, layout.columns, f"{table.name}: {table.title} ({context.scale} scale)",
                     context.out_dir / table.name / "table1_schemes.png")
    return [] if path is None else [path]


@register_figure("table3")
def _table3_figure(table: TableSpec, plans: Sequence[PlannedRun], context: ExperimentContext) -> list[Path]:
    layout = table.layout(context.scale)
    cells = collect_cells(table, plans, context.scale)
    path = plot_curves(cells, layout.rows, layout.columns, f"{table.name}: {table.title} ({context.scale} scale)",
                       context.out_dir / table.name / "table3_data_efficiency.png")
    return [] if path is None else [path]


def _first_checkpoint(plans: Sequence[PlannedRun], row: str, column: str) -> Path | None:
    candidates = sorted((p for p in plans if p.spec.row == row and p.spec.column == column and p.status != STALE),
                        key=lambda p: p.spec.seed)
    return next((p.run_dir / BEST_CHECKPOINT for p in candidates if (p.run_dir / BEST_CHECKPOINT).is_file()), None)


@register_figure("table7")
def _table7_figure(table: TableSpec, plans: Sequence[PlannedRun], context: ExperimentContext) -> list[Path]:
    """Per column with a finished per-conv run: its learned Ts beside the default T and the shared one."""
    written = []
    for column in table.layout(context.scale).columns:
        per_conv_checkpoint = _first_checkpoint(plans, learned_row(context.scale, "per_conv", "default"), column)
        if per_conv_checkpoint is None:
            continue
        shared_checkpoint = _first_checkpoint(plans, learned_row(context.scale, "shared", "default"), column)
        shared = None
        if shared_checkpoint is not None:
            shared = next(iter(load_learned_transforms(shared_checkpoint).values()), None)
        config = load_training_checkpoint(per_conv_checkpoint).config
        if config is None:
            raise CheckpointError(f"{per_conv_checkpoint}: holds no run config")
        default = filter_transform("default", KERNEL_SIZE, config["model"]["normalize_t"])
        slug = column.lower().replace(" ", "_")
        written.append(plot_transforms(
            default, shared, load_learned_transforms(per_conv_checkpoint),
            f"{table.name}, {column}: learned T (rows: 2D kernel entries, columns: 3D kernel entries); "
            f"{per_conv_checkpoint.parent.name}",
            context.out_dir / table.name / f"table7_learned_t_{slug}.png"))
    return written
