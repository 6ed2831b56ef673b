"""Registry of 2D classifier architectures, the interface they share, and known pretrained weights.

Builders register themselves by name (``@register_model_2d``) so configs and the command line can
ask for ``"resnet50"`` or ``"cifar_resnet20"``. ``PretrainedWeights`` records where a set of
weights comes from and how its checkpoint is laid out; nothing here ever downloads anything.
"""

from __future__ import annotations

import abc
import inspect
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from image2point.errors import ConfigError

ModelBuilder2D = Callable[..., nn.Module]

MODELS_2D: dict[str, ModelBuilder2D] = {}

IMAGENET_INPUT_SIZE = 224
IMAGENET_NUM_CLASSES = 1000
CIFAR_INPUT_SIZE = 32
CIFAR10_NUM_CLASSES = 10
DATA_PARALLEL_PREFIX = "module."

# The project keeps its real test data next to the repository, never inside it.
SHARED_WEIGHTS_DIR = (Path(__file__).resolve().parents[2] / ".." / "shared" / "weights").resolve()


@dataclass(frozen=True)
class BackboneLayout:
    """Which submodules of a 2D model are its stem, its stages and its head, as dotted module paths
    (``model.get_submodule(path)``).

    Applying ``stem`` then ``stages`` in order gives ``forward_features``; ``head`` lists the modules
    ``forward_head`` applies (it may also flatten between them). A 2D->3D network drops the stem
    (replaced by its input layer) and the head (replaced by its own) and inflates the stages; each stage
    changes resolution at most once, so a segmentation decoder can tap every resolution.
    """

    stem: tuple[str, ...]
    stages: tuple[str, ...]
    head: tuple[str, ...]


class ImageClassifier2D(nn.Module, abc.ABC):
    """Interface shared by every 2D model: ``forward(x) == forward_head(forward_features(x))``.

    ``forward_features`` is everything before the global pool, which is the part a 2D->3D
    converter inflates; ``classifier_name`` names the classifier submodule, whose keys a
    checkpoint trained for another number of classes will not fit.
    """

    classifier_name: str
    num_features: int
    num_classes: int

    @abc.abstractmethod
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Feature map before the global pool, [B, num_features, H', W']."""

    @abc.abstractmethod
    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Pool and classify a feature map into logits [B, num_classes]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@runtime_checkable
class DenseFeatures2D(Protocol):
    """A 2D model whose head classifies every position of a feature map (a segmentation network).

    ``reset_classifier(0)`` removes its per-position classifier; ``forward`` then returns the map that
    classifier read, ``[B, num_features, ceil(H / output_stride), ceil(W / output_stride)]``, for another
    dense head (the range-image segmenter's). ``in_channels`` is what its stem reads; ``align_corners`` is how
    its own bilinear resizing aligns, which a head that upsamples its logits should follow.
    """

    in_channels: int
    num_features: int
    output_stride: int
    align_corners: bool

    def reset_classifier(self, num_classes: int) -> None: ...


def register_model_2d(builder: ModelBuilder2D) -> ModelBuilder2D:
    """Decorator: register ``builder`` under its function name."""
    name = builder.__name__
    if name in MODELS_2D:
        raise ValueError(f"2D model {name!r} is registered twice")
    MODELS_2D[name] = builder
    return builder


def list_models_2d() -> list[str]:
    """Names of all registered 2D models, sorted."""
    return sorted(MODELS_2D)


def create_model_2d(name: str, **kwargs: object) -> nn.Module:
    """Build the registered model ``name``; unknown names and arguments raise ``ConfigError``."""
    builder = MODELS_2D.get(name)
    if builder is None:
        raise ConfigError(f"unknown 2D model {name!r}; available: {', '.join(list_models_2d())}")
    try:
        inspect.signature(builder).bind(**kwargs)
    except TypeError as err:
        raise ConfigError(f"2D model {name!r}: {err}") from None
    return builder(**kwargs)


@dataclass(frozen=True)
class PretrainedWeights:
    """Where a set of 2D weights comes from and how its checkpoint file is laid out.

    ``file`` is a local path, or None when the user must supply the file (see ``source``);
    ``source`` documents the origin and is never fetched. ``key_prefix`` is stripped from keys that
    carry it; ``state_dict_key`` names the entry holding the state dict (None: detect it);
    ``key_map``, when set, renames the file's keys to the model's (None from it drops a key).
    """

    name: str
    architecture: str
    file: str | None
    source: str
    key_prefix: str
    state_dict_key: str | None
    num_classes: int
    input_size: int
    top1_accuracy: float | None
    notes: str
    key_map: Callable[[str], str | None] | None = None


def _torchvision_imagenet(architecture: str, file_name: str, top1: float) -> PretrainedWeights:
    return PretrainedWeights(
        name=f"{architecture}_imagenet",
        architecture=architecture,
        file=None,
        source=f"torchvision IMAGENET1K_V1, https://download.pytorch.org/models/{file_name}",
        key_prefix="",
        state_dict_key=None,
        num_classes=IMAGENET_NUM_CLASSES,
        input_size=IMAGENET_INPUT_SIZE,
        top1_accuracy=top1,
        notes="Download the file yourself and pass its path; image2point's ResNets share its keys.",
    )


def torchvision_imagenet_weights(
    architecture: str,
    file_name: str,
    top1: float,
    input_size: int = IMAGENET_INPUT_SIZE,
    key_map: Callable[[str], str | None] | None = None,
) -> PretrainedWeights:
    """Descriptor of torchvision's ``IMAGENET1K_V1`` weights of ``architecture`` (not downloaded)."""
    notes = f"Download the file yourself and pass its path; {architecture} has torchvision's keys."
    if key_map is not None:
        notes += " The file uses older key names, which key_map renames."
    return replace(
        _torchvision_imagenet(architecture, file_name, top1),
        input_size=input_size,
        key_map=key_map,
        notes=notes,
    )


def _cifar10_resnet(depth: int, file_name: str, top1: float) -> PretrainedWeights:
    return PretrainedWeights(
        name=f"cifar_resnet{depth}_cifar10",
        architecture=f"cifar_resnet{depth}",
        file=str(SHARED_WEIGHTS_DIR / file_name),
        source=(
            "akamaster/pytorch_resnet_cifar10 @ d5489e89, "
            f"pretrained_models/{file_name} (BSD-2-Clause)"
        ),
        key_prefix=DATA_PARALLEL_PREFIX,
        state_dict_key="state_dict",
        num_classes=CIFAR10_NUM_CLASSES,
        input_size=CIFAR_INPUT_SIZE,
        top1_accuracy=top1,
        notes="Top-1 on the CIFAR-10 test set as stored in the checkpoint's best_prec1.",
    )


KNOWN_WEIGHTS: dict[str, PretrainedWeights] = {
    w.name: w
    for w in (
        _torchvision_imagenet("resnet18", "resnet18-f37072fd.pth", 69.758),
        _torchvision_imagenet("resnet34", "resnet34-b627a593.pth", 73.314),
        _torchvision_imagenet("resnet50", "resnet50-0676ba61.pth", 76.130),
        _torchvision_imagenet("resnet101", "resnet101-63fe2227.pth", 77.374),
        _torchvision_imagenet("resnet152", "resnet152-394f9c45.pth", 78.312),
        _cifar10_resnet(20, "resnet20-12fca82f.th", 91.78),
        _cifar10_resnet(32, "resnet32-d509ac18.th", 92.78),
        _cifar10_resnet(44, "resnet44-014dd654.th", 93.14),
        _cifar10_resnet(56, "resnet56-4bfd9763.th", 93.62),
        PretrainedWeights(
            name="resnet50_fractaldb1k",
            architecture="resnet50",
            file=None,
            source=(
                "Kataoka et al., 'Pre-training without Natural Images', ACCV 2020; "
                "github.com/hirokatsukataoka16/FractalDB-Pretrained-ResNet-PyTorch"
            ),
            key_prefix=DATA_PARALLEL_PREFIX,
            state_dict_key=None,
            num_classes=IMAGENET_NUM_CLASSES,
            input_size=IMAGENET_INPUT_SIZE,
            top1_accuracy=None,
            notes=(
                "ResNet-50 trained on 1,000 synthetic fractal categories, no natural images. "
                "Download it yourself and pass its path; a DataParallel 'module.' prefix is "
                "stripped and a 'state_dict' entry unwrapped when present."
            ),
        ),
    )
}


def register_known_weights(weights: PretrainedWeights) -> PretrainedWeights:
    """Add ``weights`` to :data:`KNOWN_WEIGHTS` (family modules register their own descriptors)."""
    if weights.name in KNOWN_WEIGHTS:
        raise ValueError(f"pretrained weights {weights.name!r} are registered twice")
    KNOWN_WEIGHTS[weights.name] = weights
    return weights


def list_known_weights() -> list[str]:
    """Names of all known pretrained-weight descriptors, sorted."""
    return sorted(KNOWN_WEIGHTS)


def get_known_weights(name: str) -> PretrainedWeights:
    """The descriptor called ``name``; an unknown name raises ``ConfigError`` listing known ones."""
    weights = KNOWN_WEIGHTS.get(name)
    if weights is None:
        raise ConfigError(
            f"unknown pretrained weights {name!r}; known: {', '.join(list_known_weights())}"
        )
    return weights
