"""The seven tables expand into the grids they promise: counts, unique deterministic ids, seeds, layouts."""

import re

import pytest

from image2point.errors import ConfigError
from image2point.experiments import TABLES, get_table
from image2point.experiments.scales import REPOSITORY_ROOT
from image2point.experiments.specs import run_id
from image2point.inflate.transforms import TRANSFORM_NAMES
from image2point.train.config import load_config

# Runs per seed: cells of the layout that have runs, at each scale.
RUNS_PER_SEED = {
    "small": {"table1": 21, "table2": 4, "table3": 8, "table4": 12, "table5": 6, "table6": 9, "table7": 20},
    "paper": {"table1": 21, "table2": 4, "table3": 8, "table4": 12, "table5": 4, "table6": 9, "table7": 20},
}
SAFE_ID = re.compile(r"[a-z0-9_-]+-s\d+")


def test_all_seven_tables_are_registered_in_order():
    assert list(TABLES) == [f"table{number}" for number in range(1, 8)]


@pytest.mark.parametrize("scale", ["small", "paper"])
@pytest.mark.parametrize("name", [f"table{number}" for number in range(1, 8)])
def test_grid_counts_ids_and_seeds(name, scale):
    table = get_table(name)
    runs = table.runs(scale, (0, 1, 2))
    assert len(runs) == 3 * RUNS_PER_SEED[scale][name]
    ids = [run.run_id for run in runs]
    assert len(set(ids)) == len(ids)
    assert all(SAFE_ID.fullmatch(run_id) and run_id.endswith(f"-s{run.seed}") for run_id, run in zip(ids, runs))
    assert table.runs(scale, (0, 1, 2)) == runs, "expansion must be deterministic"
    assert {run.seed for run in runs} == {0, 1, 2}
    for run in runs:
        assert f"train.seed={run.seed}" in run.overrides
        assert run.table == name
    layout = table.layout(scale)
    cells = {(run.row, run.column) for run in runs}
    assert cells == {(row, column) for row in layout.rows for column in layout.columns}


def test_seed_lists_other_than_a_range():
    runs = get_table("table5").runs("small", (4, 7))
    assert {run.seed for run in runs} == {4, 7}
    assert all(run.run_id.endswith(("-s4", "-s7")) for run in runs)


@pytest.mark.parametrize("scale", ["small", "paper"])
def test_every_run_builds_a_valid_config(scale):
    for table in TABLES.values():
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


def test_paper_numbers_only_where_transcribed():
    table1 = get_table("table1")
    assert table1.paper == {("I,O", "ModelNet40"): 78.69, ("I,O", "S3DIS"): 53.54, ("I,O", "SemanticKITTI"): 55.78,
                            ("I,O,µ,σ,W,b", "ModelNet40"): 88.09, ("I,O,µ,σ,W,b", "S3DIS"): 55.22,
                            ("I,O,µ,σ,W,b", "SemanticKITTI"): 58.76}
    # Table 7 on ModelNet40: the default T as Table 1's I,O,µ,σ, the learned rows from Table 7.
    assert get_table("table7").paper == {
        ("default T (authors' z-axis)", "ModelNet40"): 83.45,
        ("learned T, shared, default init", "ModelNet40"): 84.36,
        ("learned T, per conv, default init", "ModelNet40"): 87.24,
        ("learned T, shared, random init", "ModelNet40"): 84.40,
        ("learned T, per conv, random init", "ModelNet40"): 86.35}
    assert all(not TABLES[name].paper for name in TABLES if name not in ("table1", "table7"))


def test_table2_families():
    runs = get_table("table2").runs("small", (0,))
    pointnet2 = [run for run in runs if "model.family=pointnet2" in run.overrides]
    hrnet = [run for run in runs if "model.family=range" in run.overrides]
    assert len(pointnet2) == len(hrnet) == 2
    assert {run.source for run in pointnet2} == {"mnist", None}
    assert {run.source for run in hrnet} == {"cityscapes", None}
    assert all("model.backbone=hrnet_w18" in run.overrides for run in hrnet)
    assert {run.arch for run in runs if run.source} == {"pointnet2_ssg", "hrnet_w18"}


def test_table3_subsets_per_scale():
    small = get_table("table3").runs("small", (2,))
    assert {o for run in small for o in run.overrides if o.startswith("data.per_class")} == {
        "data.per_class=1", "data.per_class=2", "data.per_class=4"}
    assert all("data.subset_seed=2" in run.overrides for run in small if "data.per_class" in " ".join(run.overrides))
    paper = get_table("table3").runs("paper", (0,))
    assert {o for run in paper for o in run.overrides if o.startswith("data.fraction")} == {
        "data.fraction=0.01", "data.fraction=0.05", "data.fraction=0.1"}


def test_table6_and_table7_variants():
    depth = get_table("table6").runs("small", (0,))
    assert {run.arch for run in depth} == {"cifar_resnet20", "cifar_resnet32", "cifar_resnet56"}
    assert {run.row for run in get_table("table6").runs("paper", (0,))} == {"ResNet-18", "ResNet-50", "ResNet-152"}
    transforms = get_table("table7").runs("small", (0,))
    learned = [run for run in transforms if run.row.startswith("learned")]
    assert all("finetune.scheme=t" in run.overrides for run in learned)
    assert all("finetune.scheme=io_stats" in run.overrides for run in transforms if run not in learned)
    assert {o for run in learned for o in run.overrides if o.startswith("finetune.learnable_t")} == {
        "finetune.learnable_t=shared", "finetune.learnable_t=per_conv"}


def test_table7_handcrafted_rows_are_every_copy_transform_by_its_own_name():
    table = get_table("table7")
    handcrafted = [run for run in table.runs("paper", (0,)) if not run.row.startswith("learned")]
    transform_of_row = {run.row: o.split("=", 1)[1] for run in handcrafted for o in run.overrides
                        if o.startswith("model.transform=")}
    # The default once, then the five other distinct copies; no row is named after the paper's T1-T3.
    assert sorted(transform_of_row.values()) == sorted(name for name in TRANSFORM_NAMES if name != "copy_y")
    assert all(name in row for row, name in transform_of_row.items() if name != "default")
    assert transform_of_row["default T (authors' z-axis)"] == "default"
    assert not any(re.search(r"\bT[123]\b", row) for row in table.layout("paper").rows)


def test_unknown_table_and_run_id_safety():
    with pytest.raises(ConfigError, match="table9"):
        get_table("table9")
    assert run_id("ModelNet40", "Tiny ImageNet", "I,O", seed=1) == "modelnet40-tiny_imagenet-i_o-s1"
