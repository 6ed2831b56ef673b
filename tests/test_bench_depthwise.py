"""benchmarks/bench_depthwise.py on a tiny batch: every candidate computes the same layer, and the byte
accounting follows the documented formula."""

from pathlib import Path

import pytest
import torch

from image2point.sparse import SparseTensor
from image2point.sparse import functional as SF

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_depthwise.py"


@pytest.fixture(scope="module")
def bench(load_script):
    return load_script(SCRIPT)


@pytest.fixture
def tiny_batch() -> SparseTensor:
    mask = torch.rand((2, 8, 9, 10), generator=torch.Generator().manual_seed(0)) < 0.3
    coords = mask.nonzero()
    return SparseTensor(torch.zeros(coords.shape[0], 1), coords, 2)


def test_block_diagonal_weight_is_the_same_convolution(bench, tiny_batch):
    weight = torch.randn(12, 2, 3, 3, 3)
    full = bench.block_diagonal(weight, groups=4)
    assert full.shape == (12, 8, 3, 3, 3)
    x = tiny_batch.replace_features(torch.randn(tiny_batch.num_sites, 8))
    torch.testing.assert_close(SF.conv3d(x, full).features, SF.conv3d(x, weight, groups=4).features,
                               atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("layer,extra", [
    (("depthwise", 8, 8, 8, 3), "index ops"),
    (("narrow groups", 16, 16, 4, 3, 2), "bmm per group"),
])
def test_layer_candidates_agree_and_bytes_follow_the_formula(bench, tiny_batch, layer, extra):
    spec = bench.Layer(*layer)
    copy = bench.CopyResult(threads=1, gbytes_per_s=10.0)
    results = bench.measure_layer(tiny_batch, spec, threads=1, copy=copy, repetitions=1)
    assert {r.candidate for r in results} == {bench.OURS, bench.BLOCK_DIAGONAL, extra}
    assert {r.passes for r in results} == {bench.FORWARD, bench.FORWARD_BACKWARD}
    weight_bytes = spec.channels_out * spec.channels_in // spec.groups * 27 * 4
    for result in results:
        forward_bytes = result.pairs * (spec.channels_in + spec.channels_out) * 4 + weight_bytes
        factor = 1 if result.passes == bench.FORWARD else 3
        assert result.gbytes == pytest.approx(factor * forward_bytes / 1e9)
        assert result.percent_of_copy == pytest.approx(100 * result.gbytes_per_s / 10.0)
        if result.candidate == bench.OURS:
            assert result.speed_vs_ours == 1.0
