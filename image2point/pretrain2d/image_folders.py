"""Real image classification sets on disk, as datasets for :func:`~image2point.pretrain2d.train2d.train_2d`.

Three layouts are read:

* :class:`TinyImageNet`: the Tiny-ImageNet-200 release (``wnids.txt``, ``words.txt``,
  ``train/<wnid>/images/*.JPEG``, ``val/images/*.JPEG`` with ``val/val_annotations.txt``).
* :class:`ImageFolder`: the common ``root/<class>/<image>`` layout, classes labelled in sorted order.
* :class:`MNIST`: the idx files of LeCun's distribution, gzipped or not.

Every item is ``(image, label)``: a float32 ``[3, H, W]`` tensor (grayscale is repeated into three
channels) normalised with the ImageNet mean and standard deviation, as FractalDB images are, so a
model pretrained on any of them takes the same inputs as an ImageNet-pretrained one; and an int.

Decoding: image files are listed (and checked to exist) when a dataset is built. By default each
image is then decoded lazily, when its item is read, so building a dataset of many files is quick;
with ``preload=True`` every image is decoded once, at construction, into one uint8 array
``[N, H, W, 3]`` kept in memory (Tiny-ImageNet's 10,000 training and 10,000 validation images take
about 123 MB each at 64x64, a quarter at 32x32), which makes each training epoch cheaper and finds
every unreadable file up front. Either way an unreadable file raises :class:`DataError` naming it.

All images of a dataset must have one size, so that they batch: give ``image_size`` to resize every
image to a square of that side; otherwise the first image sets the size and an image of another size
raises :class:`DataError` naming it. MNIST is small and always decoded at construction.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from image2point.channels import RGB_CHANNELS
from image2point.errors import ConfigError, DataError
from image2point.pretrain2d.fractaldb import IMAGENET_MEAN, IMAGENET_STD
from image2point.pretrain2d.idx_files import find_idx_file, read_idx_images, read_idx_labels

UINT8_MAX = 255
# File name endings read as images (compared case-insensitively; Tiny-ImageNet uses ".JPEG").
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".ppm", ".tif", ".tiff", ".webp")

TINY_IMAGENET_CLASS_LIST = "wnids.txt"
TINY_IMAGENET_CLASS_WORDS = "words.txt"
TINY_IMAGENET_SPLITS = ("train", "val")
TINY_IMAGENET_VAL_ANNOTATIONS = "val_annotations.txt"
# A val_annotations.txt line: file name, wnid, then the bounding box (x0, y0, x1, y1), unused here.
VAL_ANNOTATION_FIELDS = 6

MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
MNIST_SIZE = 28
MNIST_NUM_CLASSES = 10
MNIST_RESIZE_MODES = ("pad", "resize")

_MEAN = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(RGB_CHANNELS, 1, 1)
_STD = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(RGB_CHANNELS, 1, 1)


def to_model_input(pixels: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """uint8 pixels, ``[H, W, 3]`` or grayscale ``[H, W]``, as float32 ``[3, H, W]``: in [0, 1], then
    (with ``normalize``) shifted and scaled by the ImageNet mean and standard deviation."""
    image = pixels.float() / UINT8_MAX
    channels_first = image.expand(RGB_CHANNELS, -1, -1) if image.ndim == 2 else image.permute(2, 0, 1)
    if normalize:
        return (channels_first - _MEAN) / _STD
    return channels_first.contiguous()


def decode_image(path: str | Path, image_size: int | None = None) -> np.ndarray:
    """Decode an image file into uint8 RGB ``[H, W, 3]`` (grayscale, palette and alpha images are
    converted), resized bilinearly to ``image_size`` x ``image_size`` when given. Needs Pillow.

    A missing, truncated or undecodable file raises :class:`DataError` naming it.
    """
    try:
        from PIL import Image
    except ImportError as error:
        raise ImportError("reading image files needs Pillow: pip install Pillow") from error

    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()
            rgb = image.convert("RGB")
            if image_size is not None and rgb.size != (image_size, image_size):
                rgb = rgb.resize((image_size, image_size), Image.Resampling.BILINEAR)
            return np.array(rgb, dtype=np.uint8)
    except FileNotFoundError as error:
        raise DataError("image file not found", path) from error
    # Pillow reports damaged files as OSError (truncated, unidentified), ValueError or SyntaxError
    # (malformed chunks), and oversized ones as DecompressionBombError.
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise DataError(f"cannot decode image: {error}", path) from error


def _check_image_size(image_size: int | None) -> None:
    if image_size is not None and image_size < 1:
        raise ConfigError(f"image_size must be >= 1, got {image_size}")


def _is_hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def list_images(directory: Path, extensions: Sequence[str] = IMAGE_EXTENSIONS) -> list[Path]:
    """Image files under ``directory`` (recursively, sorted, hidden files and folders skipped) whose
    names end with one of ``extensions`` (case-insensitive)."""
    endings = tuple(extension.lower() for extension in extensions)
    return sorted(
        path
        for path in directory.rglob("*")
        if path.name.lower().endswith(endings) and path.is_file() and not _is_hidden(path, directory)
    )


class ImageFiles(Dataset):
    """Labelled image files as ``(float32 [3, H, W], label)`` items; the base of :class:`ImageFolder`
    and :class:`TinyImageNet` (see the module docstring for lazy decoding and ``preload``).

    Attributes: ``files`` (one path per item), ``labels`` (int64 ``[N]``), ``class_names`` (one per
    label), ``image_shape`` ((H, W) of every item) and, with ``preload``, ``images`` (uint8
    ``[N, H, W, 3]``; otherwise None).
    """

    def __init__(
        self,
        files: Sequence[Path],
        labels: Sequence[int],
        class_names: Sequence[str],
        image_size: int | None = None,
        normalize: bool = True,
        preload: bool = False,
    ):
        _check_image_size(image_size)
        if len(files) != len(labels):
            raise DataError(f"{len(files)} image files but {len(labels)} labels")
        if not files:
            raise DataError("no image files")
        self.files = tuple(Path(path) for path in files)
        self.labels = torch.as_tensor(labels, dtype=torch.int64)
        self.class_names = tuple(class_names)
        self.image_size = image_size
        self.normalize = normalize
        first = decode_image(self.files[0], image_size)
        self.image_shape: tuple[int, int] = (first.shape[0], first.shape[1])
        self.images: np.ndarray | None = None
        if preload:
            images = np.empty((len(self.files), *self.image_shape, RGB_CHANNELS), dtype=np.uint8)
            images[0] = first
            for index in range(1, len(self.files)):
                images[index] = self._decode(index)
            self.images = images

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def _decode(self, index: int) -> np.ndarray:
        pixels = decode_image(self.files[index], self.image_size)
        if pixels.shape[:2] != self.image_shape:
            height, width = pixels.shape[:2]
            raise DataError(
                f"image is {width}x{height} pixels but the dataset's are "
                f"{self.image_shape[1]}x{self.image_shape[0]}; pass image_size to resize them all",
                self.files[index],
            )
        return pixels

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        pixels = self.images[index] if self.images is not None else self._decode(index)
        return to_model_input(torch.from_numpy(pixels), self.normalize), int(self.labels[index])


class ImageFolder(ImageFiles):
    """The ``root/<class>/<image>`` layout: one folder per class (sorted names give labels 0, 1, ...),
    image files anywhere beneath it with one of ``extensions``. Hidden files and folders are
    skipped; a class folder without images raises :class:`DataError` naming it."""

    def __init__(
        self,
        root: str | Path,
        extensions: Sequence[str] = IMAGE_EXTENSIONS,
        image_size: int | None = None,
        normalize: bool = True,
        preload: bool = False,
    ):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError("image folder not found (expected <root>/<class>/<image>)", self.root)
        class_dirs = sorted(path for path in self.root.iterdir() if path.is_dir() and not path.name.startswith("."))
        if not class_dirs:
            raise DataError("no class folders (expected <root>/<class>/<image>)", self.root)
        files: list[Path] = []
        labels: list[int] = []
        for label, class_dir in enumerate(class_dirs):
            class_files = list_images(class_dir, extensions)
            if not class_files:
                raise DataError(f"class folder holds no images ending in {', '.join(extensions)}", class_dir)
            files += class_files
            labels += [label] * len(class_files)
        super().__init__(files, labels, [path.name for path in class_dirs], image_size, normalize, preload)


class TinyImageNet(ImageFiles):
    """Tiny-ImageNet-200 (64x64 images of 200 ImageNet classes), ``split`` "train" or "val".

    Labels follow the order of ``wnids.txt``; ``class_names`` are the glosses of ``words.txt``
    (e.g. "goldfish, Carassius auratus"), or the wnids where that file or a wnid's line is absent.
    Validation labels come from ``val/val_annotations.txt``; its bounding boxes are not used.
    ``wnids`` holds the class identifiers.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        image_size: int | None = None,
        normalize: bool = True,
        preload: bool = False,
    ):
        if split not in TINY_IMAGENET_SPLITS:
            raise ConfigError(f"Tiny-ImageNet split must be one of {TINY_IMAGENET_SPLITS}, got {split!r}")
        self.root = Path(root)
        self.split = split
        self.wnids = read_wnids(self.root / TINY_IMAGENET_CLASS_LIST)
        glosses = read_words(self.root / TINY_IMAGENET_CLASS_WORDS, self.wnids)
        class_names = [glosses.get(wnid, wnid) for wnid in self.wnids]
        if split == "train":
            files, labels = self._train_files()
        else:
            files, labels = read_val_annotations(
                self.root / "val" / TINY_IMAGENET_VAL_ANNOTATIONS, self.wnids, self.root / "val" / "images"
            )
        super().__init__(files, labels, class_names, image_size, normalize, preload)

    def _train_files(self) -> tuple[list[Path], list[int]]:
        files: list[Path] = []
        labels: list[int] = []
        for label, wnid in enumerate(self.wnids):
            class_dir = self.root / "train" / wnid / "images"
            if not class_dir.is_dir():
                raise DataError(f"training folder of class {wnid} not found", class_dir)
            class_files = list_images(class_dir)
            if not class_files:
                raise DataError(f"training folder of class {wnid} holds no images", class_dir)
            files += class_files
            labels += [label] * len(class_files)
        return files, labels


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError as error:
        raise DataError(f"missing {what}", path) from error
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"cannot read {what}: {error}", path) from error


def read_wnids(path: Path) -> tuple[str, ...]:
    """The class identifiers of ``wnids.txt``, one per non-blank line, in file order."""
    wnids = tuple(line.strip() for line in _read_text(path, "class list").splitlines() if line.strip())
    if not wnids:
        raise DataError("class list is empty", path)
    duplicates = sorted(wnid for wnid, count in Counter(wnids).items() if count > 1)
    if duplicates:
        raise DataError(f"class list repeats {', '.join(duplicates)}", path)
    return wnids


def read_words(path: Path, wnids: Sequence[str]) -> dict[str, str]:
    """The glosses of ``words.txt`` (``<wnid>\\t<gloss>`` lines) for ``wnids``; empty when the file is
    absent, since the class names are only descriptive."""
    if not path.exists():
        return {}
    wanted = set(wnids)
    glosses: dict[str, str] = {}
    for number, line in enumerate(_read_text(path, "class words").splitlines(), start=1):
        if not line.strip():
            continue
        wnid, separator, gloss = line.partition("\t")
        if not separator:
            raise DataError(f"line {number}: expected '<wnid><tab><words>', got {line!r}", path)
        if wnid in wanted:
            glosses[wnid] = gloss.strip()
    return glosses


def read_val_annotations(path: Path, wnids: Sequence[str], image_dir: Path) -> tuple[list[Path], list[int]]:
    """Image paths (in ``image_dir``) and labels (indices into ``wnids``) of ``val_annotations.txt``,
    in file order. Every listed image must exist and be listed once."""
    label_of = {wnid: label for label, wnid in enumerate(wnids)}
    files: list[Path] = []
    labels: list[int] = []
    seen: set[str] = set()
    for number, line in enumerate(_read_text(path, "validation annotation file").splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != VAL_ANNOTATION_FIELDS:
            raise DataError(f"line {number}: expected '<file> <wnid> <x0> <y0> <x1> <y1>', got {line.strip()!r}", path)
        name, wnid = fields[0], fields[1]
        if wnid not in label_of:
            raise DataError(f"line {number}: class {wnid} of {name} is not in {TINY_IMAGENET_CLASS_LIST}", path)
        if name in seen:
            raise DataError(f"line {number}: {name} is annotated twice", path)
        seen.add(name)
        image_path = image_dir / name
        if not image_path.is_file():
            raise DataError(f"image listed in {path.name} (line {number}) not found", image_path)
        files.append(image_path)
        labels.append(label_of[wnid])
    if not files:
        raise DataError("validation annotation file lists no images", path)
    return files, labels


class MNIST(Dataset):
    """MNIST digits from the idx files in ``root`` (``t10k-*`` for split "test", ``train-*`` for
    "train"; each gzipped, ``.gz``, or not), decoded at construction.

    The 28x28 grayscale digits are repeated into three channels. With ``image_size``, ``mode``
    "pad" centres each digit on a black square of that side (at least 28; e.g. 32 as in LeNet-5),
    and "resize" rescales it bilinearly (with antialiasing when shrinking).

    Attributes: ``images`` (uint8 ``[N, S, S]``), ``labels`` (int64 ``[N]``), ``class_names``
    ("0" .. "9"), ``image_shape``.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "test",
        image_size: int | None = None,
        mode: str = "pad",
        normalize: bool = True,
    ):
        if split not in MNIST_FILES:
            raise ConfigError(f"MNIST split must be one of {tuple(MNIST_FILES)}, got {split!r}")
        if mode not in MNIST_RESIZE_MODES:
            raise ConfigError(f"MNIST mode must be one of {MNIST_RESIZE_MODES}, got {mode!r}")
        _check_image_size(image_size)
        if mode == "pad" and image_size is not None and image_size < MNIST_SIZE:
            raise ConfigError(f"MNIST mode 'pad' needs image_size >= {MNIST_SIZE}, got {image_size}")
        self.root = Path(root)
        self.split = split
        self.normalize = normalize
        images_name, labels_name = MNIST_FILES[split]
        images_path = find_idx_file(self.root, images_name)
        labels_path = find_idx_file(self.root, labels_name)
        digits = read_idx_images(images_path)
        labels = read_idx_labels(labels_path)
        if len(labels) != len(digits):
            raise DataError(f"{len(labels)} labels for the {len(digits)} images of {images_path.name}", labels_path)
        if labels.size and int(labels.max()) >= MNIST_NUM_CLASSES:
            raise DataError(f"labels must be digits 0-9, found {int(labels.max())}", labels_path)
        images = torch.from_numpy(digits)
        if image_size is not None:
            images = pad_images(images, image_size) if mode == "pad" else resize_images(images, image_size)
        self.images = images
        self.labels = torch.from_numpy(labels.astype(np.int64))
        self.class_names = tuple(str(digit) for digit in range(MNIST_NUM_CLASSES))
        self.image_shape: tuple[int, int] = (int(images.shape[1]), int(images.shape[2]))

    @property
    def num_classes(self) -> int:
        return MNIST_NUM_CLASSES

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return to_model_input(self.images[index], self.normalize), int(self.labels[index])


def pad_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """Centre uint8 ``[N, H, W]`` images on zero squares ``[N, size, size]`` (an odd margin puts the
    extra pixel below and to the right)."""
    rows = size - images.shape[1]
    cols = size - images.shape[2]
    return F.pad(images, (cols // 2, cols - cols // 2, rows // 2, rows - rows // 2))


def resize_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinearly resize uint8 ``[N, H, W]`` images to ``[N, size, size]`` (antialiased)."""
    resized = F.interpolate(
        images[:, None].float(), size=(size, size), mode="bilinear", align_corners=False, antialias=True
    )
    return resized[:, 0].round().clamp(0, UINT8_MAX).to(torch.uint8)
