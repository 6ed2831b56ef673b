"""What ``image2point env`` reports: versions, the GPUs torch sees, and the sparse backend per device and why.

Collected into dataclasses, so the same facts can be printed for a person or written as JSON (the device
check in ``benchmarks/device_check.sh`` stores them beside its measurements).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import platform
from importlib.metadata import PackageNotFoundError, version

import torch

from image2point.sparse.backends import backend_fallbacks, choose_backend, cpu_kernels

NOT_INSTALLED = "not installed"
# Optional packages whose absence changes what works (readers, logging, plots, the spconv backend).
OPTIONAL_PACKAGES = ("spconv", "plyfile", "laspy", "h5py", "safetensors", "tensorboard", "torchmetrics",
                     "matplotlib", "triton")
DEVICE_TYPES = ("cpu", "cuda")
LABEL_WIDTH = 30


@dataclasses.dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    total_memory_bytes: int
    capability: str  # "9.0" for Hopper
    multiprocessors: int

    def summary(self) -> str:
        return (f"cuda:{self.index} {self.name}, {self.total_memory_bytes / 2**30:.1f} GiB, "
                f"capability {self.capability}, {self.multiprocessors} SMs")


@dataclasses.dataclass(frozen=True)
class BackendReport:
    device: str
    backend: str
    reason: str


@dataclasses.dataclass(frozen=True)
class FallbackReport:
    """An op that a backend hands to another one (spconv has no grouped convs, for one)."""

    op: str
    backend: str
    runs_on: str
    reason: str


@dataclasses.dataclass(frozen=True)
class EnvironmentReport:
    image2point: str
    python: str
    platform: str
    torch: str
    numpy: str
    torch_threads: int
    cuda_build: str | None  # the CUDA version torch was built for; None for a CPU build
    cudnn: int | None
    cuda_available: bool
    cuda_status: str  # why CUDA is (not) usable
    gpus: list[GpuInfo]
    tf32_matmul: bool
    sparse_backends: list[BackendReport]
    fallbacks: list[FallbackReport]
    cpu_kernels: str  # the torch backend's compiled CPU kernels: built, off, or unavailable and why
    packages: dict[str, str]

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    def lines(self) -> list[str]:
        rows = [
            ("image2point", self.image2point), ("python", self.python), ("platform", self.platform),
            ("torch", self.torch), ("numpy", self.numpy), ("torch threads", self.torch_threads),
            ("torch CUDA build", self.cuda_build or "none (CPU build)"), ("cuDNN", self.cudnn or "none"),
            ("cuda available", f"{self.cuda_available} ({self.cuda_status})"),
        ]
        rows += [(f"gpu {gpu.index}", gpu.summary()) for gpu in self.gpus]
        if self.gpus:
            rows.append(("TF32 matmul", self.tf32_matmul))
        rows += [(f"default sparse backend ({report.device})", f"{report.backend}: {report.reason}")
                 for report in self.sparse_backends]
        rows += [(f"{fallback.op} on {fallback.backend}", f"runs on {fallback.runs_on}: {fallback.reason}")
                 for fallback in self.fallbacks]
        rows.append(("torch backend CPU kernels", self.cpu_kernels))
        rows += list(self.packages.items())
        return [f"{label:{LABEL_WIDTH}s} {value}" for label, value in rows]


def package_version(package: str) -> str:
    """The installed version, if the package imports (its metadata alone may outlive it, or be hidden)."""
    try:
        if importlib.util.find_spec(package) is None:
            return NOT_INSTALLED
    except (ImportError, ValueError):
        return NOT_INSTALLED
    try:
        return version(package)
    except PackageNotFoundError:
        # e.g. spconv's CUDA builds, published as spconv-cu12x.
        return "installed (version unknown)"


def _cuda_status() -> str:
    if torch.version.cuda is None:
        return "torch is a CPU build"
    if not torch.cuda.is_available():
        return f"torch built for CUDA {torch.version.cuda}, but no GPU is visible"
    return f"{torch.cuda.device_count()} GPU(s) visible"


def _gpus() -> list[GpuInfo]:
    if not torch.cuda.is_available():
        return []
    gpus = []
    for index in range(torch.cuda.device_count()):
        properties = torch.cuda.get_device_properties(index)
        gpus.append(GpuInfo(index, properties.name, int(properties.total_memory),
                            f"{properties.major}.{properties.minor}", int(properties.multi_processor_count)))
    return gpus


def _backends(cuda_available: bool) -> list[BackendReport]:
    reports = []
    for device in DEVICE_TYPES:
        choice = choose_backend(device)
        reason = choice.reason if device == "cpu" or cuda_available else f"{choice.reason} (no GPU visible now)"
        reports.append(BackendReport(device, choice.name, reason))
    return reports


def collect_environment() -> EnvironmentReport:
    import numpy

    from image2point import __version__

    cuda_available = torch.cuda.is_available()
    packages = {name: package_version(name) for name in OPTIONAL_PACKAGES}
    return EnvironmentReport(
        image2point=__version__,
        python=platform.python_version(),
        platform=platform.platform(),
        torch=torch.__version__,
        numpy=numpy.__version__,
        torch_threads=torch.get_num_threads(),
        cuda_build=torch.version.cuda,
        cudnn=torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        cuda_available=cuda_available,
        cuda_status=_cuda_status(),
        gpus=_gpus(),
        tf32_matmul=torch.backends.cuda.matmul.allow_tf32,
        sparse_backends=_backends(cuda_available),
        fallbacks=[FallbackReport(f.op.value, f.backend, f.runs_on, f.reason) for f in backend_fallbacks()],
        cpu_kernels=cpu_kernels.status(),
        packages=packages,
    )
