"""``train.deterministic``: the key, the torch settings it switches inside a run (and restores after),
which networks can train under it on CUDA, and the refusal of a family that cannot.

Without a GPU the third part is checked by recording the aten ops of a training step under the mode and
comparing them with the ops torch's deterministic mode refuses on CUDA (the list in the documentation of
``torch.use_deterministic_algorithms``, torch 2.13) and with what each family declares
(``cuda_nondeterministic_ops``). On CUDA, every family other than voxels trains twice under the mode
here and must repeat exactly, and tests/train/test_kill_resume.py does the same for a voxel network
across a kill and resume.
"""

import json
import os
import subprocess
import sys

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from image2point import cli
from image2point.errors import ConfigError
from image2point.sparse.backends import torch_backend
from image2point.train import determinism, loop
from image2point.train.config import load_config
from image2point.train.determinism import (
    CUBLAS_WORKSPACE_SETTING,
    CUBLAS_WORKSPACE_VARIABLE,
    check_deterministic_training,
    deterministic_algorithms,
    trains_on_cuda,
    training_backend,
)
from image2point.train.families import MODEL_FAMILIES, get_family, register_family
from tests.test_cuda_parity import NETWORKS, _network_pair, _train_steps
from tests.train.test_family_registry import TOY_RUN, PointMLPFamily

# aten ops that raise under torch.use_deterministic_algorithms(True) on CUDA whatever their arguments
# (the 2D NLL loss is the one behind "NLLLoss": its forward alerts in aten/src/ATen/native/cuda/NLLLoss2d.cu).
REFUSED_ON_CUDA = frozenset({
    "avg_pool3d_backward", "_adaptive_avg_pool2d_backward", "_adaptive_avg_pool3d_backward",
    "adaptive_max_pool2d_backward", "fractional_max_pool2d_backward", "fractional_max_pool3d_backward",
    "max_unpool2d", "max_unpool3d", "upsample_linear1d_backward", "upsample_bilinear2d_backward",
    "upsample_bicubic2d_backward", "upsample_trilinear3d_backward", "reflection_pad1d_backward",
    "reflection_pad2d_backward", "reflection_pad3d_backward", "nll_loss2d_forward", "_ctc_loss_backward",
    "put_", "put", "histc", "grid_sampler_2d_backward", "grid_sampler_3d_backward",
})


def _refused_on_cuda(name: str, args, kwargs) -> bool:
    """Whether torch's deterministic mode refuses this call on CUDA (some ops only with some arguments)."""
    if name in REFUSED_ON_CUDA:
        return True
    if name == "bincount":
        return (args[1] if len(args) > 1 else kwargs.get("weights")) is not None
    if name == "cumsum":
        dtype = kwargs.get("dtype") or args[0].dtype
        return dtype.is_floating_point or dtype.is_complex
    if name == "scatter_reduce":
        return (args[3] if len(args) > 3 else kwargs.get("reduce")) == "prod"
    if name == "median":
        return len(args) > 1 or "dim" in kwargs  # the overloads with indices
    return False


class _RefusedOps(TorchDispatchMode):
    """Records the ops (forward and backward) that deterministic mode would refuse on CUDA."""

    def __init__(self):
        super().__init__()
        self.refused: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func.overloadpacket.__name__
        if _refused_on_cuda(name, args, kwargs):
            self.refused.add(name)
        return func(*args, **kwargs)


STEP = ("data.train_samples=4", "data.eval_samples=2", "data.batch_size=2", "data.num_workers=0",
        "train.epochs=1", "train.max_steps_per_epoch=1", "train.deterministic=true")
# The model families other than voxels, through the training loop. The voxel networks are checked on the
# parity tests' networks and inputs (faster).
FAMILY_STEPS = {
    "pointnet2_classifier": ["data.name=procedural_shapes", "data.num_points=1024", "model.family=pointnet2",
                             "model.backbone=pointnet2_ssg"],
    # Logits [B, C, N]: the 2D NLL loss, unless flattened (train/losses.py).
    "pointnet2_segmenter": ["data.name=procedural_scenes", "data.num_points=2048", "model.family=pointnet2",
                            "model.backbone=pointnet2_ssg"],
    # HRNet fuses its branches by bilinear upsampling (models2d/resize.py), and the loss is on [B, C, H, W].
    "range_hrnet": ["data.name=procedural_scenes", "data.range_image.height=16", "data.range_image.width=64",
                    "model.family=range", "model.backbone=hrnet_w18"],
}
# A family registered by the tests whose training step declares an op without a deterministic CUDA kernel.
UNDETERMINED_FAMILY = "toy_undetermined"
UNDETERMINED_OP = "upsample_bicubic2d_backward"
# A short run: one step of one epoch.
SHORT = ("train.epochs=1", "train.max_steps_per_epoch=1")


def test_the_key_is_off_by_default_and_set_by_an_override():
    assert load_config(None, []).train.deterministic is False
    assert load_config(None, ["train.deterministic=true"]).train.deterministic is True


def test_a_run_trains_under_deterministic_algorithms_and_restores_torch_after(tmp_path, monkeypatch, tiny_run_config):
    monkeypatch.setenv(CUBLAS_WORKSPACE_VARIABLE, "unset by the test")
    monkeypatch.delenv(CUBLAS_WORKSPACE_VARIABLE)
    seen = []
    step = loop.train_step

    def recording_step(*args, **kwargs):
        seen.append((torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark))
        return step(*args, **kwargs)

    monkeypatch.setattr(loop, "train_step", recording_step)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    loop.run_training(tiny_run_config(tmp_path / "run", *SHORT, "train.deterministic=true"), quiet=True)
    assert seen and all(state == (True, False) for state in seen)
    assert os.environ[CUBLAS_WORKSPACE_VARIABLE] == CUBLAS_WORKSPACE_SETTING
    assert not torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.benchmark
    assert "deterministic algorithms" in (tmp_path / "run" / "train.log").read_text()


def test_a_deterministic_run_takes_the_torch_backend_unless_one_is_configured(monkeypatch):
    """spconv's CUDA kernels are not under torch's deterministic mode (here: a machine whose default on
    CUDA is spconv)."""
    monkeypatch.setattr(determinism, "default_backend", lambda device: "spconv")
    cuda = torch.device("cuda")
    assert training_backend(None, True, cuda) == "torch"
    assert training_backend(None, False, cuda) == "spconv"
    assert training_backend("spconv", True, cuda) == "spconv"


def test_a_cublas_setting_of_the_environment_is_kept_and_a_raise_restores_torch(monkeypatch):
    monkeypatch.setenv(CUBLAS_WORKSPACE_VARIABLE, ":16:8")
    with pytest.raises(RuntimeError, match="inside"):
        with deterministic_algorithms(True):
            assert torch.are_deterministic_algorithms_enabled()
            raise RuntimeError("inside")
    assert os.environ[CUBLAS_WORKSPACE_VARIABLE] == ":16:8"
    assert not torch.are_deterministic_algorithms_enabled()
    with deterministic_algorithms(False):
        assert not torch.are_deterministic_algorithms_enabled()


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_every_voxel_network_can_train_deterministically_on_cuda(name):
    """A training step of each voxel network (every sparse op of the torch backend, on both of its
    paths: offset groups as on CUDA, and per offset) dispatches no op that deterministic mode refuses."""
    for batched in (set(), {"cpu"}):
        network, _ = _network_pair(NETWORKS[name], torch.device("cpu"))
        recorder = _RefusedOps()
        with pytest.MonkeyPatch.context() as patch, recorder:
            patch.setattr(torch_backend, "BATCHED_OFFSET_DEVICE_TYPES", batched)
            _train_steps(network, torch.device("cpu"), steps=1, in_features=NETWORKS[name].in_features)
        assert recorder.refused == set(get_family("voxel").cuda_nondeterministic_ops) == set()


@pytest.mark.parametrize("name", sorted(FAMILY_STEPS))
def test_every_other_family_can_train_deterministically_on_cuda(tmp_path, monkeypatch, name):
    """Under the mode, PointNet++ segmentation takes its loss on flattened [B * N, C] logits and the range
    HRNet both that and its bilinear resizes as matmuls, so no family dispatches an op that deterministic
    mode refuses on CUDA, and none declares one."""
    overrides = FAMILY_STEPS[name]
    config = load_config(None, [*STEP, *overrides, f"train.run_dir={tmp_path / 'run'}"])
    recorder = _RefusedOps()
    step = loop.train_step

    def recorded_step(*args, **kwargs):
        with recorder:
            return step(*args, **kwargs)

    monkeypatch.setattr(loop, "train_step", recorded_step)
    loop.run_training(config, quiet=True)
    assert recorder.refused == set(get_family(config.model.family).cuda_nondeterministic_ops) == set()


@pytest.mark.cuda
@pytest.mark.parametrize("name", ["pointnet2_segmenter", "range_hrnet"])
def test_the_flattened_loss_and_matmul_resizes_repeat_exactly_on_cuda(tmp_path, name):
    """Two runs of the command line under the mode on CUDA (a fresh process each: cuBLAS reads its
    workspace setting once per process) give the same losses and metrics, bit for bit."""
    results = []
    for run in ("first", "second"):
        run_dir = tmp_path / run
        command = [sys.executable, "-m", "image2point.cli", "train", *STEP, *FAMILY_STEPS[name], "train.epochs=2",
                   "train.max_steps_per_epoch=2", "train.device=cuda", f"train.run_dir={run_dir}", "--quiet"]
        finished = subprocess.run(command, capture_output=True, text=True, check=False)
        assert finished.returncode == 0, finished.stderr
        metrics = json.loads((run_dir / "metrics.json").read_text())
        results.append((metrics["epoch_losses"], metrics["final"]))
    assert results[0] == results[1]


@pytest.fixture
def undetermined_family(isolated_registries):
    class UndeterminedFamily(PointMLPFamily):
        cuda_nondeterministic_ops = (UNDETERMINED_OP,)

    register_family(UNDETERMINED_FAMILY)(UndeterminedFamily)
    return MODEL_FAMILIES[UNDETERMINED_FAMILY]


def _undetermined(*overrides: str):
    return load_config(None, [*TOY_RUN, f"model.family={UNDETERMINED_FAMILY}", *overrides])


@pytest.mark.parametrize("device, cuda_available, refused", [
    ("cuda", False, True), ("cuda:1", False, True), ("auto", True, True), ("auto", False, False),
    ("cpu", True, False), ("not a device", True, False)])
def test_a_family_with_an_undetermined_op_is_refused_a_deterministic_run_on_cuda(
        undetermined_family, monkeypatch, device, cuda_available, refused):
    """Checked from the config alone (no GPU needed): train.device names CUDA, or is auto where CUDA
    is available. A device name torch does not know is left to the device's own check."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda_available)
    assert trains_on_cuda(device) is refused
    check_deterministic_training(_undetermined(f"train.device={device}"))  # not deterministic: runs
    config = _undetermined(f"train.device={device}", "train.deterministic=true")
    if not refused:
        check_deterministic_training(config)
        return
    with pytest.raises(ConfigError) as error:
        check_deterministic_training(config)
    assert str(error.value) == (
        f"train.deterministic: model.family={UNDETERMINED_FAMILY} trains with {UNDETERMINED_OP}, which has no "
        "deterministic CUDA implementation; set train.deterministic=false or train.device=cpu")


@pytest.mark.parametrize("family", ["voxel", "pointnet2", "range"])
def test_every_built_in_family_may_train_deterministically_on_cuda(family):
    check_deterministic_training(load_config(None, [f"model.family={family}", "train.device=cuda",
                                                    "train.deterministic=true"]))


def test_the_command_line_refuses_it_in_one_line_before_writing(undetermined_family, tmp_path, capsys):
    run_dir = tmp_path / "run"
    code = cli.main(["train", *TOY_RUN, f"model.family={UNDETERMINED_FAMILY}", "train.device=cuda",
                     "train.deterministic=true", f"train.run_dir={run_dir}"])
    error = capsys.readouterr().err.strip()
    assert code == 2 and len(error.splitlines()) == 1
    assert "train: error: train.deterministic: " in error and UNDETERMINED_OP in error
    assert "Traceback" not in error and list(tmp_path.iterdir()) == []
