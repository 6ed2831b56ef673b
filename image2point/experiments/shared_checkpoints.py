"""Released checkpoints of the shared directory that a user-given source has for some architectures.

``imagenet`` has the ImageNet-1k MobileNetV1 x0.25 and ``cityscapes`` the Cityscapes ESPNet-C encoder (the
files of ``image2point.models2d``'s ``mobilenet_v1_x0_25_imagenet`` and ``espnet_c_p2_q8_cityscapes``
entries); a run asking one of these sources for that architecture loads the file, any other architecture
still needs ``--weights SOURCE:ARCH=PATH``. A shared directory without the file makes the runs missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from image2point.experiments.scales import SMALL_CITYSCAPES_ARCH, SMALL_IMAGENET_ARCH


@dataclass(frozen=True)
class SharedCheckpoint:
    """A released checkpoint: the architecture it loads into, by name, and its file under the shared root."""

    arch: str
    path: str


IMAGENET_CHECKPOINTS = (SharedCheckpoint(SMALL_IMAGENET_ARCH, "weights/mobilenetv1_x0.25_imagenet.pth.tar"),)
CITYSCAPES_CHECKPOINTS = (SharedCheckpoint(SMALL_CITYSCAPES_ARCH, "weights/espnet_p2_q8_cityscapes_encoder.pth"),)


def locate_shared_checkpoint(source: str, entries: tuple[SharedCheckpoint, ...], arch: str, shared: Path,
                             shared_env: str) -> tuple[Path | None, str | None] | None:
    """(the file, None) or (None, why it is missing) for ``arch``; None when ``entries`` have no such entry."""
    entry = next((item for item in entries if item.arch == arch), None)
    if entry is None:
        return None
    path = shared / entry.path
    if not path.is_file():
        return None, (f"the shared {source} checkpoint for {arch} is not there: {path} "
                      f"(set {shared_env} or pass --weights {source}:{arch}=PATH)")
    return path, None
