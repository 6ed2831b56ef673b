"""Model families: one typed entry each, registered once, looked up by ``model.family``.

A family says which tasks it takes, which backbones, how it builds its network from a run config, how
it loads pretrained weights, and how it collates samples into batches (a :class:`~image2point.data.batch.Batch`).
The builders look the family up (:func:`get_family`) and never compare family names. Adding one is one
module with a :class:`ModelFamily` subclass under ``@register_family("name")``, imported by
:mod:`image2point.train.families` (docs/architecture.md).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Protocol

from torch import nn

from image2point.data.batch import Collate
from image2point.errors import ConfigError
from image2point.inflate.converter import ConversionReport
from image2point.models.base import TransferredNetwork
from image2point.tasks import Task

if TYPE_CHECKING:
    from image2point.train.config import RunConfig

# The finetuning scheme that trains the inflation transforms T, which only inflated kernels have.
TRANSFORM_SCHEME = "t"


class PretrainedReport(Protocol):
    """What loading pretrained weights reports (2D loading, PointNet++ transfer, ...)."""

    def summary(self) -> str: ...


@dataclass
class BuiltModel:
    """A family's network, with what inflation and pretrained loading did (None: nothing of the kind)."""

    network: TransferredNetwork
    conversion: ConversionReport | None
    pretrained: PretrainedReport | None


@dataclass(frozen=True)
class BatchSettings:
    """What a family's collate function needs to know about the run's data."""

    task: Task
    num_classes: int
    # Sparse backend of voxel batches (torch or spconv).
    backend: str
    # Factor on the xyz input features of voxel networks (1: metres), from the dataset's pipeline.
    xyz_feature_scale: float = 1.0


class ModelFamily(ABC):
    """One model family. Subclasses set the class attributes and implement the three builders."""

    name: ClassVar[str] = ""
    # What the family's networks do, for error messages ("segments LiDAR scans as range images").
    description: ClassVar[str] = ""
    tasks: ClassVar[frozenset[Task]] = frozenset(Task)
    # model.backbone values it builds; None: any registered 2D model (and "none" where allowed).
    backbones: ClassVar[tuple[str, ...] | None] = None
    # Batch classes its collate functions return.
    batch_types: ClassVar[tuple[type, ...]] = ()
    # Input channels of its networks whatever the data (a range image's); None: the data's per point.
    input_channels: ClassVar[int | None] = None
    # Whether its networks have inflated kernels with learnable transforms T (finetune.scheme=t).
    has_filter_transforms: ClassVar[bool] = False
    # Whether its networks read voxelized sparse tensors (what file prediction tiles scenes into).
    voxel_input: ClassVar[bool] = False
    # The aten ops of its training step that have no deterministic CUDA implementation (torch's
    # deterministic mode raises on them there, e.g. "upsample_bicubic2d_backward"): a run with
    # train.deterministic on CUDA is refused before it starts (train/determinism.py). The built-in
    # families have none (tests/train/test_determinism.py records their steps' ops).
    cuda_nondeterministic_ops: ClassVar[tuple[str, ...]] = ()

    def check(self, config: RunConfig, task: Task) -> None:
        """ConfigError naming the setting this family cannot build, before anything is built."""
        if config.finetune.scheme == TRANSFORM_SCHEME and not self.has_filter_transforms:
            raise ConfigError(f"finetune.scheme={TRANSFORM_SCHEME} trains inflation transforms, which a "
                              f"{self.name} model does not have")
        if task not in self.tasks:
            raise ConfigError(f"model.family={self.name} {self.description}, not {task}; {config.data.name} is a "
                              f"{task} dataset")
        if self.backbones is not None and config.model.backbone not in self.backbones:
            raise ConfigError(f"model.family={self.name} needs model.backbone one of {self.backbones}, "
                              f"got {config.model.backbone!r}")

    def network_in_features(self, data_channels: Callable[[], int]) -> int:
        """Input channels of the network; ``data_channels()`` counts the data's per point (xyz included)."""
        return self.input_channels if self.input_channels is not None else data_channels()

    @abstractmethod
    def build(self, config: RunConfig, in_features: int, num_classes: int, task: Task) -> BuiltModel:
        """The network for ``config`` (already checked), with ``model.pretrained`` loaded when set."""

    @abstractmethod
    def load_pretrained(self, target: nn.Module, path: str) -> PretrainedReport:
        """Load the checkpoint at ``path`` into ``target`` (the 2D model before inflation, or the network)."""

    @abstractmethod
    def collate(self, config: RunConfig, settings: BatchSettings) -> Collate:
        """The DataLoader collate function: samples -> one of :attr:`batch_types`."""


MODEL_FAMILIES: dict[str, ModelFamily] = {}


def register_family(name: str) -> Callable[[type[ModelFamily]], type[ModelFamily]]:
    """Class decorator: ``model.family=name`` builds with an instance of the decorated class."""

    def decorator(cls: type[ModelFamily]) -> type[ModelFamily]:
        if name in MODEL_FAMILIES:
            raise ValueError(f"model family {name!r} is already registered")
        cls.name = name
        MODEL_FAMILIES[name] = cls()
        return cls

    return decorator


def get_family(name: str) -> ModelFamily:
    if name not in MODEL_FAMILIES:
        raise ConfigError(f"model.family: unknown family {name!r}; choose one of {', '.join(MODEL_FAMILIES)}")
    return MODEL_FAMILIES[name]


def family_names() -> tuple[str, ...]:
    return tuple(MODEL_FAMILIES)
