"""The training loss: on flattened rows under deterministic mode, the same value and gradient as
``F.cross_entropy`` on the logits' own layout, ignore index and class weights included."""

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from image2point.data.sample import IGNORE_INDEX
from image2point.train.determinism import deterministic_algorithms
from image2point.train.losses import cross_entropy_loss

CLASSES = 5
TOLERANCE = 1e-12
# Point logits [B, C, N] (PointNet++ segmentation), image logits [B, C, H, W] (range images), and
# per-cloud or per-site logits [M, C], which take the 1D loss anyway.
SHAPES = [(2, CLASSES, 7), (2, CLASSES, 3, 4), (6, CLASSES)]


class _NllOps(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.names: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name.startswith("nll_loss"):
            self.names.add(name)
        return func(*args, **(kwargs or {}))


def _logits_and_targets(shape, device):
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(shape, dtype=torch.float64, generator=generator).to(device).requires_grad_()
    target_shape = (shape[0], *shape[2:])
    targets = torch.randint(0, CLASSES, target_shape, generator=generator)
    targets[torch.rand(target_shape, generator=generator) < 0.3] = IGNORE_INDEX
    return logits, targets.to(device)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("shape", SHAPES)
def test_the_flattened_loss_equals_the_loss_on_the_logits_layout(device, shape, weighted):
    logits, targets = _logits_and_targets(shape, device)
    weight = torch.linspace(0.5, 2.0, CLASSES, dtype=torch.float64, device=device) if weighted else None
    reference = F.cross_entropy(logits, targets, weight=weight, ignore_index=IGNORE_INDEX)
    (reference_grad,) = torch.autograd.grad(reference, logits)
    recorder = _NllOps()
    # Deterministic mode raises on CUDA if the 2D NLL loss is reached (its forward sums with atomics).
    with deterministic_algorithms(True), recorder:
        loss = cross_entropy_loss(logits, targets, IGNORE_INDEX, weight)
        (grad,) = torch.autograd.grad(loss, logits)
    assert recorder.names == {"nll_loss_forward", "nll_loss_backward"}
    torch.testing.assert_close(loss, reference, rtol=0, atol=TOLERANCE)
    torch.testing.assert_close(grad, reference_grad, rtol=0, atol=TOLERANCE)


def test_outside_deterministic_mode_the_loss_is_torchs_own():
    logits, targets = _logits_and_targets(SHAPES[1], torch.device("cpu"))
    recorder = _NllOps()
    with recorder:
        loss = cross_entropy_loss(logits, targets, IGNORE_INDEX)
    assert recorder.names == {"nll_loss2d_forward"}
    assert torch.equal(loss, F.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX))
