"""What a training run writes as it goes: ``train.log``, ``metrics.jsonl`` (one line per epoch) and
TensorBoard events, by rank 0 only."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING
import logging
from pathlib import Path

from image2point.checkpoint import atomic_write
from image2point.io import json_out

if TYPE_CHECKING:
    from image2point.models import FinetunePlan
    from image2point.train.families import BuiltModel

METRICS_HISTORY = "metrics.jsonl"
logger = logging.getLogger("image2point.train")


class RunLog:
    """train.log, metrics.jsonl and TensorBoard, written by rank 0 only."""

    def __init__(self, run_dir: Path, enabled: bool):
        self.enabled = enabled
        self.run_dir = run_dir
        self.writer = None
        if not enabled:
            return
        handler = logging.FileHandler(run_dir / "train.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        self.handler = handler
        with contextlib.suppress(ImportError):
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(run_dir / "tensorboard"))

    def info(self, message: str) -> None:
        if self.enabled:
            logger.info(message)

    def restart_history(self, history: list[dict]) -> None:
        """After a resume: metrics.jsonl holds exactly the epochs of the checkpoint being continued."""
        if self.enabled:
            with atomic_write(self.run_dir / METRICS_HISTORY, "w") as stream:
                stream.writelines(json_out.dumps(record) + "\n" for record in history)

    def epoch(self, record: dict) -> None:
        if not self.enabled:
            return
        with open(self.run_dir / METRICS_HISTORY, "a") as stream:
            stream.write(json_out.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key != "epoch" and value is not None:
                    self.writer.add_scalar(key, value, record["epoch"])

    def close(self) -> None:
        if self.enabled:
            logger.removeHandler(self.handler)
            self.handler.close()
            if self.writer is not None:
                self.writer.close()


def conversion_text(built: BuiltModel, plan: FinetunePlan) -> str:
    """The run log's account of the weights: what the checkpoint gave, what the inflation did, what trains."""
    parts = []
    if built.pretrained is not None:
        parts.append(built.pretrained.summary())
    if built.conversion is not None:
        parts.append(built.conversion.summary())
    parts.append(plan.summary())
    return "\n".join(parts) + "\n"
