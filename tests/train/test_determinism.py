"""``train.deterministic``: the key, the torch settings it switches inside a run (and restores after),
and which networks can train under it on CUDA.

Without a GPU the last part is checked by recording the aten ops of a training step and comparing them
with the ops torch's deterministic mode refuses on CUDA (the list in the documentation of
``torch.use_deterministic_algorithms``, torch 2.13); on CUDA, tests/train/test_kill_resume.py trains
under the mode and demands bit-identical runs.
"""

import os

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from image2point.sparse.backends import torch_backend
from image2point.train import determinism, loop
from image2point.train.config import load_config
from image2point.train.determinism import (
    CUBLAS_WORKSPACE_SETTING,
    CUBLAS_WORKSPACE_VARIABLE,
    deterministic_algorithms,
    training_backend,
)
from tests.test_cuda_parity import NETWORKS, _network_pair, _train_steps

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
# The model families other than voxels, through the training loop: (overrides, the ops deterministic mode
# refuses on CUDA). The voxel networks are checked on the parity tests' networks and inputs (faster).
FAMILY_STEPS = {
    "pointnet2_classifier": (["data.name=procedural_shapes", "data.num_points=1024", "model.family=pointnet2",
                              "model.backbone=pointnet2_ssg"], set()),
    # Logits [B, C, N] take the 2D NLL loss.
    "pointnet2_segmenter": (["data.name=procedural_scenes", "data.num_points=2048", "model.family=pointnet2",
                             "model.backbone=pointnet2_ssg"], {"nll_loss2d_forward"}),
    # HRNet fuses its branches by bilinear upsampling, and the loss is on [B, C, H, W] images.
    "range_hrnet": (["data.name=procedural_scenes", "data.range_image.height=16", "data.range_image.width=64",
                     "model.family=range", "model.backbone=hrnet_w18"],
                    {"upsample_bilinear2d_backward", "nll_loss2d_forward"}),
}
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
        assert recorder.refused == set()


@pytest.mark.parametrize("name", sorted(FAMILY_STEPS))
def test_which_other_families_can_train_deterministically_on_cuda(tmp_path, monkeypatch, name):
    """The PointNet++ classifier can; PointNet++ segmentation and the range HRNet dispatch ops that
    deterministic mode refuses on CUDA, so there they train only with ``train.deterministic=false``
    (docs/reliability.md)."""
    overrides, expected = FAMILY_STEPS[name]
    config = load_config(None, [*STEP, *overrides, f"train.run_dir={tmp_path / 'run'}"])
    recorder = _RefusedOps()
    step = loop.train_step

    def recorded_step(*args, **kwargs):
        with recorder:
            return step(*args, **kwargs)

    monkeypatch.setattr(loop, "train_step", recorded_step)
    loop.run_training(config, quiet=True)
    assert recorder.refused == expected
