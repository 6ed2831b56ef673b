"""The figures are written: bars, curves, and the learned T of fake checkpoints (tiny tensors)."""

import pytest
import torch

from image2point.experiments import get_table, plan_table
from image2point.experiments.aggregate import CellResult
from image2point.experiments.figures import load_learned_transforms, plot_bars, plot_curves, write_figures

pytest.importorskip("matplotlib")
PNG_MAGIC = b"\x89PNG"


def _cell(row, column, values):
    mean = sum(values) / len(values) if values else None
    std = 1.0 if len(values) > 1 else None
    return CellResult(row, column, "overall_accuracy", "ok" if values else "missing", (), (), tuple(values), mean,
                      std, len(values), 3, None, None if values else "no weights")


def test_bars_and_curves(tmp_path):
    cells = [_cell("io", "A", [30, 32]), _cell("scratch", "A", [40]), _cell("io", "B", []), _cell("scratch", "B", [])]
    bars = plot_bars(cells, ("io", "scratch"), ("A", "B"), "schemes", tmp_path / "bars.png")
    curves = plot_curves(cells, ("io", "scratch"), ("A", "B"), "curves", tmp_path / "curves.png")
    assert bars.read_bytes()[:4] == PNG_MAGIC and curves.read_bytes()[:4] == PNG_MAGIC
    empty = [_cell("io", "A", [])]
    assert plot_bars(empty, ("io",), ("A",), "none", tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()


def _fake_checkpoint(path, shared: bool):
    """A training checkpoint with learnable T of 3x3 kernels: one tied tensor, or one per conv."""
    names = ("backbone.layer1.0.conv1", "backbone.layer1.0.conv2", "backbone.layer2.0.conv1")
    tied = torch.randn(9, 27)
    model = {f"{name}.transform.transform": tied if shared else torch.randn(9, 27) for name in names}
    model["backbone.layer1.0.bn1.weight"] = torch.ones(4)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model, "config": {"model": {"normalize_t": True}}}, path)
    return path


def test_learned_transforms_are_read_by_name(tmp_path):
    per_conv = load_learned_transforms(_fake_checkpoint(tmp_path / "a.pt", shared=False))
    assert list(per_conv) == ["backbone.layer1.0.conv1", "backbone.layer1.0.conv2", "backbone.layer2.0.conv1"]
    assert all(tensor.shape == (9, 27) for tensor in per_conv.values())
    assert len(load_learned_transforms(_fake_checkpoint(tmp_path / "b.pt", shared=True))) == 1


def test_table_figures_from_run_dirs(small_context, write_metrics):
    table7 = get_table("table7")
    plans = plan_table(table7, small_context, (0,))
    for plan in plans:
        row = plan.spec.row
        if plan.spec.column == "ModelNet40" and row.startswith("learned T") and "default init" in row:
            _fake_checkpoint(plan.run_dir / "best.pt", shared="shared" in plan.spec.row)
    written = write_figures(table7, plans, small_context)
    assert [path.name for path in written] == ["table7_learned_t_modelnet40.png"]
    assert written[0].read_bytes()[:4] == PNG_MAGIC
    table1 = get_table("table1")
    plans = plan_table(table1, small_context, (0, 1))
    for plan in plans:
        if plan.spec.dataset == "modelnet40":
            write_metrics(plan.run_dir, accuracy=0.2 + 0.05 * plan.spec.seed)
    assert [path.name for path in write_figures(table1, plans, small_context)] == ["table1_schemes.png"]
    table3 = get_table("table3")
    plans = plan_table(table3, small_context, (0, 1))
    for plan in plans:
        write_metrics(plan.run_dir, accuracy=0.1 * (1 + plan.spec.seed))
    assert [path.name for path in write_figures(table3, plans, small_context)] == ["table3_data_efficiency.png"]
