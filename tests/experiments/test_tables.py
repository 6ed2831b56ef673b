"""The fourteen tables expand into the grids they promise: counts, unique deterministic ids, seeds, layouts."""

import re

import pytest

from image2point.errors import ConfigError
from image2point.experiments import TABLES, get_table
from image2point.experiments.scales import REPOSITORY_ROOT
from image2point.experiments.specs import run_id
from image2point.inflate.transforms import TRANSFORM_NAMES
from image2point.train.config import load_config

# Runs per seed: cells of the layout that have runs, at each scale (stability tables: their main table's).
RUNS_PER_SEED = {
    "small": {"table1": 21, "table2": 6, "table3": 8, "table4": 29, "table5": 10, "table6": 9, "table7": 20},
    "paper": {"table1": 24, "table2": 6, "table3": 8, "table4": 21, "table5": 18, "table6": 15, "table7": 10},
}
MAIN_OF = {f"table{number + 7}": f"table{number}" for number in range(1, 8)}
ALL_TABLES = [f"table{number}" for number in range(1, 15)]
SAFE_ID = re.compile(r"[a-z0-9_-]+-s\d+")


def test_all_fourteen_tables_are_registered_in_order():
    # Then the studies of ours that are no table of the paper (tests/experiments/test_convergence.py).
    assert list(TABLES) == [*ALL_TABLES, "convergence"]
    assert [TABLES[name].paper_table for name in ALL_TABLES] == list(range(1, 15))
    assert {name: TABLES[name].stability_of for name in MAIN_OF} == MAIN_OF


@pytest.mark.parametrize("scale", ["small", "paper"])
@pytest.mark.parametrize("name", ALL_TABLES)
def test_grid_counts_ids_and_seeds(name, scale):
    table = get_table(name)
    main_name = MAIN_OF.get(name, name)
    runs = table.runs(scale, (0, 1, 2))
    assert len(runs) == 3 * RUNS_PER_SEED[scale][main_name]
    ids = [run.run_id for run in runs]
    assert len(set(ids)) == len(ids)
    assert all(SAFE_ID.fullmatch(run_id) and run_id.endswith(f"-s{run.seed}") for run_id, run in zip(ids, runs))
    assert table.runs(scale, (0, 1, 2)) == runs, "expansion must be deterministic"
    assert {run.seed for run in runs} == {0, 1, 2}
    for run in runs:
        assert f"train.seed={run.seed}" in run.overrides
        # A stability table plans its main table's runs: same directories, no runs of its own.
        assert run.table == main_name
    layout = table.layout(scale)
    cells = {layout.runs_cell(run.row, run.column) for run in runs}
    assert cells == {layout.runs_cell(row, column) for row in layout.rows for column in layout.columns}
    assert not cells & set(layout.same_runs_as)


def test_seed_lists_other_than_a_range():
    runs = get_table("table5").runs("small", (4, 7))
    assert {run.seed for run in runs} == {4, 7}
    assert all(run.run_id.endswith(("-s4", "-s7")) for run in runs)


@pytest.mark.parametrize("scale", ["small", "paper"])
def test_every_run_builds_a_valid_config(scale):
    for table in TABLES.values():
        if scale in table.absent_scales:
            continue
        for run in table.runs(scale, (0,)):
            config = load_config(REPOSITORY_ROOT / run.recipe, list(run.overrides))
            assert config.train.seed == 0


def test_table1_schemes_and_linear_variants():
    runs = {run.run_id: run for run in get_table("table1").runs("small", (0,))}
    assert "finetune.scheme=io_bn" in runs["modelnet40-cifar10-io_bn-s0"].overrides
    linear_net = runs["semantickitti-none-linear_net-s0"]
    assert {"model.backbone=none", "model.input_layer=linear", "model.head=linear"} <= set(linear_net.overrides)
    assert linear_net.source is None
    assert runs["modelnet40-none-scratch-s0"].source is None
    assert runs["s3dis-cifar10-io-s0"].dataset == "s3dis"


def test_small_scale_settings():
    run = next(iter(get_table("table1").runs("small", (0,))))
    assert {"data.num_points=1024", "model.normalize_t=true", "train.threads=1", "data.num_workers=0",
            "model.backbone=cifar_resnet20"} <= set(run.overrides)
    kitti = next(r for r in get_table("table1").runs("small", (0,)) if r.dataset == "semantickitti")
    assert {"data.voxel_size=0.3", "data.train_scans=[00/000000,00/000001]",
            "data.eval_scans=[00/000002]"} <= set(kitti.overrides)


def test_paper_scale_uses_the_paper_recipes_and_imagenet():
    runs = get_table("table1").runs("paper", (0,))
    assert {run.recipe for run in runs} == {f"configs/{name}/resnet18_io.yaml"
                                           for name in ("modelnet40", "s3dis", "semantickitti")}
    assert {run.source for run in runs} == {"imagenet", None}
    assert not any("train.threads=1" in run.overrides for run in runs)


def test_table1_paper_rows_include_scratch_with_linear_layers():
    table = get_table("table1")
    assert table.layout("paper").rows == ("I,O", "I,O,µ,σ", "I,O,µ,σ,W,b", "whole network", "from scratch",
                                          "linear I,O", "linear network (w/o backbone)", "from scratch (linear I,O)")
    scratch_linear = [run for run in table.runs("paper", (0,)) if run.row == "from scratch (linear I,O)"]
    assert len(scratch_linear) == 3 and all(run.source is None for run in scratch_linear)
    assert all({"model.input_layer=linear", "model.head=linear", "finetune.scheme=scratch"} <= set(run.overrides)
               for run in scratch_linear)
    # Small scale keeps its labels and runs.
    assert "from scratch (linear I,O)" not in table.layout("small").rows
    assert table.layout("small").rows[3:5] == ("all", "scratch")


def test_paper_cells_beside_ours():
    """At paper scale every paper cell of Tables 1-6 and 8-13 stands beside one of ours; Tables 7 and 14 leave
    exactly the handcrafted T1-T3 apart, which cannot be placed."""
    for name in ALL_TABLES:
        table = get_table(name)
        unplaced = {cell.column for cell in table.unplaced_paper_cells("paper")}
        assert unplaced == ({"T1", "T2", "T3"} if name in ("table7", "table14") else set()), name
    table1, table8 = get_table("table1").layout("paper"), get_table("table8").layout("paper")
    assert table1.paper[("I,O", "ModelNet40")].text() == "78.69"
    assert table8.paper[("I,O", "ModelNet40")].text() == "79.32 ± 0.46"
    assert ("linear network (w/o backbone)", "S3DIS") not in table1.paper
    assert "'-'" in table1.paper_gap("linear network (w/o backbone)", "S3DIS")
    # Table 7's default T is Table 1's I,O,µ,σ (83.45), its mean ± std Table 8's (83.11 ± 0.23).
    assert get_table("table7").layout("paper").paper[("default T (authors' z-axis)", "ModelNet40")].value == 83.45
    assert get_table("table14").layout("paper").paper[("default T (authors' z-axis)", "ModelNet40")].std == 0.23
    small = get_table("table1").layout("small")
    assert small.paper[("all", "ModelNet40")].value == 89.14 and small.paper[("linear I/O", "S3DIS")].value == 48.83


def test_paper_trials_per_column():
    table3 = get_table("table3")
    assert table3.default_seeds("paper") == tuple(range(20))
    assert table3.default_seeds("small") == (0, 1, 2)
    assert [table3.trials_of(column) for column in table3.layout("paper").columns] == [20, 15, 10, 3]
    kept = [run for run in table3.runs("paper", table3.default_seeds("paper")) if table3.keeps(run, "paper", False)]
    assert len(kept) == 2 * (20 + 15 + 10 + 3)
    assert get_table("table10").trials == table3.trials
    assert get_table("table1").default_seeds("paper") == (0, 1, 2)


def test_table2_families():
    runs = get_table("table2").runs("small", (0,))
    pointnet2 = [run for run in runs if "model.family=pointnet2" in run.overrides]
    hrnet = [run for run in runs if run.column == "HRNet-W18 range images · SemanticKITTI"]
    assert len(pointnet2) == len(hrnet) == 2
    assert {run.source for run in pointnet2} == {"mnist", None}
    assert {run.source for run in hrnet} == {"cityscapes", None}
    assert all("model.backbone=hrnet_w18" in run.overrides and "model.backbone=espnet_c" not in run.overrides
               for run in hrnet)
    # The ESPNet-C column (tests/experiments/test_real_sources.py) is the third family run per row.
    assert {run.arch for run in runs if run.source} == {"pointnet2_ssg", "hrnet_w18", "espnet_c"}
    # Paper scale: the I,O,µ,σ row, PointNet++ from Tiny-ImageNet, HRNetV2-W48.
    paper = get_table("table2").runs("paper", (0,))
    assert {run.arch for run in paper if run.source} == {"pointnet2_ssg", "hrnet_w48"}
    assert {run.source for run in paper} == {"tiny-imagenet", "cityscapes", None}
    assert {o for run in paper for o in run.overrides if o.startswith("finetune.scheme")} == {
        "finetune.scheme=io_stats", "finetune.scheme=all"}
    assert all("model.backbone=hrnet_w18" not in run.overrides for run in paper)


def test_table3_subsets_per_scale():
    small = get_table("table3").runs("small", (2,))
    assert {o for run in small for o in run.overrides if o.startswith("data.per_class")} == {
        "data.per_class=1", "data.per_class=2", "data.per_class=4"}
    assert all("data.subset_seed=2" in run.overrides for run in small if "data.per_class" in " ".join(run.overrides))
    paper = get_table("table3").runs("paper", (0,))
    assert {o for run in paper for o in run.overrides if o.startswith("data.fraction")} == {
        "data.fraction=0.01", "data.fraction=0.05", "data.fraction=0.1"}
    # The paper's protocol: the whole ImageNet ResNet-50 finetuned, or trained from scratch.
    assert {run.arch for run in paper if run.source} == {"resnet50"}
    assert all("model.backbone=resnet50" in run.overrides for run in paper)
    assert {o for run in paper for o in run.overrides if o.startswith("finetune.scheme")} == {
        "finetune.scheme=all", "finetune.scheme=scratch"}


def test_table4_and_table5_paper_protocols():
    table4 = get_table("table4")
    runs = table4.runs("paper", (0,))
    assert {run.source for run in runs} == {"tiny-imagenet", "imagenet", "imagenet21k", "fractaldb-1k",
                                            "fractaldb-10k", None}
    assert all("model.backbone=resnet50" in run.overrides for run in runs)
    # One set of from-scratch runs, shown under all five columns.
    assert len([run for run in runs if run.source is None]) == 1
    cells = {(cell.row, cell.column) for cell in table4.layout("paper").paper.values()}
    assert ("from scratch", "Tiny-ImageNet / ImageNet-1K / ImageNet-21K") in cells
    table5 = get_table("table5")
    pairs = {(run.column, run.source, run.dataset) for run in table5.runs("paper", (0,)) if run.source}
    assert pairs == {("ImageNet-1K → SemanticKITTI", "imagenet", "semantickitti"),
                     ("Cityscapes → SemanticKITTI", "cityscapes", "semantickitti"),
                     ("ImageNet-1K → S3DIS", "imagenet", "s3dis"), ("ADE20K → S3DIS", "ade20k", "s3dis")}
    assert {run.dataset for run in table5.runs("paper", (0,)) if run.source is None} == {"semantickitti", "s3dis"}


def test_table6_and_table7_variants():
    depth = get_table("table6").runs("small", (0,))
    assert {run.arch for run in depth} == {"cifar_resnet20", "cifar_resnet32", "cifar_resnet56"}
    # Small scale: the paper's layout (schemes by depth) on ModelNet40 alone, three of its five rows.
    assert {run.row for run in depth} == {"I,O", "I,O,µ,σ", "I,O,µ,σ,W,b"}
    assert {run.dataset for run in depth} == {"modelnet40"} and len(depth) == 9
    assert {(run.column, run.arch) for run in depth} == {("ResNet-20 (CIFAR-10)", "cifar_resnet20"),
                                                         ("ResNet-32 (CIFAR-10)", "cifar_resnet32"),
                                                         ("ResNet-56 (CIFAR-10)", "cifar_resnet56")}
    paper_depth = get_table("table6").runs("paper", (0,))
    assert {run.column for run in paper_depth} == {"ResNet-18", "ResNet-50", "ResNet-152"}
    assert {run.row for run in paper_depth} == {"I,O", "I,O,µ,σ", "I,O,µ,σ,W,b", "whole network", "from scratch"}
    assert {run.dataset for run in paper_depth} == {"modelnet40"}
    transforms = get_table("table7").runs("small", (0,))
    learned = [run for run in transforms if run.row.startswith("learned")]
    assert all("finetune.scheme=t" in run.overrides for run in learned)
    assert all("finetune.scheme=io_stats" in run.overrides for run in transforms if run not in learned)
    assert {o for run in learned for o in run.overrides if o.startswith("finetune.learnable_t")} == {
        "finetune.learnable_t=shared", "finetune.learnable_t=per_conv"}


def test_table7_handcrafted_rows_are_every_copy_transform_by_its_own_name():
    table = get_table("table7")
    handcrafted = [run for run in table.runs("paper", (0,)) if any(o.startswith("model.transform=")
                                                                     for o in run.overrides)]
    assert {run.dataset for run in table.runs("paper", (0,))} == {"modelnet40"}
    transform_of_row = {run.row: o.split("=", 1)[1] for run in handcrafted for o in run.overrides
                        if o.startswith("model.transform=")}
    # The default once, then the five other distinct copies; no row is named after the paper's T1-T3.
    assert sorted(transform_of_row.values()) == sorted(name for name in TRANSFORM_NAMES if name != "copy_y")
    assert all(name in row for row, name in transform_of_row.items() if name != "default")
    assert transform_of_row["default T (authors' z-axis)"] == "default"
    assert not any(re.search(r"\bT[123]\b", row) for row in table.layout("paper").rows)


def test_unknown_table_and_run_id_safety():
    with pytest.raises(ConfigError, match="table15"):
        get_table("table15")
    assert run_id("ModelNet40", "Tiny ImageNet", "I,O", seed=1) == "modelnet40-tiny_imagenet-i_o-s1"
