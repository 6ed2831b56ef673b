"""Suite-wide settings: one intra-op thread, since most tests use tiny tensors where threads only add
overhead; tests that exercise threading set it themselves."""

import pytest
import torch


@pytest.fixture(autouse=True)
def single_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
