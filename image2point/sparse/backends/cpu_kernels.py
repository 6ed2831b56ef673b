"""The torch backend's compiled CPU kernels (csrc/pair_gemm.cpp): its gather → GEMM → scatter-add steps in one
C++ loop, built on first use with PyTorch's extension builder and cached by it (a C++ compiler and the
``ninja`` package are needed; ``pip install 'image2point[kernels]'``).

Where they cannot be built, or with ``IMAGE2POINT_CPU_KERNELS=0`` in the environment, the backend runs the
same steps with torch ops (one line says why, once per process); results agree to rounding
(tests/sparse/test_cpu_kernels.py). On the 64-channel full-resolution convs the torch ops' per-row gather
and scatter-add cost a third of the time; docs/benchmarks.md ("Compiled pair steps") measures the gain.
"""

from __future__ import annotations

import logging
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import torch

KERNELS_ENV_VAR = "IMAGE2POINT_CPU_KERNELS"
# Values of KERNELS_ENV_VAR that turn the kernels off.
DISABLED_VALUES = ("0", "false", "off", "no")
SOURCE = Path(__file__).resolve().parent / "csrc" / "pair_gemm.cpp"
# Named after the source, so a changed source builds anew beside an older cached build.
EXTENSION_NAME = "image2point_pair_gemm"
# dtypes the kernels compute in (half precision keeps the torch ops and their float32 sums).
KERNEL_DTYPES = (torch.float32, torch.float64)
# Identity offset as the kernels take it when a map has none.
NO_IDENTITY = -1
# Bytes of the rows a tile scatters into: the kernels run every offset's pairs of one tile before the
# next, so the tile's sums (and the input rows near them) stay in cache across all K³ offsets. Between
# 0.5 and 2 MiB is best on a 1 MiB-L2 core (docs/benchmarks.md, "Compiled pair steps").
TILE_BYTES = 1 << 20
# Fewest rows per tile, so that wide layers still run GEMMs of useful height.
MIN_TILE_ROWS = 256

_logger = logging.getLogger(__name__)


class _Build:
    """The outcome of building the kernels, once per process."""

    module: ModuleType | None = None
    failure: str | None = None
    attempted = False


def disabled_by_environment() -> bool:
    return os.environ.get(KERNELS_ENV_VAR, "").strip().lower() in DISABLED_VALUES


@contextmanager
def _ninja_on_path():
    """PATH with the ``ninja`` package's binary while building, where no ``ninja`` is on PATH already (a
    virtual environment's bin directory is on PATH only once activated)."""
    original = os.environ.get("PATH")
    try:
        if shutil.which("ninja") is None:
            try:
                import ninja
            except ImportError:  # the build then fails and says so
                pass
            else:
                os.environ["PATH"] = os.pathsep.join(filter(None, [ninja.BIN_DIR, original]))
        yield
    finally:
        if original is None:
            os.environ.pop("PATH", None)
        else:
            os.environ["PATH"] = original


def load() -> ModuleType | None:
    """The compiled kernels, built on the first call of the process (None where they cannot be)."""
    if not _Build.attempted:
        _Build.attempted = True
        try:
            from torch.utils import cpp_extension

            with _ninja_on_path():
                _Build.module = cpp_extension.load(EXTENSION_NAME, [str(SOURCE)], extra_cflags=["-O3"],
                                                   verbose=False)
        except Exception as error:  # no compiler, no ninja, a failed build: the torch ops stand in
            first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
            _Build.failure = f"{type(error).__name__}: {first_line}"
            _logger.warning("image2point: compiled CPU kernels unavailable (%s); sparse convolutions on the CPU "
                            "run with torch ops", _Build.failure)
    return _Build.module


def status() -> str:
    """One line for environment reports: whether the kernels run, and why not."""
    if disabled_by_environment():
        return f"off ({KERNELS_ENV_VAR}={os.environ[KERNELS_ENV_VAR]})"
    if load() is not None:
        return "built"
    return f"unavailable ({_Build.failure})"


def applies(source: torch.Tensor, out: torch.Tensor) -> bool:
    """Whether a step of ``source`` rows into ``out`` runs in the kernels."""
    return (source.device.type == "cpu" and source.dtype in KERNEL_DTYPES and out.dtype == source.dtype
            and not disabled_by_environment() and load() is not None)


def gather_gemm_scatter(source: torch.Tensor, filters: torch.Tensor, gather_index: torch.Tensor,
                        scatter_index: torch.Tensor, counts: tuple[int, ...], identity_offset: int | None,
                        transpose_weights: bool, out: torch.Tensor) -> None:
    """``out[scatter[p]] += source[gather[p]] @ W[k]`` over the pairs of every offset k but the identity one
    (``W[k]`` of ``[C_out, K³, C_in]`` filters, transposed for the input gradient); ``scatter_index``
    ascends within each offset."""
    load().gather_gemm_scatter(source, filters, gather_index.contiguous(), scatter_index.contiguous(), list(counts),
                               _identity_argument(identity_offset), transpose_weights, out, tile_rows(out))


def weight_gradient(features: torch.Tensor, grad_out: torch.Tensor, filters: torch.Tensor,
                    gather_index: torch.Tensor, scatter_index: torch.Tensor, counts: tuple[int, ...],
                    identity_offset: int | None, grad_filters: torch.Tensor,
                    grad_features: torch.Tensor | None) -> None:
    """Adds every non-identity offset's filter gradient into ``grad_filters`` (and, unless None, the input
    gradient into ``grad_features``) from output-gradient rows ``gather_index`` and input rows
    ``scatter_index`` (ascending within each offset)."""
    load().weight_gradient(features, grad_out, filters, gather_index.contiguous(), scatter_index.contiguous(),
                           list(counts), _identity_argument(identity_offset), grad_filters, grad_features,
                           tile_rows(features))


def tile_rows(scattered: torch.Tensor) -> int:
    """Rows per tile of ``scattered``, the ``[rows, width]`` tensor the sums go into."""
    return max(MIN_TILE_ROWS, TILE_BYTES // (scattered.element_size() * scattered.shape[1]))


def _identity_argument(identity_offset: int | None) -> int:
    return NO_IDENTITY if identity_offset is None else identity_offset
