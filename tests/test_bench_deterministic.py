"""benchmarks/bench_deterministic.py on a small random batch: both timed modes train, and on the CPU they
reach the same weights bit for bit (deterministic algorithms change no result of the sparse path there)."""

from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_deterministic.py"


@pytest.fixture(scope="module")
def bench(load_script):
    return load_script(SCRIPT)


def _random_batch(sites_per_sample: int = 400, batch_size: int = 2):
    generator = torch.Generator().manual_seed(0)
    coords = []
    for sample in range(batch_size):
        spatial = torch.unique(torch.randint(0, 20, (sites_per_sample, 3), generator=generator), dim=0)
        coords.append(torch.cat([torch.full((len(spatial), 1), sample), spatial], 1))
    coords = torch.cat(coords)
    return torch.randn(coords.shape[0], 3, generator=generator), coords, batch_size


@pytest.mark.parametrize("network", ["resnet20 classifier", "resnet20 + U-Net"])
def test_both_modes_train_to_the_same_weights_on_the_cpu(bench, network):
    batch, cpu = _random_batch(), torch.device("cpu")
    states = []
    for mode in bench.MODES:
        step, trained = bench.step_function(bench.NETWORKS[network], batch, cpu, mode == "deterministic")
        before = {key: value.clone() for key, value in trained.state_dict().items()}
        step()
        step()
        after = trained.state_dict()
        assert any(not torch.equal(after[key], before[key]) for key in before), f"{mode}: nothing trained"
        states.append(after)
    assert not torch.are_deterministic_algorithms_enabled()
    default, deterministic = states
    assert all(torch.equal(default[key], deterministic[key]) for key in default)
