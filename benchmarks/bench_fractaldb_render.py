"""FractalDB at the paper's generator settings on one thread: how long FractalDB-1k / -10k take to make.

Run: ``.venv/bin/python benchmarks/bench_fractaldb_render.py [--quick] [--candidates N] [--images N]``.

The settings are the experiment's ``fractaldb-1k`` source (``image2point.experiments.sources``: 362 px images
of 200,000 3-px patches, categories of filling rate >= 0.2 searched at 512 px). Measured in one process:

* the category search: candidates per second at 512 px and the share that passes the filling rate;
* instance rendering through the streaming writer (``fractal_store.write_category``: render, shard, write, hash) against the
  same images rendered in memory (``render_category``), their ratio, and a check that the pixels are equal.

Times are the process's CPU time (one thread), which other jobs on a shared machine inflate less than the
wall clock. From these: hours for FractalDB-1k (1,000 categories x 1,000 images) and -10k on one core. The search share
is a sample of ``--candidates``; its binomial 95 % interval is printed beside it.
"""

from __future__ import annotations

import os

# One thread everywhere, before numpy and torch load their thread pools.
for _variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_variable] = "1"

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import hashlib  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from image2point.experiments.sources import get_source  # noqa: E402
from image2point.experiments.scales import PAPER  # noqa: E402
from image2point.pretrain2d.fractal_store import StoreLayout, write_category  # noqa: E402
from image2point.pretrain2d.fractaldb import iter_candidates, render_category, sample_ifs  # noqa: E402

SECONDS_PER_HOUR = 3600
Z_95 = 1.96
CANDIDATES, QUICK_CANDIDATES = 300, 30
IMAGES, QUICK_IMAGES = 40, 6


def search_rate(config, candidates: int, rng: np.random.Generator):
    """(candidates per second, accepted candidates, the first accepted IFS or None)."""
    started = time.process_time()
    found = [c for c in itertools.islice(iter_candidates(config, rng), candidates)
             if c.filling_rate >= config.filling_rate_threshold]
    elapsed = time.process_time() - started
    return candidates / elapsed, len(found), found[0].ifs if found else None


def render_rates(config, category, images: int) -> tuple[float, float]:
    """Images per second through the streaming writer and in memory (same seed: the pixels must agree), each
    way timed on two halves, interleaved (streamed, in memory, in memory, streamed) so drifts hit both."""
    half = dataclasses.replace(config, instances_per_category=max(1, images // 2))
    layout = StoreLayout.for_config(half, seed=0)
    streamed = held = 0.0
    with tempfile.TemporaryDirectory() as root:
        # Untimed: the first render and the first write pay one-off costs (allocator, imports, file system).
        warm_up = dataclasses.replace(config, instances_per_category=1)
        write_category(Path(root), 9, category, StoreLayout.for_config(warm_up, seed=0), np.random.default_rng(9))
        render_category(category, warm_up, np.random.default_rng(9))
        for index, order in enumerate(((True, False), (False, True))):
            for stream in order:
                started = time.process_time()
                if stream:
                    write_category(Path(root), index, category, layout, np.random.default_rng(index))
                    streamed += time.process_time() - started
                else:
                    in_memory = render_category(category, half, np.random.default_rng(index))
                    held += time.process_time() - started
                    digest = hashlib.sha256(in_memory.tobytes()).hexdigest()
            record = json.loads((Path(root) / f"{index:05d}" / "category.json").read_text())
            if digest != record["sha256"]:
                raise SystemExit("the streamed images differ from the in-memory ones")
    count = 2 * half.instances_per_category
    return count / streamed, count / held


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_CANDIDATES} candidates, {QUICK_IMAGES} images")
    parser.add_argument("--candidates", type=int, help=f"search candidates to time (default {CANDIDATES})")
    parser.add_argument("--images", type=int, help=f"images to render each way (default {IMAGES})")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    candidates = args.candidates or (QUICK_CANDIDATES if args.quick else CANDIDATES)
    images = args.images or (QUICK_IMAGES if args.quick else IMAGES)
    settings = get_source("fractaldb-1k").settings[PAPER]
    config = settings.fractal_config()
    rng = np.random.default_rng(0)
    print(f"FractalDB at the paper's settings: {config.image_size} px images, {settings.fractal_points} points of "
          f"{config.patch_size} px, search at {config.search_size} px, filling rate >= "
          f"{config.filling_rate_threshold}; 1 thread")
    per_second, accepted, category = search_rate(config, candidates, rng)
    share = accepted / candidates
    margin = Z_95 * math.sqrt(max(share * (1 - share), 1 / candidates) / candidates)
    print(f"search: {per_second:.2f} candidates/s at {config.search_size} px; {accepted} of {candidates} pass "
          f"({100 * share:.1f} %, 95 % interval +-{100 * margin:.1f} points)")
    category = category or sample_ifs(config, rng)
    streamed, held = render_rates(config, category, images)
    print(f"render: {streamed:.2f} images/s at {config.image_size} px streamed to disk, {held:.2f} in memory "
          f"(ratio {streamed / held:.3f}); pixels equal")
    for name, categories in (("FractalDB-1k", 1000), ("FractalDB-10k", 10000)):
        render_hours = categories * settings.fractal_instances / streamed / SECONDS_PER_HOUR
        search_hours = categories / max(share, 1 / candidates) / per_second / SECONDS_PER_HOUR
        print(f"{name} on one core: {render_hours:.0f} h rendering + {search_hours:.1f} h searching "
              f"= {render_hours + search_hours:.0f} h ({(render_hours + search_hours) / 24:.1f} days)")


if __name__ == "__main__":
    main()
