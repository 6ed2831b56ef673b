import math
import re

import pytest
import torch

from image2point.checkpoint import load_checkpoint, save_checkpoint
from image2point.errors import ConfigError
from image2point.train.config import ScheduleConfig
from image2point.train.schedules import build_scheduler

BASE_LR = 0.1


def _optimizer(*base_lrs: float) -> torch.optim.SGD:
    groups = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr} for lr in base_lrs]
    return torch.optim.SGD(groups, lr=BASE_LR, momentum=0.9)


def _lr_sequence(cfg: ScheduleConfig, total_iters: int, base_lr: float = BASE_LR) -> list[float]:
    """The learning rate each iteration trains with, stepping the scheduler after every one."""
    optimizer = _optimizer(base_lr)
    scheduler = build_scheduler(optimizer, cfg, total_iters)
    lrs = []
    for _ in range(total_iters + 1):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_cosine_follows_the_formula():
    lrs = _lr_sequence(ScheduleConfig(name="cosine"), total_iters=10)
    assert lrs[0] == pytest.approx(0.1)
    assert lrs[5] == pytest.approx(0.05)
    assert lrs[9] == pytest.approx(0.1 * 0.5 * (1 + math.cos(0.9 * math.pi)))
    assert lrs[9] == pytest.approx(0.00244717, rel=1e-5)
    assert lrs[10] == pytest.approx(0.0, abs=1e-12)


def test_cosine_ends_at_min_lr():
    lrs = _lr_sequence(ScheduleConfig(name="cosine", min_lr=0.01), total_iters=10)
    assert lrs[0] == pytest.approx(0.1)
    assert lrs[5] == pytest.approx(0.01 + 0.09 * 0.5)
    assert lrs[10] == pytest.approx(0.01)


def test_poly_follows_the_formula():
    lrs = _lr_sequence(ScheduleConfig(name="poly", power=0.9), total_iters=10)
    assert lrs[0] == pytest.approx(0.1)
    assert lrs[5] == pytest.approx(0.1 * 0.5**0.9)
    assert lrs[5] == pytest.approx(0.0535887, rel=1e-5)
    assert lrs[9] == pytest.approx(0.1 * 0.1**0.9)
    assert lrs[10] == pytest.approx(0.0, abs=1e-12)


def test_warmup_then_cosine_follows_the_formula():
    lrs = _lr_sequence(ScheduleConfig(name="warmup_cosine", warmup_iters=4), total_iters=12)
    assert lrs[:4] == pytest.approx([0.025, 0.05, 0.075, 0.1])
    # Warm-up ends at iteration 4: the cosine starts from the full rate over the remaining 8 iterations.
    assert lrs[4] == pytest.approx(0.1)
    assert lrs[8] == pytest.approx(0.05)
    assert lrs[11] == pytest.approx(0.1 * 0.5 * (1 + math.cos(7 / 8 * math.pi)))
    assert lrs[12] == pytest.approx(0.0, abs=1e-12)


def test_constant_stays_at_the_base_rate():
    assert _lr_sequence(ScheduleConfig(name="constant"), total_iters=5) == pytest.approx([0.1] * 6)


def test_each_param_group_decays_from_its_own_rate_to_min_lr():
    optimizer = _optimizer(0.1, 0.02)
    scheduler = build_scheduler(optimizer, ScheduleConfig(name="cosine", min_lr=0.01), total_iters=4)
    for _ in range(2):
        optimizer.step()
        scheduler.step()
    assert [group["lr"] for group in optimizer.param_groups] == pytest.approx([0.055, 0.015])


@pytest.mark.parametrize("name", ["cosine", "poly", "warmup_cosine", "constant"])
def test_resume_from_state_dicts_continues_the_same_sequence(tmp_path, name):
    cfg = ScheduleConfig(name=name, warmup_iters=3 if name == "warmup_cosine" else 0, min_lr=0.001)
    total_iters, interrupted_at = 20, 7
    expected = _lr_sequence(cfg, total_iters)

    optimizer = _optimizer(BASE_LR)
    scheduler = build_scheduler(optimizer, cfg, total_iters)
    for _ in range(interrupted_at):
        optimizer.step()
        scheduler.step()
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()})

    resumed_optimizer = _optimizer(BASE_LR)
    resumed_scheduler = build_scheduler(resumed_optimizer, cfg, total_iters)
    state = load_checkpoint(path)
    resumed_optimizer.load_state_dict(state["optimizer"])
    resumed_scheduler.load_state_dict(state["scheduler"])
    resumed = []
    for _ in range(interrupted_at, total_iters + 1):
        resumed.append(resumed_optimizer.param_groups[0]["lr"])
        resumed_optimizer.step()
        resumed_scheduler.step()
    assert resumed == pytest.approx(expected[interrupted_at:])


def test_invalid_settings_are_config_errors():
    with pytest.raises(ConfigError, match=re.escape("only applies to schedule.name=warmup_cosine")):
        build_scheduler(_optimizer(BASE_LR), ScheduleConfig(name="cosine", warmup_iters=5), total_iters=10)
    with pytest.raises(ConfigError, match=r"warmup_iters must be in \[1, 10\)"):
        build_scheduler(_optimizer(BASE_LR), ScheduleConfig(name="warmup_cosine", warmup_iters=10), total_iters=10)
    with pytest.raises(ConfigError, match="warmup_iters must be in"):
        build_scheduler(_optimizer(BASE_LR), ScheduleConfig(name="warmup_cosine"), total_iters=10)
    with pytest.raises(ConfigError, match=re.escape("min_lr=0.5 exceeds the base learning rate 0.1")):
        build_scheduler(_optimizer(BASE_LR), ScheduleConfig(min_lr=0.5), total_iters=10)
    with pytest.raises(ConfigError, match="total_iters must be at least 1"):
        build_scheduler(_optimizer(BASE_LR), ScheduleConfig(), total_iters=0)
