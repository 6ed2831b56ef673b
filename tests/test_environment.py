"""``image2point env``: versions, the GPUs torch sees, and the sparse backend per device with its reason."""

import json
import types

import pytest
import torch

from image2point import environment
from image2point.cli import main
from image2point.sparse import backends
from image2point.sparse.backends import BACKEND_ENV_VAR, choose_backend, default_backend

H200 = types.SimpleNamespace(name="NVIDIA H200", total_memory=143_771 * 2**20, major=9, minor=0,
                             multi_processor_count=132)


@pytest.fixture
def no_backend_override(monkeypatch):
    monkeypatch.delenv(BACKEND_ENV_VAR, raising=False)


@pytest.mark.parametrize("has_spconv, cuda_build, expected, reason", [
    (False, False, "torch", "spconv not installed"),
    (True, False, "torch", "CPU-only build"),
    (True, True, "spconv", "CUDA build of spconv"),
])
def test_cuda_backend_choice_names_its_reason(monkeypatch, no_backend_override, has_spconv, cuda_build, expected,
                                              reason):
    monkeypatch.setattr(backends, "spconv_available", lambda: has_spconv)
    monkeypatch.setattr(backends, "spconv_has_cuda_kernels", lambda: has_spconv and cuda_build)
    choice = choose_backend("cuda:0")
    assert (choice.name, default_backend("cuda")) == (expected, expected)
    assert reason in choice.reason


def test_cpu_backend_is_torch_and_the_variable_overrides_every_device(monkeypatch, no_backend_override):
    assert choose_backend("cpu").name == "torch"
    monkeypatch.setenv(BACKEND_ENV_VAR, "spconv")
    for device in ("cpu", "cuda"):
        choice = choose_backend(device)
        assert choice.name == "spconv" and BACKEND_ENV_VAR in choice.reason
    monkeypatch.setenv(BACKEND_ENV_VAR, "cutlass")
    with pytest.raises(ValueError, match=BACKEND_ENV_VAR):
        choose_backend("cpu")


def test_report_lists_both_devices_and_is_json(no_backend_override):
    report = environment.collect_environment()
    assert [entry.device for entry in report.sparse_backends] == ["cpu", "cuda"]
    assert all(entry.backend in ("torch", "spconv") and entry.reason for entry in report.sparse_backends)
    assert report.torch == torch.__version__ and report.cuda_available == torch.cuda.is_available()
    assert set(environment.OPTIONAL_PACKAGES) <= set(report.packages)
    assert json.loads(json.dumps(report.to_json()))["sparse_backends"][0]["device"] == "cpu"


def test_a_visible_gpu_is_reported_with_memory_and_capability(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: H200)
    gpus = environment._gpus()
    assert gpus == [environment.GpuInfo(0, "NVIDIA H200", H200.total_memory, "9.0", 132)]
    assert gpus[0].summary() == "cuda:0 NVIDIA H200, 140.4 GiB, capability 9.0, 132 SMs"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the report of a machine without a GPU")
def test_without_a_gpu_the_report_says_why(no_backend_override):
    report = environment.collect_environment()
    assert report.gpus == [] and ("CPU build" in report.cuda_status or "no GPU" in report.cuda_status)
    assert "no GPU visible now" in report.sparse_backends[1].reason


def test_env_command_prints_lines_or_json(capsys):
    assert main(["env"]) == 0
    out = capsys.readouterr().out
    assert "default sparse backend (cpu)" in out and "default sparse backend (cuda)" in out
    assert "torch CUDA build" in out
    assert main(["env", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    assert payload["torch"] == torch.__version__ and len(payload["gpus"]) == visible
