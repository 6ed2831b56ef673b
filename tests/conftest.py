"""Suite-wide settings and the device selection.

One intra-op thread, since most tests use tiny tensors where threads only add overhead; tests that
exercise threading set it themselves.

Devices: a test that takes the ``device`` fixture runs once per device, ``cpu`` always and ``cuda``
when a GPU is visible (the CUDA variant carries the ``cuda`` marker and is skipped, with the reason,
without one). Tests that compare CPU against CUDA results carry the ``cuda`` marker themselves.
``--device`` narrows a run to the device tests:

- ``pytest`` (no option): the whole suite, CUDA variants skipped on a machine without a GPU;
- ``pytest --device cuda``: only tests marked ``cuda`` (device tests on CUDA and the CPU-vs-CUDA
  parity tests); a usage error when no GPU is visible, so a broken CUDA install cannot pass as
  "everything skipped";
- ``pytest --device cpu``: only the device tests, on the CPU.

On CUDA the device fixture turns TF32 off for the test (cuDNN convolutions use it by default), so the
dense references are computed in full float32 like the sparse ops they are compared with.
"""

import contextlib
import subprocess
import sys
import textwrap

import pytest
import torch

DEVICE_OPTION = "--device"
DEVICE_CHOICES = ("cpu", "cuda")
CUDA_MARKER = "cuda"
NO_CUDA_REASON = "needs a CUDA device (torch.cuda.is_available() is False)"


def pytest_addoption(parser):
    parser.addoption(
        DEVICE_OPTION, choices=DEVICE_CHOICES, default=None,
        help="run only the device-parametrised tests on this device (cuda: also the CPU-vs-CUDA parity "
             "tests; fails when no GPU is visible). Default: the whole suite, CUDA variants skipped "
             "without a GPU.")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", f"{CUDA_MARKER}: runs on a CUDA device; skipped without one (select with {DEVICE_OPTION} cuda)")


def _device_param(item) -> str | None:
    callspec = getattr(item, "callspec", None)
    return None if callspec is None else callspec.params.get("device")


def pytest_collection_modifyitems(config, items):
    chosen = config.getoption(DEVICE_OPTION)
    has_cuda = torch.cuda.is_available()
    if chosen == "cuda" and not has_cuda:
        raise pytest.UsageError(f"{DEVICE_OPTION} cuda: {NO_CUDA_REASON}")
    if chosen is not None:
        keep, drop = [], []
        for item in items:
            on_cuda = item.get_closest_marker(CUDA_MARKER) is not None
            wanted = on_cuda if chosen == "cuda" else (_device_param(item) == "cpu" and not on_cuda)
            (keep if wanted else drop).append(item)
        if drop:
            config.hook.pytest_deselected(items=drop)
            items[:] = keep
    if not has_cuda:
        skip = pytest.mark.skip(reason=NO_CUDA_REASON)
        for item in items:
            if item.get_closest_marker(CUDA_MARKER) is not None:
                item.add_marker(skip)


def current_cuda_device() -> torch.device:
    """With its index: tensors report ``cuda:0``, which does not compare equal to ``cuda``."""
    return torch.device("cuda", torch.cuda.current_device())


@contextlib.contextmanager
def full_float32_on_cuda():
    """TF32 off for cuBLAS and cuDNN (restored afterwards): float32 results comparable with the CPU's."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def device(request) -> torch.device:
    """Each device test runs on the CPU and, where a GPU is visible, on CUDA."""
    if request.param == "cpu":
        yield torch.device("cpu")
        return
    with full_float32_on_cuda():
        yield current_cuda_device()
        torch.cuda.synchronize()


@pytest.fixture
def cuda_device() -> torch.device:
    """The GPU of a CPU-vs-CUDA comparison (use with ``@pytest.mark.cuda``), TF32 off."""
    with full_float32_on_cuda():
        yield current_cuda_device()
        torch.cuda.synchronize()


@pytest.fixture(autouse=True)
def single_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------------------------
# Shared helpers: registries restored after a test registers into them, and tiny training configs.

# A training run of a few seconds: procedural shapes, a CIFAR ResNet-20 inflated, two epochs.
TINY_RUN = ("data.name=procedural_shapes", "data.train_samples=24", "data.eval_samples=12", "data.num_points=256",
            "data.batch_size=8", "data.num_workers=0", "model.backbone=cifar_resnet20", "optim.lr=0.05",
            "train.epochs=2", "train.seed=3")


@pytest.fixture
def isolated_registries():
    """Model families and sparse backends registered by the test are gone afterwards."""
    from image2point.sparse.backends import protocol
    from image2point.train.families import registry

    saved = dict(registry.MODEL_FAMILIES), dict(protocol.SPARSE_BACKENDS), dict(protocol._LOADED)
    yield
    for live, before in zip((registry.MODEL_FAMILIES, protocol.SPARSE_BACKENDS, protocol._LOADED), saved):
        live.clear()
        live.update(before)


@pytest.fixture(scope="session")
def tiny_run_config():
    """``make(run_dir, *overrides, base=TINY_RUN)``: a run config of ``base`` then ``overrides``, run in ``run_dir``."""
    from image2point.train.config import load_config

    def make(run_dir, *overrides: str, base=TINY_RUN):
        return load_config(None, [*base, f"train.run_dir={run_dir}", *overrides])

    return make


@pytest.fixture(scope="session")
def load_script():
    """``load(path)``: a repository script (a benchmark) imported as a module under its file name, with its
    folder on ``sys.path`` so that it imports its sibling scripts."""
    import importlib.util
    import sys

    def load(path):
        if str(path.parent) not in sys.path:
            sys.path.insert(0, str(path.parent))
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
        spec.loader.exec_module(module)
        return module

    return load


# Holds RUN_DIR/.lock as a live training does (flock, its pid inside) until its stdin closes. It does not
# import image2point, so it holds the lock within milliseconds.
RUN_LOCK_HOLDER = textwrap.dedent("""
    import fcntl, os, sys
    handle = open(os.path.join(sys.argv[1], ".lock"), "a+")
    fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
    handle.write(f"{os.getpid()}\\n")
    handle.flush()
    print("held", flush=True)
    sys.stdin.read()
""")


@pytest.fixture
def hold_run_lock():
    """``with hold_run_lock(run_dir) as holder:`` another process (``holder.pid``) holds the lock of
    ``run_dir`` as a live training does until the block ends; it then exits without removing the lock
    file, as a killed run would (POSIX only: it uses flock)."""

    @contextlib.contextmanager
    def hold(run_dir):
        holder = subprocess.Popen([sys.executable, "-c", RUN_LOCK_HOLDER, str(run_dir)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout.readline().strip() == "held"
            yield holder
        finally:
            holder.stdin.close()
            holder.wait()

    return hold


@pytest.fixture
def dead_pid() -> int:
    """The pid of a process that has already exited (the owner of a killed run's lock or staging files)."""
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True)
    return int(finished.stdout)
