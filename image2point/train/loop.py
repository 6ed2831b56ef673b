"""Training and evaluation of a transferred network: one explicit step, an epoch loop, checkpoints.

A run directory holds ``config.yaml`` (the resolved config), ``train.log``, ``metrics.jsonl`` (one line
per epoch), ``metrics.json`` (final numbers), ``conversion.txt`` (where the pretrained weights went),
``last.pt`` and ``best.pt`` (atomic; ``--resume`` continues from ``last.pt`` with model, optimizer,
scheduler, scaler, epoch and RNG state), and TensorBoard events when tensorboard is installed.
Under ``torchrun`` every rank trains on its shard; metrics are summed across ranks and rank 0 logs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sys
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from image2point.checkpoint import (
    atomic_write,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
    seed_everything,
)
from image2point.data.batch import Batch, Collate
from image2point.data.sample import IGNORE_INDEX
from image2point.errors import CheckpointError, ConfigError
from image2point.models import FinetunePlan, apply_finetune_scheme, optimizer_parameters
from image2point.sparse.backends import default_backend
from image2point.train.builders import (
    BuiltModel,
    build_collate,
    build_dataset,
    build_model,
    build_optimizer,
    build_train_dataset,
    class_names_of,
    network_in_features,
    step_batch_warning,
    task_of,
)
from image2point.train.config import RunConfig, config_to_dict, save_config
from image2point.train.distributed import (
    DistributedContext,
    all_reduce_sum,
    barrier,
    broadcast_buffers,
    init_distributed,
    resolve_device,
)
from image2point.train.metrics import ConfusionMatrix, Metrics
from image2point.train.schedules import build_scheduler
from image2point.train.stored import (
    TRAINED_MODEL_KEYS,
    check_weights,
    is_legacy_config,
    stored_run_config,
    upgrade_stored_config,
)

LAST_CHECKPOINT = "last.pt"
METRICS_HISTORY = "metrics.jsonl"
BEST_CHECKPOINT = "best.pt"
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
# Longest key listing quoted from a failed state-dict load.
MAX_DETAIL_CHARS = 300
logger = logging.getLogger("image2point.train")


def loss_and_logits(network: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    logits = network(*batch.network_inputs())
    return torch.nn.functional.cross_entropy(logits.float(), batch.loss_targets, ignore_index=IGNORE_INDEX), logits


def train_step(network, batch: Batch, optimizer, scheduler, scaler: torch.amp.GradScaler, amp_dtype) -> float:
    """One optimisation step; returns the loss."""
    with torch.autocast(batch.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        loss, _ = loss_and_logits(network, batch)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"loss is {loss.item()}; lower optim.lr or check the data")
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()
    return loss.item()


@torch.no_grad()
def evaluate(network, loader: Iterable, num_classes: int, class_names: list[str], device: torch.device,
             amp_dtype=None) -> Metrics:
    """Accuracy / IoU of the whole loader; segmentation is scored on points, not voxels or pixels."""
    network.eval()
    confusion = ConfusionMatrix(num_classes, IGNORE_INDEX, class_names)
    for batch in loader:
        batch = batch.to(device)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            logits = network(*batch.network_inputs())
        confusion.update(*batch.scored(logits))
    confusion.all_reduce()
    return confusion.compute()


def headline(metrics: Metrics, task: str) -> float:
    """The number a run is judged by: overall accuracy (classification) or mIoU (segmentation)."""
    return metrics.overall_accuracy if task == "classification" else metrics.miou


@dataclass
class RunResult:
    run_dir: Path
    task: str
    final: Metrics
    best_epoch: int
    best_score: float
    epoch_losses: list[float]


class _RunLog:
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
                stream.writelines(json.dumps(record) + "\n" for record in history)

    def epoch(self, record: dict) -> None:
        if not self.enabled:
            return
        with open(self.run_dir / METRICS_HISTORY, "a") as stream:
            stream.write(json.dumps(record) + "\n")
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


def _loader(dataset: Dataset, batch_size: int, collate, shuffle: bool, seed: int, context: DistributedContext,
            num_workers: int) -> tuple[DataLoader, DistributedSampler | None]:
    sampler = None
    generator = torch.Generator().manual_seed(seed)
    if context.world_size > 1 and shuffle:
        sampler = DistributedSampler(dataset, context.world_size, context.rank, shuffle=True, seed=seed)
    elif context.world_size > 1:
        # Evaluation: every sample exactly once across ranks (DistributedSampler would pad with repeats).
        sampler = list(range(context.rank, len(dataset), context.world_size))
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=shuffle and sampler is None, sampler=sampler,
                        collate_fn=collate, num_workers=num_workers, generator=generator,
                        drop_last=shuffle and len(dataset) > batch_size)
    return loader, sampler


def _epoch_loader(loader: DataLoader, sampler, dataset: Dataset, seed: int, epoch: int) -> DataLoader:
    """Shuffle order and augmentation depend only on (seed, epoch), so a resumed run repeats them."""
    loader.generator.manual_seed(seed + epoch)
    if isinstance(sampler, DistributedSampler):
        sampler.set_epoch(epoch)
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)
    return loader


def prepare_run_dir(config: RunConfig, resume: bool) -> Path:
    run_dir = Path(config.train.run_dir)
    if run_dir.exists() and any(run_dir.iterdir()) and not resume:
        raise ConfigError(f"run directory {run_dir} is not empty; pass --resume to continue it or choose "
                          "another train.run_dir")
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def run_training(config: RunConfig, resume: bool = False, quiet: bool | None = None) -> RunResult:
    """Train and evaluate as ``config`` says; writes the run directory (see the module docstring).

    Data, pretrained weights and network are built before the run directory is created, so a run that
    fails on bad input leaves nothing behind.
    """
    context = init_distributed(config.train.device)
    threads = torch.get_num_threads()
    torch.set_num_threads(training_threads(config, context.world_size))
    try:
        seed_everything(config.train.seed)
        setup = _build_run(config, context)
        run_dir = prepare_run_dir(config, resume) if context.is_main else Path(config.train.run_dir)
        log = _RunLog(run_dir, context.is_main)
        try:
            return _train(config, resume, quiet, context, setup, run_dir, log)
        finally:
            log.close()
    finally:
        torch.set_num_threads(threads)


def training_threads(config: RunConfig, world_size: int) -> int:
    """``train.threads``, or the cores per process left after the data-loader workers."""
    if config.train.threads is not None:
        return config.train.threads
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // world_size - config.data.num_workers)


@dataclass
class _RunSetup:
    task: str
    train_set: Dataset
    eval_set: Dataset
    class_names: list[str]
    built: BuiltModel
    plan: FinetunePlan
    backend: str
    collate: Collate
    in_features: int


def _build_run(config: RunConfig, context: DistributedContext) -> _RunSetup:
    task = task_of(config.data)
    train_set = build_train_dataset(config.data)
    eval_set = build_dataset(config.data, config.data.eval_split, train=False)
    class_names = class_names_of(eval_set)
    in_features = network_in_features(config, eval_set)
    built = build_model(config, in_features, len(class_names), task)
    network = built.network.to(context.device)
    plan = apply_finetune_scheme(network, config.finetune.scheme)
    backend = config.model.backend or default_backend(context.device)
    collate = build_collate(config, task, len(class_names), backend)
    return _RunSetup(task, train_set, eval_set, class_names, built, plan, backend, collate, in_features)


def _train(config, resume, quiet, context, setup: _RunSetup, run_dir: Path, log: _RunLog) -> RunResult:
    device = context.device
    task, train_set, eval_set, class_names = setup.task, setup.train_set, setup.eval_set, setup.class_names
    built, plan, backend, collate = setup.built, setup.plan, setup.backend, setup.collate
    network = built.network
    train_loader, train_sampler = _loader(train_set, config.data.batch_size, collate, True, config.train.seed,
                                          context, config.data.num_workers)
    eval_loader, _ = _loader(eval_set, config.data.eval_batch_size or config.data.batch_size, collate, False,
                             config.train.seed, context, config.data.num_workers)
    steps_per_epoch = len(train_loader)
    if config.train.max_steps_per_epoch is not None:
        steps_per_epoch = min(steps_per_epoch, config.train.max_steps_per_epoch)
    optimizer = build_optimizer(config, optimizer_parameters(network))
    scheduler = build_scheduler(optimizer, config.schedule, steps_per_epoch * config.train.epochs)
    amp_dtype = AMP_DTYPES.get(config.train.amp)
    scaler = torch.amp.GradScaler(device.type, enabled=config.train.amp == "fp16")
    trained = DistributedDataParallel(network) if context.world_size > 1 else network

    start_epoch, best_score, best_epoch, losses, history = 0, -math.inf, -1, [], []
    if resume and (run_dir / LAST_CHECKPOINT).exists():
        state = load_checkpoint(run_dir / LAST_CHECKPOINT, map_location=device)
        _check_compatible(state, config, run_dir / LAST_CHECKPOINT)
        if is_legacy_config(state.get("config")):
            check_weights(network, state["model"], run_dir / LAST_CHECKPOINT, legacy=True)
        network.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        restore_rng_state(state["rng"])
        start_epoch, best_score, best_epoch = state["epoch"] + 1, state["best_score"], state["best_epoch"]
        losses = list(state["epoch_losses"])
        history = list(state["history"])
        log.restart_history(history)
        log.info(f"resumed from {run_dir / LAST_CHECKPOINT} at epoch {start_epoch}")
    elif context.is_main:
        save_config(config, run_dir / "config.yaml")
        with atomic_write(run_dir / "conversion.txt", "w") as stream:
            stream.write(_conversion_text(built, plan))
    log.info(_conversion_text(built, plan))
    log.info(f"task {task}, {len(train_set)} training / {len(eval_set)} evaluation samples, backend {backend}, "
             f"device {device}, {context.world_size} process(es)")
    batch_warning = step_batch_warning(config.data, context.world_size)
    if batch_warning is not None and context.is_main:
        log.info(f"warning: {batch_warning}")
        warnings.warn(batch_warning, RuntimeWarning, stacklevel=2)

    show_progress = not (quiet if quiet is not None else not sys.stderr.isatty()) and context.is_main
    final = None
    for epoch in range(start_epoch, config.train.epochs):
        trained.train()
        loader = _epoch_loader(train_loader, train_sampler, train_set, config.train.seed, epoch)
        epoch_loss, steps = 0.0, 0
        for batch in _progress(loader, steps_per_epoch, f"epoch {epoch}", show_progress):
            if steps == steps_per_epoch:
                break
            loss = train_step(trained, batch.to(device), optimizer, scheduler, scaler, amp_dtype)
            epoch_loss += loss
            steps += 1
            if steps % config.train.log_every == 0:
                log.info(f"epoch {epoch} step {steps}/{steps_per_epoch} loss {loss:.4f} "
                         f"lr {scheduler.get_last_lr()[0]:.3g}")
        mean_loss = _mean_across_ranks(epoch_loss, steps, device)
        # Every rank evaluates (and rank 0 saves) the same BatchNorm statistics.
        broadcast_buffers(network)
        losses.append(mean_loss)
        record = {"epoch": epoch, "train_loss": mean_loss, "lr": scheduler.get_last_lr()[0]}
        last_epoch = epoch == config.train.epochs - 1
        if (epoch + 1) % config.train.eval_every == 0 or last_epoch:
            final = evaluate(network, eval_loader, len(class_names), class_names, device, amp_dtype)
            score = headline(final, task)
            record.update(overall_accuracy=final.overall_accuracy, mean_class_accuracy=final.mean_class_accuracy,
                          miou=final.miou)
            if score > best_score:
                best_score, best_epoch = score, epoch
                if context.is_main:
                    save_checkpoint(run_dir / BEST_CHECKPOINT, _state(network, optimizer, scheduler, scaler, epoch,
                                                                      best_score, best_epoch, losses, history + [record],
                                                                      config, class_names, setup.in_features))
        history.append(record)
        log.epoch(record)
        log.info(" ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in record.items()))
        if context.is_main:
            save_checkpoint(run_dir / LAST_CHECKPOINT, _state(network, optimizer, scheduler, scaler, epoch, best_score,
                                                              best_epoch, losses, history, config, class_names,
                                                              setup.in_features))
    if final is None:
        final = evaluate(network, eval_loader, len(class_names), class_names, device, amp_dtype)
    result = RunResult(run_dir, task, final, best_epoch, best_score, losses)
    if context.is_main:
        _write_final_metrics(result, config)
    if context.world_size > 1:
        # No rank leaves (and tears down its process group) while rank 0 is still writing.
        barrier()
    return result


def _progress(loader, total: int, description: str, enabled: bool):
    if not enabled:
        return loader
    from tqdm import tqdm

    return tqdm(loader, total=total, desc=description, leave=False)


def _mean_across_ranks(total: float, steps: int, device: torch.device) -> float:
    sums = all_reduce_sum(torch.tensor([total, float(steps)], dtype=torch.float64, device=device))
    return float(sums[0] / max(sums[1].item(), 1.0))


def _state(network, optimizer, scheduler, scaler, epoch, best_score, best_epoch, losses, history, config,
           class_names, in_features) -> dict:
    return {
        "class_names": list(class_names),
        "in_features": in_features,
        "model": network.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "epoch": epoch,
        "best_score": best_score,
        "best_epoch": best_epoch,
        "epoch_losses": list(losses),
        "history": list(history),
        "rng": capture_rng_state(),
        "config": config_to_dict(config),
    }


def _check_compatible(state: dict, config: RunConfig, path: Path) -> None:
    """A resumed run must rebuild the same network and the same trainable set."""
    saved, current = state.get("config", {}), config_to_dict(config)
    # A checkpoint from an older image2point: compare with the behaviour it had (train/stored.py).
    saved = upgrade_stored_config(saved) if isinstance(saved, dict) else {}
    for section in ("model", "finetune"):
        if saved.get(section) != current[section]:
            raise CheckpointError(f"{path}: was trained with {section} settings {saved.get(section)}, "
                                  f"not {current[section]}")


def _conversion_text(built, plan) -> str:
    parts = []
    if built.pretrained is not None:
        parts.append(built.pretrained.summary())
    if built.conversion is not None:
        parts.append(built.conversion.summary())
    parts.append(plan.summary())
    return "\n".join(parts) + "\n"


def _write_final_metrics(result: RunResult, config: RunConfig) -> None:
    payload = {
        "task": result.task,
        "dataset": config.data.name,
        "family": config.model.family,
        "backbone": config.model.backbone,
        "pretrained": config.model.pretrained,
        "scheme": config.finetune.scheme,
        "epochs": config.train.epochs,
        "best_epoch": result.best_epoch,
        "best_score": result.best_score,
        "final": result.final.as_dict(),
        "epoch_losses": result.epoch_losses,
    }
    with atomic_write(result.run_dir / "metrics.json", "w") as stream:
        json.dump(payload, stream, indent=2)


def evaluate_checkpoint(config: RunConfig, checkpoint_path: str | Path, out_dir: str | Path | None = None) -> Metrics:
    """Rebuild the network of ``config``, load its weights from a checkpoint, evaluate it.

    The strided-shortcut setting and the output-layer widths are part of what the weights were trained
    with, so they come from the checkpoint's stored config (``TRAINED_MODEL_KEYS``; an older checkpoint's
    are those of the version that made it).
    """
    device = resolve_device(config.train.device)
    task = task_of(config.data)
    state = load_checkpoint(checkpoint_path, map_location=device)
    if "model" not in state:
        raise CheckpointError(f"{checkpoint_path}: not a training checkpoint (no 'model' entry)")
    legacy = is_legacy_config(state.get("config"))
    if "config" in state:
        trained = stored_run_config(state["config"], checkpoint_path).model
        config = replace(config, model=replace(config.model, **{key: getattr(trained, key)
                                                                for key in TRAINED_MODEL_KEYS}))
    eval_set = build_dataset(config.data, config.data.eval_split, train=False)
    class_names = class_names_of(eval_set)
    network = build_model(config, network_in_features(config, eval_set), len(class_names), task).network.to(device)
    if legacy:
        # A misfit of an older checkpoint is its older layout: say so in one line.
        check_weights(network, state["model"], checkpoint_path, legacy=True)
    try:
        network.load_state_dict(state["model"])
    except RuntimeError as error:
        # torch's first line only names the module class; the next one names the keys that differ.
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        detail = lines[1] if len(lines) > 1 else lines[0]
        if len(detail) > MAX_DETAIL_CHARS:
            detail = detail[:MAX_DETAIL_CHARS] + " ..."
        raise CheckpointError(f"{checkpoint_path}: does not fit this config's network ({detail})") from None
    backend = config.model.backend or default_backend(device)
    collate = build_collate(config, task, len(class_names), backend)
    loader = DataLoader(eval_set, batch_size=config.data.eval_batch_size or config.data.batch_size,
                        collate_fn=collate, num_workers=config.data.num_workers)
    metrics = evaluate(network, loader, len(class_names), class_names, device)
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, out_dir / "config.yaml")
        with atomic_write(out_dir / "metrics.json", "w") as stream:
            json.dump({"checkpoint": str(checkpoint_path), "task": task, "final": metrics.as_dict()}, stream, indent=2)
    return metrics
