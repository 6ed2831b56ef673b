"""benchmarks/bench_cpu_tiles.py on two ModelNet40 shapes: every tile size and the torch ops' run, both
passes, one table of ratios against the torch ops' row."""

from pathlib import Path

import pytest

from image2point.sparse.backends import cpu_kernels

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_cpu_tiles.py"


def test_every_tile_size_and_the_torch_ops_row_are_timed(load_script, capsys):
    bench = load_script(SCRIPT)
    if not bench.common.MODELNET_DIR.is_dir():
        pytest.skip(f"shared ModelNet40 sample absent: {bench.common.MODELNET_DIR}")
    if cpu_kernels.load() is None:
        pytest.skip(f"compiled CPU kernels unavailable: {cpu_kernels.status()}")
    tile_before = cpu_kernels.TILE_BYTES
    assert bench.main(["--shapes", "2", "--reps", "1", "--tiles-kib", "64,1024"]) == 0
    assert cpu_kernels.TILE_BYTES == tile_before
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("A floor")]
    for engine in ("tiles of 64 KiB", "tiles of 1024 KiB", "torch ops"):
        assert sum(engine in row for row in rows) == 2, engine  # forward and forward+backward
    assert [row.split()[-1] for row in rows if "torch ops" in row] == ["1.000", "1.000"]
