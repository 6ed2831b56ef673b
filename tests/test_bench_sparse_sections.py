"""benchmarks/sparse_default_network.py on a tiny batch: the default network runs stage by stage, the
conv timer sees every sparse conv call and leaves the autograd function as it was."""

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from image2point.sparse import SparseTensor
from image2point.sparse import functional as SF
from image2point.sparse.backends import torch_backend

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "sparse_default_network.py"


@pytest.fixture(scope="module")
def sections(load_script):
    return load_script(SCRIPT)


@dataclass
class TinyWorkload:
    name: str
    coords: torch.Tensor
    features: torch.Tensor
    batch_size: int

    def tensor(self, backend: str) -> SparseTensor:
        return SparseTensor(self.features, self.coords, self.batch_size, backend=backend)


def tiny_workload() -> TinyWorkload:
    generator = torch.Generator().manual_seed(0)
    coords = (torch.rand((2, 12, 12, 12), generator=generator) < 0.3).nonzero()
    return TinyWorkload("T", coords, torch.randn(coords.shape[0], 3, generator=generator), 2)


def test_conv_timer_counts_forward_and_backward_calls_and_restores_the_function(sections):
    forward, backward = torch_backend._SparseConvFunction.forward, torch_backend._SparseConvFunction.backward
    x = tiny_workload().tensor("torch")
    x = x.replace_features(torch.randn(x.num_sites, 20))  # wide enough for the per-offset conv function
    seconds: list[float] = []
    with sections.conv_time("torch", seconds):
        SF.conv3d(x, torch.randn(8, 20, 3, 3, 3, requires_grad=True)).features.sum().backward()
    assert len(seconds) == 2 and all(value >= 0 for value in seconds)
    with sections.conv_time("torch", seconds):  # the first layer's narrow path counts too
        SF.conv3d(x.replace_features(torch.randn(x.num_sites, 3)),
                  torch.randn(8, 3, 3, 3, 3, requires_grad=True)).features.sum().backward()
    assert len(seconds) == 4
    assert torch_backend._SparseConvFunction.forward is forward
    assert torch_backend._SparseConvFunction.backward is backward


def test_default_network_sections_report_every_stage_and_the_step(sections):
    results = sections.measure_default_network(
        tiny_workload(), tiny_workload().tensor, ("torch",), (1,), 1, train=True,
        median=lambda values: sorted(values)[len(values) // 2],
        time_interleaved=lambda calls, repetitions: {key: [call() or 0.1 for _ in range(repetitions + 1)][1:]
                                                     for key, call in calls.items()},
        progress=lambda message: None)
    stages = [r for r in results if isinstance(r, sections.DefaultStageResult)]
    assert [s.stage for s in stages] == list(sections.STAGE_NAMES)
    assert stages[-1].sites == 2  # the head: one row of logits per sample
    (step,) = [r for r in results if isinstance(r, sections.TrainingStepResult)]
    assert step.conv_s > 0 and step.step_over_conv == pytest.approx(step.step_s / step.conv_s)
