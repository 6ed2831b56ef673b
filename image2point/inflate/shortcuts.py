"""How a converted network's strided shortcuts read the finer level: one setting for the whole network.

A 2D ResNet's projection shortcut is a 1×1 stride-2 conv, and a CIFAR ResNet's option-A shortcut the
slice ``x[:, :, ::2, ::2]``: both read pixel ``2q`` for output ``q``. On a dense image that pixel always
exists; on a sparse surface the fine site ``2q`` is often empty, and a shortcut that reads only it
gives zero at that coarse site (about 4 in 10 coarse sites of the first strided ResNet-18 block on a
ModelNet40 chair at voxel 0.05). The settings:

- ``center``: read the child at ``2q`` only: exact 2D equivalence on a dense plane, and the zeros above.
- ``children_sum``: the 1×1 weight on all eight taps of a 2×2×2 stride-2 kernel, i.e. the sum over
  the children ``2q + {0, 1}³`` (the authors' code: ``weight_transform`` in ``model_zoo.py`` repeats a
  ``downsample`` kernel 8 times for the ``kernel_size=2, stride=2`` shortcut of ``ResidualBlock`` in
  ``core/models/collection/spvcnn18.py``). Its scale grows with the number of occupied children, which
  the 2D BatchNorm statistics that follow it never saw.
- ``children_mean``: the same sum divided by the number of occupied children, so a coarse site
  sees the average of what is there, on the scale a 2D checkpoint's BatchNorm statistics expect.

Children are the fine sites ``c`` with ``floor(c / 2) = q``. Under the ``floor`` stride convention every
coarse site has at least one; the ``window`` convention adds coarse sites whose 2×2×2 block is empty
(their 3×3×3 window reaches a neighbouring block), and those read no child under any setting.

The default is chosen in :data:`DEFAULT_STRIDED_SHORTCUT` (why: docs/fidelity.md).
"""

from __future__ import annotations

from enum import Enum


class StridedShortcut(Enum):
    """Which children of a coarse site a strided 1×1 shortcut (or option-A subsample) reads."""

    CENTER = "center"
    CHILDREN_SUM = "children_sum"
    CHILDREN_MEAN = "children_mean"

    @classmethod
    def parse(cls, value: "StridedShortcut | str") -> "StridedShortcut":
        """The member for ``value`` (a member or its name as in configs); ValueError names the choices."""
        if isinstance(value, cls):
            return value
        try:
            return cls(value)
        except ValueError:
            choices = ", ".join(repr(member.value) for member in cls)
            raise ValueError(f"strided shortcut must be one of {choices}, got {value!r}") from None


# The authors' behaviour. Measured on the ModelNet40, SemanticKITTI and procedural samples (3 seeds,
# docs/fidelity.md): summing the children beats `center` in 4 of 11 cells and is never detectably
# below it; against `children_mean` no cell can tell, and with the backbone's BN statistics frozen
# (scheme io) the sum does not break transfer. So, as the paper's engine does, sum.
DEFAULT_STRIDED_SHORTCUT = StridedShortcut.CHILDREN_SUM
# What a checkpoint made before the setting existed was trained with.
LEGACY_STRIDED_SHORTCUT = StridedShortcut.CENTER
