"""What the paths ``train.deterministic`` takes in the range HRNet and PointNet++ segmentation cost: bilinear
resizing as two matmuls against ``F.interpolate``, and the loss on flattened ``[M, C]`` rows against the
loss on the logits' own layout, side by side in one process.

Run: ``.venv/bin/python benchmarks/bench_deterministic_paths.py [--quick] [--device cpu|cuda] [--threads N]
[--json out.json]``.

Forward and backward of each, interleaved, median of the repetitions, one torch thread by default. The
shapes are those of HRNet-W18 on a 64 x 2048 range image (SemanticKITTI's), batch 2: its branches at
1/4 to 1/32 resolution (16 x 512 down to 2 x 64) fused into the 1/4 branch (an exchange unit's 2x and
8x upsampling, 18 channels; the final concatenation's 8x, 144 channels), the head's 19 logits back to
64 x 2048, and the loss on those logits and on PointNet++'s [B, 13, 4096] point logits. torch's
deterministic mode is not switched on: on CUDA it would refuse both references' backwards.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

if __package__ in (None, ""):
    sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]
    import common  # type: ignore[import-not-found]
else:
    from benchmarks import common

from image2point.data.sample import IGNORE_INDEX
from image2point.models2d.resize import separable_bilinear_resize
from image2point.train.losses import flattened_cross_entropy

BATCH = 2
REPETITIONS, QUICK_REPETITIONS = 9, 2
QUICK_SCALE = 4  # --quick divides every spatial size by this
# (name, channels, input size, output size) of the resizes.
RESIZES = [("fusion 2x, W18 branch", 18, (8, 256), (16, 512)),
           ("fusion 8x, W18 branch", 18, (2, 64), (16, 512)),
           ("features 8x, concatenation", 144, (2, 64), (16, 512)),
           ("head 4x, 19 logits", 19, (16, 512), (64, 2048))]
# (name, classes, positions after the class dimension) of the losses.
LOSSES = [("loss, range logits", 19, (64, 2048)), ("loss, point logits", 13, (4096,))]
MODES = ("default", "deterministic")


@dataclass
class PathResult:
    path: str
    shape: str
    device: str
    reps: int
    default_ms: float
    deterministic_ms: float
    ratio: float


Candidate = Callable[[], tuple[torch.Tensor, torch.Tensor]]


def _backward_of(compute: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> Candidate:
    """A call of ``compute`` on ``x`` and its backward from a fixed upstream gradient: (output, x's gradient)."""
    generator = torch.Generator().manual_seed(1)
    upstream = None

    def step() -> tuple[torch.Tensor, torch.Tensor]:
        nonlocal upstream
        x.grad = None
        out = compute(x)
        if upstream is None:
            upstream = torch.randn(out.shape, generator=generator).to(out.device)
        out.backward(upstream)
        if x.device.type == "cuda":
            torch.cuda.synchronize(x.device)
        return out.detach(), x.grad

    return step


def resize_candidates(channels: int, in_size, out_size, device: torch.device) -> dict[str, Candidate]:
    x = torch.randn(BATCH, channels, *in_size, device=device, requires_grad=True)
    return {"default": _backward_of(lambda t: F.interpolate(t, size=out_size, mode="bilinear"), x),
            "deterministic": _backward_of(lambda t: separable_bilinear_resize(t, out_size, False), x)}


def loss_candidates(classes: int, positions, device: torch.device) -> dict[str, Candidate]:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(BATCH, classes, *positions, generator=generator).to(device).requires_grad_()
    targets = torch.randint(0, classes, (BATCH, *positions), generator=generator).to(device)
    return {"default": _backward_of(lambda t: F.cross_entropy(t, targets, ignore_index=IGNORE_INDEX), logits),
            "deterministic": _backward_of(lambda t: flattened_cross_entropy(t, targets, IGNORE_INDEX), logits)}


def workloads(quick: bool, device: torch.device):
    """(path, shape text, candidates) of every row."""
    scale = QUICK_SCALE if quick else 1

    def scaled(size):
        return tuple(max(1, side // scale) for side in size)

    def text(*sizes):
        return "x".join(str(side) for side in sizes)

    for name, channels, in_size, out_size in RESIZES:
        in_size, out_size = scaled(in_size), scaled(out_size)
        shape = f"{text(BATCH, channels, *in_size)} -> {text(*out_size)}"
        yield name, shape, resize_candidates(channels, in_size, out_size, device)
    for name, classes, positions in LOSSES:
        positions = scaled(positions)
        yield name, text(BATCH, classes, *positions), loss_candidates(classes, positions, device)


def run(quick: bool, device: torch.device) -> list[PathResult]:
    reps = QUICK_REPETITIONS if quick else REPETITIONS
    results = []
    for path, shape, candidates in workloads(quick, device):
        times = common.time_interleaved(candidates, reps)
        default, deterministic = (common.median(times[mode]) for mode in MODES)
        results.append(PathResult(path, shape, str(device), reps, default * 1e3, deterministic * 1e3,
                                  deterministic / default))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = common.device_arguments(__doc__.splitlines()[0])
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    results = run(args.quick, torch.device(args.device))
    rows = [(r.path, r.shape, r.device, r.reps, r.default_ms, r.deterministic_ms, f"{r.ratio:.2f}x") for r in results]
    title = f"forward + backward, deterministic path against the default ({args.threads} thread(s))"
    print(common.format_table(title, ["path", "shape", "device", "reps", "default ms", "deterministic ms", "ratio"],
                              rows))
    if args.json:
        common.write_json(args.json, "bench_deterministic_paths", results, vars(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
