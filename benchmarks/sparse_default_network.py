"""Sections of ``bench_sparse.py`` on the default network: what a user gets without choosing anything.

The network is ``build_network(NetworkConfig(in_features=...))``: the ``conv3`` input layer (two
submanifold convs and a strided one), ``layer1`` … ``layer4`` of the inflated ResNet-18 with the
default stride convention (``floor``) and the default strided shortcut (``children_sum``: a segment sum
of the children, then one matmul), and the MLP classification head. Measured on both backends, at each
thread count of ``--step-threads`` (1 and 2 by default), interleaved in one process:

- per stage, forward (eval mode, no autograd), kernel maps built inside the timed region;
- one training step (cross-entropy on fixed random labels, backward, SGD with momentum) against the
  time spent inside the sparse convolutions themselves (the backend's autograd function, forward and
  backward, timed by wrapping it): the rest is kernel maps, BatchNorm, ReLU, shortcuts, head, loss and
  optimizer. Target: step ≤ 1.2 × conv time.
"""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import torch

STAGE_NAMES = ("input", "layer1", "layer2", "layer3", "layer4", "head")
NUM_CLASSES = 40
LEARNING_RATE = 0.01
MOMENTUM = 0.9
TARGET_STEP_OVER_CONV = 1.2
# The clock of per-stage and in-conv times (bench_sparse.py --clock cpu sets time.process_time).
clock = time.perf_counter
# The autograd functions that run a backend's (ungrouped) sparse convolutions: (module, class) pairs.
CONV_FUNCTIONS = {"torch": (("torch_backend", "_SparseConvFunction"), ("narrow_conv", "NarrowConvFunction")),
                  "spconv": (("spconv_backend", "_SpconvConvFunction"),)}


@dataclass
class DefaultStageResult:
    """Forward time of one stage of the default network (eval mode, maps built inside)."""

    workload: str
    backend: str
    threads: int
    stage: str
    sites: int
    median_s: float


@dataclass
class TrainingStepResult:
    """One training step of the default network against the time inside its sparse convolutions."""

    workload: str
    backend: str
    threads: int
    reps: int
    step_s: float
    conv_s: float
    step_over_conv: float
    target: float
    met: bool


def default_network(in_features: int):
    from image2point.models.networks import NetworkConfig, build_network

    torch.manual_seed(0)
    return build_network(NetworkConfig(task="classification", backbone="resnet18", in_features=in_features,
                                       num_classes=NUM_CLASSES)).network


def network_stages(network) -> list[tuple[str, Callable]]:
    backbone = network.backbone
    return ([("input", network.input_layer)] + [(name, getattr(backbone, name)) for name in backbone.stage_names]
            + [("head", network.head)])


@contextmanager
def threads(count: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextmanager
def conv_time(backend: str, seconds: list[float]) -> Iterator[None]:
    """Adds the time spent in ``backend``'s conv autograd functions (forward and backward) to ``seconds``."""
    import importlib

    functions = [getattr(importlib.import_module(f"image2point.sparse.backends.{module_name}"), class_name)
                 for module_name, class_name in CONV_FUNCTIONS[backend]]
    originals = {(function, name): function.__dict__[name] for function in functions
                 for name in ("forward", "backward")}

    def timed(original):
        def run(*args):
            start = clock()
            try:
                return original(*args)
            finally:
                seconds.append(clock() - start)
        return staticmethod(run)

    for (function, name), original in originals.items():
        setattr(function, name, timed(original.__func__))
    try:
        yield
    finally:
        for (function, name), original in originals.items():
            setattr(function, name, original)


@dataclass
class _Candidate:
    """One (backend, threads) configuration of the default network and what its runs recorded."""

    backend: str
    threads: int
    network: Any
    optimizer: torch.optim.Optimizer
    stage_times: dict = None
    stage_sites: dict = None
    conv_seconds: list = None

    def __post_init__(self) -> None:
        self.stage_times, self.stage_sites, self.conv_seconds = defaultdict(list), {}, []

    def forward_by_stage(self, make_input: Callable[[], Any]) -> None:
        with torch.no_grad(), threads(self.threads):
            self.network.eval()
            x = make_input(self.backend)
            for name, stage in network_stages(self.network):
                start = clock()
                x = stage(x)
                self.stage_times[name].append(clock() - start)
                self.stage_sites[name] = x.num_sites if hasattr(x, "num_sites") else x.shape[0]

    def training_step(self, make_input: Callable[[], Any], labels: torch.Tensor) -> None:
        seconds: list[float] = []
        with threads(self.threads), conv_time(self.backend, seconds):
            self.network.train()
            self.optimizer.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(self.network(make_input(self.backend)), labels)
            loss.backward()
            self.optimizer.step()
        self.conv_seconds.append(sum(seconds))


def measure_default_network(workload, make_input: Callable[[str], Any], backends: Sequence[str],
                            thread_counts: Sequence[int], repetitions: int, train: bool, median, time_interleaved,
                            progress: Callable[[str], None]) -> list[Any]:
    """Per-stage forwards (and, with ``train``, training steps) of the default network on ``workload``."""
    reference = default_network(workload.features.shape[1])
    candidates = []
    for backend in backends:
        for count in thread_counts:
            network = default_network(workload.features.shape[1])
            network.load_state_dict(reference.state_dict())
            optimizer = torch.optim.SGD(network.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM)
            candidates.append(_Candidate(backend, count, network, optimizer))
    labels = torch.randint(0, NUM_CLASSES, (workload.batch_size,), generator=torch.Generator().manual_seed(0))
    calls: dict[tuple, Callable[[], None]] = {}
    for candidate in candidates:
        calls[(candidate.backend, candidate.threads, "forward")] = lambda c=candidate: c.forward_by_stage(make_input)
        if train:
            calls[(candidate.backend, candidate.threads, "step")] = lambda c=candidate: c.training_step(make_input,
                                                                                                        labels)
    progress(f"workload {workload.name}: default network, {len(calls)} runs × {repetitions}")
    times = time_interleaved(calls, repetitions)
    results: list[Any] = []
    for candidate in candidates:
        for stage in STAGE_NAMES:
            # The warm-up round recorded stage times too; the timed rounds are the last `repetitions`.
            results.append(DefaultStageResult(workload.name, candidate.backend, candidate.threads, stage,
                                              candidate.stage_sites[stage],
                                              median(candidate.stage_times[stage][-repetitions:])))
        if train:
            step = median(times[(candidate.backend, candidate.threads, "step")])
            conv = median(candidate.conv_seconds[-repetitions:])
            results.append(TrainingStepResult(workload.name, candidate.backend, candidate.threads, repetitions,
                                              step, conv, step / conv, TARGET_STEP_OVER_CONV,
                                              step / conv <= TARGET_STEP_OVER_CONV))
    return results


def stage_table(stages: Sequence[DefaultStageResult], format_table) -> str:
    """One row per (workload, stage): each (backend, threads) forward time."""
    columns = sorted({(s.backend, s.threads) for s in stages}, key=lambda item: (item[1], item[0]))
    rows: dict[tuple[str, str], dict] = {}
    for stage in stages:
        row = rows.setdefault((stage.workload, stage.stage), {"sites": stage.sites})
        row[(stage.backend, stage.threads)] = stage.median_s
    ordered = sorted(rows.items(), key=lambda item: (item[0][0], STAGE_NAMES.index(item[0][1])))
    return format_table(
        "Default network (floor, children_sum shortcut, conv3 input layer, MLP head), forward per stage "
        "(median s; sites = what the stage outputs, the head: samples)",
        ["workload", "stage", "sites"] + [f"{backend} {count}t s" for backend, count in columns],
        [[workload, stage, row["sites"]] + [row.get(column, "-") for column in columns]
         for (workload, stage), row in ordered])


def step_table(steps: Sequence[TrainingStepResult], format_table) -> str:
    return format_table(
        f"Default network, one training step (fwd + bwd + SGD) vs the time inside its sparse convs "
        f"(target step ≤ {TARGET_STEP_OVER_CONV} × conv)",
        ["workload", "backend", "threads", "reps", "step s", "conv s", "step / conv", "met"],
        [[s.workload, s.backend, s.threads, s.reps, s.step_s, s.conv_s, f"{s.step_over_conv:.2f}", s.met]
         for s in steps])
