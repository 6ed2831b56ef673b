"""benchmarks/bench_deterministic_paths.py at its quick sizes: every row's two timed candidates compute the
same output and gradient, and the script prints one row per path."""

from pathlib import Path

import pytest
import torch

# Of the largest magnitude.
RELATIVE_TOLERANCE = 1e-5
SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_deterministic_paths.py"


@pytest.fixture(scope="module")
def bench(load_script):
    return load_script(SCRIPT)


def test_both_paths_of_every_row_compute_the_same(bench):
    rows = list(bench.workloads(quick=True, device=torch.device("cpu")))
    assert [path for path, _, _ in rows] == [row[0] for row in bench.RESIZES + bench.LOSSES]
    for path, _, candidates in rows:
        (default, default_grad), (deterministic, deterministic_grad) = (
            tuple(value.clone() for value in candidates[mode]()) for mode in bench.MODES)
        # float32 sums in another order: at most 3.4e-7 of the largest magnitude here (a wrong tap: O(1)).
        for value, reference in ((deterministic, default), (deterministic_grad, default_grad)):
            torch.testing.assert_close(value, reference, rtol=0, atol=RELATIVE_TOLERANCE * reference.abs().max().item(),
                                       msg=path)


def test_the_script_prints_a_row_per_path(bench, capsys):
    assert bench.main(["--quick"]) == 0
    table = capsys.readouterr().out
    assert all(row[0] in table for row in bench.RESIZES + bench.LOSSES)
