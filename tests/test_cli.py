"""The command line: help for every command, one clear line and exit 2 on bad input, real outputs."""

from pathlib import Path

import pytest
import torch

from image2point import cli
from image2point.checkpoint import load_inflated_checkpoint
from image2point.cli import EXIT_BAD_INPUT, main
from image2point.inference.tiling import DEFAULT_CHUNK_POINTS, DEFAULT_OVERLAP_VOXELS

SHARED_WEIGHTS = Path(__file__).resolve().parents[1] / ".." / "shared" / "weights"
COMMANDS = ("train", "eval", "inflate", "pretrain2d", "env", "predict", "visualize", "export")


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: image2point" in capsys.readouterr().out


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("argv,expected", [
    (["train", "missing.yaml"], "missing.yaml"),
    (["train", "optim.lrr=3"], "did you mean 'optim.lr'"),
    (["train", "finetune.scheme=bogus"], "finetune.scheme"),
    (["train", "model.transform=t2"], "model.transform: 't2' is a retired filter transform name: it meant copy_y"),
    (["train", "model.transform=z-axis"], "model.transform: 'z-axis' is the authors' name for default"),
    (["train", "data.name=modelnet40", "data.root=/nonexistent/modelnet"], "/nonexistent/modelnet"),
    (["inflate", "--arch", "resnet18", "--checkpoint", "nope.pth", "--out", "x.pt"], "nope.pth"),
    (["inflate", "--arch", "no_such_net", "--checkpoint", "nope.pth", "--out", "x.pt"], "no_such_net"),
    (["inflate", "--arch", "resnet18", "--checkpoint", "nope.pth", "--out", "x.pt", "--transform", "t1"],
     "--transform: 't1' is a retired filter transform name: it meant copy_x"),
    (["pretrain2d", "--arch", "no_such_net", "--run-dir", "run"], "no_such_net"),
    (["pretrain2d", "--val-fraction", "1.5", "--run-dir", "run"], "--val-fraction"),
    (["visualize", "cloud.ply", "--palette", "shapenet"], "--palette: unknown dataset 'shapenet'; known: modelnet40"),
])
def test_bad_input_gives_one_line_and_exit_2(argv, expected, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == EXIT_BAD_INPUT
    assert expected in _one_line_error(capsys)
    assert not list(tmp_path.iterdir()), "a failed command must leave nothing behind"


def test_corrupt_checkpoint_is_refused(tmp_path, capsys):
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a checkpoint")
    assert main(["inflate", "--arch", "resnet18", "--checkpoint", str(corrupt), "--out", str(tmp_path / "o.pt")]) == 2
    assert "corrupt.pth" in _one_line_error(capsys)
    assert not (tmp_path / "o.pt").exists()


@pytest.mark.skipif(not SHARED_WEIGHTS.exists(), reason="../shared/weights (CIFAR ResNets) not present")
def test_inflate_writes_a_3d_checkpoint_and_report(tmp_path, capsys):
    source = next(SHARED_WEIGHTS.glob("resnet20-*.th"))
    out = tmp_path / "r20_3d.pt"
    assert main(["inflate", "--arch", "cifar_resnet20", "--checkpoint", str(source), "--out", str(out)]) == 0
    state = torch.load(out, weights_only=True)
    assert state["state_dict"]["layer1.0.conv1.weight"].shape == (16, 16, 3, 3, 3)
    report = out.with_suffix(".report.txt").read_text()
    assert "inflated conv kernels : 19" in report and "linear.weight" in report
    assert main(["inflate", "--arch", "cifar_resnet20", "--checkpoint", str(source), "--out", str(out)]) == 2
    assert "exists" in _one_line_error(capsys)


@pytest.mark.skipif(not SHARED_WEIGHTS.exists(), reason="../shared/weights (CIFAR ResNets) not present")
def test_inflate_records_the_strided_shortcut_setting_and_t(tmp_path, capsys):
    source = next(SHARED_WEIGHTS.glob("resnet20-*.th"))
    out = tmp_path / "r20_3d.pt"
    assert main(["inflate", "--arch", "cifar_resnet20", "--checkpoint", str(source), "--out", str(out),
                 "--shortcut", "children_sum", "--transform", "copy_z", "--normalize"]) == 0
    state = torch.load(out, weights_only=True)
    assert (state["shortcut"], state["transform"], state["normalize"]) == ("children_sum", "copy_z", True)
    assert "strided shortcuts: children_sum" in out.with_suffix(".report.txt").read_text()
    inflated = load_inflated_checkpoint(out)
    assert (inflated.architecture, inflated.shortcut, inflated.learnable_t) == ("cifar_resnet20", "children_sum", "none")
    with pytest.raises(SystemExit) as exit_info:
        main(["inflate", "--arch", "cifar_resnet20", "--checkpoint", str(source), "--out", str(out),
              "--force", "--shortcut", "middle"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'middle'" in capsys.readouterr().err


def test_predict_help_states_the_tiling_defaults(capsys):
    assert int(cli.CHUNK_POINTS_DEFAULT_TEXT) == DEFAULT_CHUNK_POINTS
    assert int(cli.OVERLAP_VOXELS_DEFAULT_TEXT) == DEFAULT_OVERLAP_VOXELS
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert f"(default {DEFAULT_CHUNK_POINTS})" in help_text and f"(default {DEFAULT_OVERLAP_VOXELS})" in help_text


def test_env_reports_versions(capsys):
    assert main(["env"]) == 0
    out = capsys.readouterr().out
    assert "torch" in out and "default sparse backend (cpu)" in out
    assert "depthwise conv on spconv       runs on torch: " in out


def test_debug_shows_the_traceback():
    with pytest.raises(Exception):
        main(["--debug", "train", "missing.yaml"])
