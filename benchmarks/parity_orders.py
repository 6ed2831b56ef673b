"""Not a timing: how far two orders of summation move train-mode results, in float32 and in float64.

Run: ``.venv/bin/python benchmarks/parity_orders.py``.

The measurement behind the thresholds of tests/test_cuda_parity.py, on the CPU: the same networks,
weights and inputs as those tests, run once through the torch backend's per-offset path (the CPU's) and
once through its offset-group path (CUDA's) on two threads (another order of sums), and compared as the
tests compare (largest difference over the largest magnitude, at least 1e-3): the logits and every
parameter gradient of one train-mode forward and backward of each network, and the weights after three
SGD steps of the U-Net segmenter.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from image2point.sparse.backends import torch_backend  # noqa: E402
# The tests' own networks, inputs and training steps, so that the numbers are those the thresholds face.
from tests.test_cuda_parity import (  # noqa: E402
    COMPARED_CPU_THREADS,
    CPU,
    MIN_SCALE,
    NETWORKS,
    TRAINED_NETWORK,
    _forward_backward,
    _network_pair,
    _train_steps,
    random_tensor,
)

DTYPES = (torch.float32, torch.float64)


def relative(compared: torch.Tensor, reference: torch.Tensor) -> float:
    scale = max(float(reference.detach().abs().max()), MIN_SCALE)
    return float((compared.detach() - reference.detach()).abs().max()) / scale


def _with_order(batched: bool, function):
    """Per offset on one thread, or offset groups on COMPARED_CPU_THREADS (the tests' compared run)."""
    saved = torch_backend.BATCHED_OFFSET_DEVICE_TYPES
    torch_backend.BATCHED_OFFSET_DEVICE_TYPES = saved | {"cpu"} if batched else saved - {"cpu"}
    torch.set_num_threads(COMPARED_CPU_THREADS if batched else 1)
    try:
        return function()
    finally:
        torch_backend.BATCHED_OFFSET_DEVICE_TYPES = saved
        torch.set_num_threads(1)


def train_mode_gradients(name: str, dtype: torch.dtype) -> tuple[float, float, str]:
    config = NETWORKS[name]
    runs = []
    for batched in (False, True):
        network = _network_pair(config, CPU)[0].to(dtype).train()
        x = random_tensor(7, config.in_features, CPU, dtype)
        runs.append(_with_order(batched, lambda: _forward_backward(network, x)))
    (logits, grads), (other_logits, other_grads) = runs
    worst_key = max(grads, key=lambda key: relative(other_grads[key], grads[key]))
    return relative(other_logits, logits), relative(other_grads[worst_key], grads[worst_key]), worst_key


def trained_weights(dtype: torch.dtype) -> tuple[float, str]:
    states = []
    for batched in (False, True):
        network = _network_pair(NETWORKS[TRAINED_NETWORK], CPU)[0].to(dtype)
        _with_order(batched, lambda: _train_steps(network, CPU, steps=3))
        states.append(network.state_dict())
    reference, other = states
    keys = [key for key, value in reference.items() if value.is_floating_point()]
    worst_key = max(keys, key=lambda key: relative(other[key], reference[key]))
    return relative(other[worst_key], reference[worst_key]), worst_key


def main() -> int:
    torch.set_num_threads(1)
    print("train mode, one forward and backward: offset groups against per offset")
    print(f"{'network':34} {'dtype':8} {'logits':>9} {'gradients':>9}  worst gradient")
    for name in sorted(NETWORKS):
        for dtype in DTYPES:
            logits, gradient, key = train_mode_gradients(name, dtype)
            print(f"{name:34} {str(dtype)[6:]:8} {logits:9.1e} {gradient:9.1e}  {key}")
    print(f"\nweights after three SGD steps of {TRAINED_NETWORK}: offset groups against per offset")
    for dtype in DTYPES:
        value, key = trained_weights(dtype)
        print(f"{str(dtype)[6:]:8} {value:9.1e}  {key}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
