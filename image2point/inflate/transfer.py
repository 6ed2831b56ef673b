"""2D weights into a converted 3D model, by name, with a report of where every tensor went.

A 2D conv kernel ``[M, N, K, K]`` whose 3D home is a 3D kernel is inflated (``inflate_weight(w2d, T)``), or,
for a learnable-T conv, copied to ``<name>.weight_2d`` as is; every other tensor (BatchNorm statistics and
affine parameters, PReLU slopes, LayerNorm, the 2D modules a converted graph keeps for dense values such as
squeeze-and-excitation convs and the classifier) is carried over unchanged. Every shape is checked. The
:class:`ConversionReport` lists what was inflated, carried, carried as the classifier, dropped and newly
initialised; every 2D key lands in exactly one of inflated / carried / classifier / dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

import torch
from torch import nn

from image2point.inflate.settings import InflationSettings
from image2point.inflate.shortcuts import DEFAULT_STRIDED_SHORTCUT, StridedShortcut
from image2point.inflate.transforms import filter_transform, inflate_weight

KERNEL_2D_DIMS, KERNEL_3D_DIMS = 4, 5


@dataclass(frozen=True)
class InflatedKernel:
    name: str
    shape_2d: tuple[int, ...]
    shape_3d: tuple[int, ...]


@dataclass
class ConversionReport:
    """Where every 2D tensor went, and which 3D tensors start from scratch.

    ``classifier`` lists the 2D keys of the layers after the last sparse map (global pool onwards: the
    classifier), carried over unchanged and run on dense values as in 2D.
    """

    transform: str
    learnable_t: str
    shortcut: StridedShortcut = DEFAULT_STRIDED_SHORTCUT
    inflated: list[InflatedKernel] = field(default_factory=list)
    carried: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    initialised: list[str] = field(default_factory=list)
    classifier: list[str] = field(default_factory=list)

    def accounted_2d_keys(self) -> set[str]:
        return ({kernel.name for kernel in self.inflated} | set(self.carried) | set(self.dropped)
                | set(self.classifier))

    def summary(self) -> str:
        def listed(keys: list[str]) -> str:
            return f" ({', '.join(keys)})" if keys else ""

        lines = [
            f"2D → 3D conversion (T = {self.transform}, learnable T: {self.learnable_t}, "
            f"strided shortcuts: {self.shortcut.value})",
            f"  inflated conv kernels : {len(self.inflated)}",
            f"  carried over (BN etc.): {len(self.carried)}",
        ]
        if self.classifier:
            lines.append(f"  classifier (kept 2D)  : {len(self.classifier)}{listed(self.classifier)}")
        lines += [
            f"  dropped               : {len(self.dropped)}{listed(self.dropped)}",
            f"  newly initialised     : {len(self.initialised)}",
        ]
        return "\n".join(lines)


def transfer_2d_weights(
    state_2d: Mapping[str, torch.Tensor],
    model_3d: nn.Module,
    settings: InflationSettings = InflationSettings(),
    rename: Callable[[str], str] | None = None,
) -> ConversionReport:
    """Copy a 2D state dict into a converted 3D model, by name.

    A 4D conv kernel whose 3D home ``<name>.weight`` is 5D goes there inflated by the fixed T of
    ``settings.transform`` (or, for a learnable-T conv, to ``<name>.weight_2d`` as is); every other tensor
    is carried over when a 3D tensor of that name exists (a 2D conv kept for dense values keeps its 4D
    kernel). 2D tensors without a 3D home are reported as dropped; 3D tensors that received nothing are
    reported as initialised. Any shape disagreement raises.
    """
    rename = rename or (lambda key: key)
    targets = model_3d.state_dict(keep_vars=True)
    report = ConversionReport(settings.transform, settings.learnable_t, settings.shortcut)
    received: set[str] = set()
    transforms: dict[int, torch.Tensor] = {}
    with torch.no_grad():
        for key_2d, value in state_2d.items():
            key = rename(key_2d)
            module_name, _, leaf = key.rpartition(".")
            learnable_home = f"{module_name}.weight_2d" if module_name else "weight_2d"
            is_kernel = value.dim() == KERNEL_2D_DIMS and leaf == "weight"
            if is_kernel and learnable_home in targets:
                _copy_checked(targets[learnable_home], value, key_2d, learnable_home)
                report.inflated.append(InflatedKernel(key_2d, tuple(value.shape), tuple(value.shape) + value.shape[-1:]))
                received.add(learnable_home)
            elif is_kernel and key in targets and targets[key].dim() == KERNEL_3D_DIMS:
                kernel_size = value.shape[-1]
                if kernel_size not in transforms:
                    transforms[kernel_size] = filter_transform(settings.transform, kernel_size, settings.normalize)
                inflated = inflate_weight(value.float(), transforms[kernel_size])
                _copy_checked(targets[key], inflated, key_2d, key)
                report.inflated.append(InflatedKernel(key_2d, tuple(value.shape), tuple(inflated.shape)))
                received.add(key)
            elif key in targets:
                _copy_checked(targets[key], value, key_2d, key)
                report.carried.append(key_2d)
                received.add(key)
            else:
                report.dropped.append(key_2d)
    # A tied tensor (a shared T) appears under every user's name; report it once.
    unique = {name for name, _ in model_3d.named_parameters()} | {name for name, _ in model_3d.named_buffers()}
    report.initialised = [key for key in targets if key not in received and key in unique]
    return report


def _copy_checked(target: torch.Tensor, value: torch.Tensor, key_2d: str, key_3d: str) -> None:
    if tuple(target.shape) != tuple(value.shape):
        raise ValueError(f"shape mismatch: 2D {key_2d} {tuple(value.shape)} → 3D {key_3d} {tuple(target.shape)}")
    target.copy_(value.to(target.dtype))
