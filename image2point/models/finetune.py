"""Finetuning schemes (paper Section 4.1, Table 1): which parameters train and whether BN statistics move.

=========  ==========================================================  ==================
scheme     trains                                                      backbone BN stats
=========  ==========================================================  ==================
io         input layer and output layer (I, O)                          frozen (eval)
io_stats   I, O                                                         updated (µ, σ)
io_bn      I, O, backbone BN weight and bias                            updated (µ, σ)
t          I, O, the learnable filter transforms T                      updated (µ, σ)
all        everything                                                   updated
scratch    everything, backbone re-initialised at random                updated
=========  ==========================================================  ==================

Frozen parameters get ``requires_grad=False`` here, before an optimizer is built, and
:func:`optimizer_parameters` hands the optimizer only trainable ones, so frozen weights never change
and never see weight decay.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from image2point.inflate.learnable import FilterTransform
from image2point.models.base import TransferredNetwork

SCHEMES = ("io", "io_stats", "io_bn", "t", "all", "scratch")


@dataclass(frozen=True)
class FinetunePlan:
    scheme: str
    trainable: tuple[str, ...]
    frozen: tuple[str, ...]
    backbone_bn_stats_frozen: bool

    @property
    def num_trainable(self) -> int:
        return len(self.trainable)

    def summary(self) -> str:
        stats = "frozen" if self.backbone_bn_stats_frozen else "updated"
        return (f"finetuning scheme {self.scheme!r}: {len(self.trainable)} trainable tensors, "
                f"{len(self.frozen)} frozen; backbone BN statistics {stats}")


def _is_batchnorm(module: nn.Module) -> bool:
    return isinstance(module, nn.modules.batchnorm._BatchNorm)


def _backbone_trainable(backbone: nn.Module, scheme: str) -> set[str]:
    """Names (relative to the backbone) of the backbone parameters that train under ``scheme``."""
    if scheme in ("all", "scratch"):
        return {name for name, _ in backbone.named_parameters()}
    # Parameters a backbone adds without a 2D source (a graph backbone's image adapter) belong with the
    # input layer: they train in every scheme.
    trainable: set[str] = set(getattr(backbone, "new_parameter_names", ()))
    for module_name, module in backbone.named_modules():
        prefix = f"{module_name}." if module_name else ""
        if scheme == "io_bn" and _is_batchnorm(module):
            trainable |= {prefix + name for name, _ in module.named_parameters(recurse=False)}
        if scheme == "t" and isinstance(module, FilterTransform):
            trainable |= {prefix + name for name, _ in module.named_parameters(recurse=False)}
    return trainable


def reinitialise(module: nn.Module) -> None:
    """Every submodule back to its own initialisation (3D layers: their 3D fan-in; BN: identity)."""
    for child in module.modules():
        if child is not module and hasattr(child, "reset_parameters"):
            child.reset_parameters()
        if _is_batchnorm(child):
            child.reset_running_stats()


def apply_finetune_scheme(network: TransferredNetwork, scheme: str) -> FinetunePlan:
    """Set ``requires_grad`` and the BN mode of ``network`` for ``scheme``; returns what it did."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown finetuning scheme {scheme!r}; choose one of {SCHEMES}")
    backbone = network.backbone
    if scheme == "t" and (backbone is None or not any(isinstance(m, FilterTransform) for m in backbone.modules())):
        raise ValueError("scheme 't' needs a backbone converted with a learnable T (learnable_t='shared' or 'per_conv')")
    if scheme == "scratch" and backbone is not None:
        reinitialise(backbone)
    backbone_trainable = _backbone_trainable(backbone, scheme) if backbone is not None else set()
    trainable, frozen = [], []
    for name, parameter in network.named_parameters():
        inside_backbone = name.startswith("backbone.")
        train = not inside_backbone or name.removeprefix("backbone.") in backbone_trainable
        parameter.requires_grad_(train)
        (trainable if train else frozen).append(name)
    network.freeze_backbone_bn_stats = scheme == "io"
    network.train(network.training)
    return FinetunePlan(scheme, tuple(trainable), tuple(frozen), network.freeze_backbone_bn_stats)


def optimizer_parameters(network: nn.Module) -> list[nn.Parameter]:
    """The parameters an optimizer should see: trainable ones only, each once."""
    return [parameter for parameter in network.parameters() if parameter.requires_grad]
