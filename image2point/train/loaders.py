"""Data loaders of a training run: sharded across ranks, shuffled and augmented by (seed, epoch) only."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from image2point.data.batch import Collate
from image2point.train.distributed import DistributedContext


def make_loader(dataset: Dataset, batch_size: int, collate: Collate, shuffle: bool, seed: int,
                context: DistributedContext, num_workers: int) -> tuple[DataLoader, DistributedSampler | None]:
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


def epoch_loader(loader: DataLoader, sampler, dataset: Dataset, seed: int, epoch: int) -> DataLoader:
    """Shuffle order and augmentation depend only on (seed, epoch), so a resumed run repeats them."""
    loader.generator.manual_seed(seed + epoch)
    if isinstance(sampler, DistributedSampler):
        sampler.set_epoch(epoch)
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)
    return loader


def progress(loader, total: int, description: str, enabled: bool):
    if not enabled:
        return loader
    from tqdm import tqdm

    return tqdm(loader, total=total, desc=description, leave=False)
