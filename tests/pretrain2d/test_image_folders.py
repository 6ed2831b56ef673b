import gzip
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from image2point.errors import ConfigError, DataError
from image2point.pretrain2d.fractaldb import IMAGENET_MEAN, IMAGENET_STD
from image2point.pretrain2d.image_folders import (
    MNIST,
    ImageFolder,
    TinyImageNet,
    decode_image,
    list_images,
    pad_images,
    to_model_input,
)

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
FIXTURE_SIZE = 8
# One solid colour per class, so an item's pixels show which class it was read from.
CLASS_COLOURS = ((200, 40, 40), (40, 200, 40), (40, 40, 200))
# JPEG stores a solid colour within a few levels.
JPEG_TOLERANCE = 4 / 255
JPEG_QUALITY = 95
GRAY_LEVEL = 90
TRAIN_PER_CLASS = 4
# Deliberately unsorted: labels must follow the file, not the alphabet.
WNIDS = ("n0300", "n0100", "n0200")
GLOSSES = {"n0100": "goldfish, Carassius auratus", "n0200": "tabby, tabby cat", "n0300": "lighthouse"}
# val image -> wnid, in annotation file order.
VAL_ANNOTATIONS = (
    ("val_0.JPEG", "n0200"),
    ("val_1.JPEG", "n0300"),
    ("val_2.JPEG", "n0100"),
    ("val_3.JPEG", "n0100"),
    ("val_4.JPEG", "n0200"),
    ("val_5.JPEG", "n0300"),
)
MNIST_TEST_FILES = ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
MNIST_FIXTURE_COUNT = 6
MNIST_SIDE = 28
IDX_IMAGES_MAGIC = 2051
IDX_LABELS_MAGIC = 2049


@dataclass(frozen=True)
class TinyImageNetTree:
    root: Path
    # (class index, image index) of the one grayscale training image.
    gray_label: int = 1
    gray_index: int = 0

    def train_image(self, label: int, index: int) -> Path:
        wnid = WNIDS[label]
        return self.root / "train" / wnid / "images" / f"{wnid}_{index}.JPEG"


def write_solid(path: Path, colour: tuple[int, int, int], size: int = FIXTURE_SIZE, mode: str = "RGB") -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    fill = colour if mode == "RGB" else GRAY_LEVEL
    Image.new(mode, (size, size), fill).save(
        path, format="JPEG" if path.suffix.lower() in (".jpeg", ".jpg") else None, quality=JPEG_QUALITY
    )


def write_tiny_imagenet(root: Path, with_words: bool = True) -> TinyImageNetTree:
    tree = TinyImageNetTree(root)
    root.mkdir(parents=True)
    (root / "wnids.txt").write_text("\n".join(WNIDS) + "\n")
    if with_words:
        unrelated = "n0999\tsomething else\n"
        (root / "words.txt").write_text(unrelated + "".join(f"{w}\t{g}\n" for w, g in sorted(GLOSSES.items())))
    for label, wnid in enumerate(WNIDS):
        (root / "train" / wnid).mkdir(parents=True)
        (root / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
        for index in range(TRAIN_PER_CLASS):
            gray = (label, index) == (tree.gray_label, tree.gray_index)
            write_solid(tree.train_image(label, index), CLASS_COLOURS[label], mode="L" if gray else "RGB")
    lines = []
    for name, wnid in VAL_ANNOTATIONS:
        write_solid(root / "val" / "images" / name, CLASS_COLOURS[WNIDS.index(wnid)])
        lines.append(f"{name}\t{wnid}\t0\t0\t{FIXTURE_SIZE - 1}\t{FIXTURE_SIZE - 1}")
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return tree


def write_image_folder(root: Path) -> dict[str, list[str]]:
    """Classes "b_cat" and "a_dog" (sorted: a_dog = 0) with PNG and JPEG files, a nested folder, and
    files that are not images or are hidden."""
    layout = {"a_dog": ["1.png", "2.jpg", "nested/3.PNG"], "b_cat": ["x.jpeg", "y.png"]}
    for label, (class_name, names) in enumerate(sorted(layout.items())):
        for name in names:
            write_solid(root / class_name / name, CLASS_COLOURS[label])
        (root / class_name / "notes.txt").write_text("not an image")
        write_solid(root / class_name / ".hidden.png", CLASS_COLOURS[2])
    (root / ".cache").mkdir()
    return layout


def idx_images(images: np.ndarray, magic: int = IDX_IMAGES_MAGIC) -> bytes:
    count, rows, cols = images.shape
    return struct.pack(">IIII", magic, count, rows, cols) + images.astype(np.uint8).tobytes()


def idx_labels(labels: np.ndarray, magic: int = IDX_LABELS_MAGIC) -> bytes:
    return struct.pack(">II", magic, len(labels)) + labels.astype(np.uint8).tobytes()


def write_mnist(root: Path, images_bytes: bytes, labels_bytes: bytes, compress: bool = True) -> tuple[Path, Path]:
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, data in zip(MNIST_TEST_FILES, (images_bytes, labels_bytes), strict=True):
        path = root / (name + ".gz" if compress else name)
        path.write_bytes(gzip.compress(data) if compress else data)
        paths.append(path)
    return paths[0], paths[1]


def mnist_digits() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (MNIST_FIXTURE_COUNT, MNIST_SIDE, MNIST_SIDE), dtype=np.uint8)
    return images, np.arange(MNIST_FIXTURE_COUNT, dtype=np.uint8)


def unnormalize(image: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return image * std + mean


def mean_colour(image: torch.Tensor) -> torch.Tensor:
    return unnormalize(image).mean(dim=(1, 2))


def assert_names(error: pytest.ExceptionInfo, path: Path) -> None:
    assert error.value.path == path
    assert str(path) in str(error.value)


@pytest.fixture
def tiny_tree(tmp_path) -> TinyImageNetTree:
    return write_tiny_imagenet(tmp_path / "tiny")


# -- Tiny-ImageNet --------------------------------------------------------------------------------


def test_tiny_imagenet_train_labels_follow_wnids_order(tiny_tree):
    dataset = TinyImageNet(tiny_tree.root, "train")
    assert len(dataset) == len(WNIDS) * TRAIN_PER_CLASS
    assert dataset.labels.tolist() == [label for label in range(len(WNIDS)) for _ in range(TRAIN_PER_CLASS)]
    assert dataset.wnids == WNIDS
    assert dataset.class_names == tuple(GLOSSES[wnid] for wnid in WNIDS)
    assert dataset.num_classes == len(WNIDS)
    for index in range(len(dataset)):
        image, label = dataset[index]
        assert image.dtype == torch.float32 and image.shape == (3, FIXTURE_SIZE, FIXTURE_SIZE)
        assert dataset.files[index].parent.parent.name == WNIDS[label]
        if (label, index % TRAIN_PER_CLASS) != (tiny_tree.gray_label, tiny_tree.gray_index):
            expected = torch.tensor(CLASS_COLOURS[label], dtype=torch.float32) / 255
            assert torch.allclose(mean_colour(image), expected, atol=JPEG_TOLERANCE)


def test_tiny_imagenet_val_labels_come_from_annotations(tiny_tree):
    dataset = TinyImageNet(tiny_tree.root, "val")
    assert [path.name for path in dataset.files] == [name for name, _ in VAL_ANNOTATIONS]
    assert dataset.labels.tolist() == [WNIDS.index(wnid) for _, wnid in VAL_ANNOTATIONS]
    for index, (_, wnid) in enumerate(VAL_ANNOTATIONS):
        image, label = dataset[index]
        expected = torch.tensor(CLASS_COLOURS[WNIDS.index(wnid)], dtype=torch.float32) / 255
        assert label == WNIDS.index(wnid)
        assert torch.allclose(mean_colour(image), expected, atol=JPEG_TOLERANCE)


def test_grayscale_image_is_repeated_into_three_channels(tiny_tree):
    dataset = TinyImageNet(tiny_tree.root, "train", normalize=False)
    index = dataset.files.index(tiny_tree.train_image(tiny_tree.gray_label, tiny_tree.gray_index))
    image, _ = dataset[index]
    assert image.shape == (3, FIXTURE_SIZE, FIXTURE_SIZE)
    assert torch.equal(image[0], image[1]) and torch.equal(image[1], image[2])
    assert torch.allclose(image.mean(), torch.tensor(GRAY_LEVEL / 255), atol=JPEG_TOLERANCE)


def test_class_names_are_wnids_without_words_file(tmp_path):
    tree = write_tiny_imagenet(tmp_path / "tiny", with_words=False)
    assert TinyImageNet(tree.root, "val").class_names == WNIDS


def test_normalisation_uses_imagenet_statistics(tiny_tree):
    normalized, _ = TinyImageNet(tiny_tree.root, "val")[0]
    raw, _ = TinyImageNet(tiny_tree.root, "val", normalize=False)[0]
    assert raw.min() >= 0 and raw.max() <= 1
    assert torch.allclose(unnormalize(normalized), raw, atol=1e-6)
    assert not torch.allclose(normalized, raw)


def test_preload_gives_the_same_items_as_lazy_decoding(tiny_tree):
    lazy = TinyImageNet(tiny_tree.root, "train", image_size=5)
    preloaded = TinyImageNet(tiny_tree.root, "train", image_size=5, preload=True)
    assert lazy.images is None
    assert preloaded.images.shape == (len(lazy), 5, 5, 3) and preloaded.images.dtype == np.uint8
    for index in range(len(lazy)):
        lazy_image, lazy_label = lazy[index]
        preloaded_image, preloaded_label = preloaded[index]
        assert lazy_image.shape == (3, 5, 5)
        assert torch.equal(lazy_image, preloaded_image) and lazy_label == preloaded_label


def test_unknown_split_is_refused(tiny_tree):
    with pytest.raises(ConfigError, match="split"):
        TinyImageNet(tiny_tree.root, "test")


def test_missing_class_list_names_it(tiny_tree):
    (tiny_tree.root / "wnids.txt").unlink()
    with pytest.raises(DataError, match="missing class list") as error:
        TinyImageNet(tiny_tree.root)
    assert_names(error, tiny_tree.root / "wnids.txt")


def test_repeated_wnid_is_refused(tiny_tree):
    (tiny_tree.root / "wnids.txt").write_text("n0100\nn0200\nn0100\n")
    with pytest.raises(DataError, match="repeats n0100") as error:
        TinyImageNet(tiny_tree.root)
    assert_names(error, tiny_tree.root / "wnids.txt")


def test_missing_val_annotations_names_the_file(tiny_tree):
    annotations = tiny_tree.root / "val" / "val_annotations.txt"
    annotations.unlink()
    with pytest.raises(DataError, match="missing validation annotation file") as error:
        TinyImageNet(tiny_tree.root, "val")
    assert_names(error, annotations)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("val_0.JPEG\tn0555\t0\t0\t7\t7", "line 2: class n0555 of val_0.JPEG is not in wnids.txt"),
        ("val_0.JPEG\tn0100", "line 2: expected"),
        ("val_0.JPEG\tn0100\t0\t0\t7\t7", "line 2: val_0.JPEG is annotated twice"),
    ],
)
def test_bad_annotation_line_names_file_and_line(tiny_tree, line, message):
    annotations = tiny_tree.root / "val" / "val_annotations.txt"
    first = annotations.read_text().splitlines()[0]
    annotations.write_text(f"{first}\n{line}\n")
    with pytest.raises(DataError, match=message) as error:
        TinyImageNet(tiny_tree.root, "val")
    assert_names(error, annotations)


def test_annotated_image_that_is_missing_is_named(tiny_tree):
    missing = tiny_tree.root / "val" / "images" / "val_3.JPEG"
    missing.unlink()
    with pytest.raises(DataError, match="line 4") as error:
        TinyImageNet(tiny_tree.root, "val")
    assert_names(error, missing)


def test_empty_training_class_folder_is_named(tiny_tree):
    images = tiny_tree.root / "train" / WNIDS[2] / "images"
    for path in images.iterdir():
        path.unlink()
    with pytest.raises(DataError, match="holds no images") as error:
        TinyImageNet(tiny_tree.root, "train")
    assert_names(error, images)


def test_corrupt_image_is_named_when_preloading_and_when_read(tiny_tree):
    corrupt = tiny_tree.train_image(2, 1)
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    with pytest.raises(DataError, match="cannot decode image") as error:
        TinyImageNet(tiny_tree.root, "train", preload=True)
    assert_names(error, corrupt)
    lazy = TinyImageNet(tiny_tree.root, "train")
    with pytest.raises(DataError, match="cannot decode image") as error:
        lazy[lazy.files.index(corrupt)]
    assert_names(error, corrupt)


def test_truncated_image_is_named(tiny_tree):
    truncated = tiny_tree.train_image(0, 2)
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    with pytest.raises(DataError, match="cannot decode image") as error:
        decode_image(truncated)
    assert_names(error, truncated)


def test_image_of_another_size_is_named_unless_resized(tiny_tree):
    odd = tiny_tree.train_image(1, 3)
    write_solid(odd, CLASS_COLOURS[1], size=FIXTURE_SIZE + 2)
    with pytest.raises(DataError, match=f"{FIXTURE_SIZE + 2}x{FIXTURE_SIZE + 2} pixels") as error:
        TinyImageNet(tiny_tree.root, "train", preload=True)
    assert_names(error, odd)
    resized = TinyImageNet(tiny_tree.root, "train", image_size=FIXTURE_SIZE, preload=True)
    assert resized.images.shape[1:3] == (FIXTURE_SIZE, FIXTURE_SIZE)


def test_non_positive_image_size_is_refused(tiny_tree):
    with pytest.raises(ConfigError, match="image_size"):
        TinyImageNet(tiny_tree.root, image_size=0)


# -- ImageFolder ----------------------------------------------------------------------------------


def test_image_folder_labels_sorted_classes_and_skips_non_images(tmp_path):
    layout = write_image_folder(tmp_path / "folder")
    dataset = ImageFolder(tmp_path / "folder")
    assert dataset.class_names == ("a_dog", "b_cat")
    relative = [path.relative_to(tmp_path / "folder").as_posix() for path in dataset.files]
    assert relative == sorted(f"a_dog/{name}" for name in layout["a_dog"]) + sorted(
        f"b_cat/{name}" for name in layout["b_cat"]
    )
    assert dataset.labels.tolist() == [0, 0, 0, 1, 1]
    for index in range(len(dataset)):
        image, label = dataset[index]
        assert image.shape == (3, FIXTURE_SIZE, FIXTURE_SIZE)
        expected = torch.tensor(CLASS_COLOURS[label], dtype=torch.float32) / 255
        assert torch.allclose(mean_colour(image), expected, atol=JPEG_TOLERANCE)


def test_image_folder_extensions_select_files(tmp_path):
    write_image_folder(tmp_path / "folder")
    dataset = ImageFolder(tmp_path / "folder", extensions=(".png",))
    assert [path.name for path in dataset.files] == ["1.png", "3.PNG", "y.png"]
    assert list_images(tmp_path / "folder" / "b_cat", (".JPEG",)) == [tmp_path / "folder" / "b_cat" / "x.jpeg"]


def test_image_folder_reads_the_tiny_imagenet_training_tree(tiny_tree):
    folder = ImageFolder(tiny_tree.root / "train")
    assert folder.class_names == tuple(sorted(WNIDS))
    assert len(folder) == len(WNIDS) * TRAIN_PER_CLASS


def test_image_folder_empty_class_is_named(tmp_path):
    write_image_folder(tmp_path / "folder")
    empty = tmp_path / "folder" / "c_empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images here")
    with pytest.raises(DataError, match="class folder holds no images") as error:
        ImageFolder(tmp_path / "folder")
    assert_names(error, empty)


def test_image_folder_without_class_folders_is_refused(tmp_path):
    root = tmp_path / "flat"
    write_solid(root / "lonely.png", CLASS_COLOURS[0])
    with pytest.raises(DataError, match="no class folders") as error:
        ImageFolder(root)
    assert_names(error, root)
    with pytest.raises(DataError, match="not found") as error:
        ImageFolder(tmp_path / "absent")
    assert_names(error, tmp_path / "absent")


def test_image_folder_corrupt_png_is_named(tmp_path):
    write_image_folder(tmp_path / "folder")
    corrupt = tmp_path / "folder" / "b_cat" / "y.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    with pytest.raises(DataError, match="cannot decode image") as error:
        ImageFolder(tmp_path / "folder", preload=True)
    assert_names(error, corrupt)


# -- MNIST ----------------------------------------------------------------------------------------


def test_mnist_reads_gzipped_idx_files(tmp_path):
    digits, labels = mnist_digits()
    write_mnist(tmp_path, idx_images(digits), idx_labels(labels))
    dataset = MNIST(tmp_path, normalize=False)
    assert len(dataset) == MNIST_FIXTURE_COUNT and dataset.num_classes == 10
    assert dataset.image_shape == (MNIST_SIDE, MNIST_SIDE)
    assert dataset.labels.tolist() == labels.tolist()
    image, label = dataset[3]
    assert image.shape == (3, MNIST_SIDE, MNIST_SIDE) and label == 3
    assert torch.equal((image[1] * 255).round().to(torch.uint8), torch.from_numpy(digits[3]))
    assert torch.equal(image[0], image[2])


def test_mnist_reads_uncompressed_idx_files(tmp_path):
    digits, labels = mnist_digits()
    write_mnist(tmp_path, idx_images(digits), idx_labels(labels), compress=False)
    assert torch.equal(MNIST(tmp_path).images, torch.from_numpy(digits))


def test_mnist_pads_digits_to_the_centre(tmp_path):
    digits, labels = mnist_digits()
    write_mnist(tmp_path, idx_images(digits), idx_labels(labels))
    padded = MNIST(tmp_path, image_size=32, mode="pad")
    assert padded.images.shape == (MNIST_FIXTURE_COUNT, 32, 32)
    assert torch.equal(padded.images[:, 2:30, 2:30], torch.from_numpy(digits))
    assert padded.images[:, :2].sum() == 0 and padded.images[:, :, 30:].sum() == 0
    assert padded[0][0].shape == (3, 32, 32)
    odd = pad_images(torch.ones(1, 2, 2, dtype=torch.uint8), 5)
    assert odd[0].tolist() == [[0, 0, 0, 0, 0], [0, 1, 1, 0, 0], [0, 1, 1, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]]


def test_mnist_resizes_digits(tmp_path):
    digits = np.zeros((2, MNIST_SIDE, MNIST_SIDE), dtype=np.uint8)
    digits[1] = 255
    write_mnist(tmp_path, idx_images(digits), idx_labels(np.array([4, 9])))
    dataset = MNIST(tmp_path, image_size=16, mode="resize")
    assert dataset.images.shape == (2, 16, 16) and dataset.images.dtype == torch.uint8
    assert int(dataset.images[0].max()) == 0 and int(dataset.images[1].min()) == 255


def test_mnist_bad_settings_are_refused(tmp_path):
    digits, labels = mnist_digits()
    write_mnist(tmp_path, idx_images(digits), idx_labels(labels))
    with pytest.raises(ConfigError, match="split"):
        MNIST(tmp_path, split="validation")
    with pytest.raises(ConfigError, match="mode"):
        MNIST(tmp_path, mode="crop")
    with pytest.raises(ConfigError, match="image_size >= 28"):
        MNIST(tmp_path, image_size=20, mode="pad")


@pytest.mark.parametrize(
    ("which", "make_bytes", "message"),
    [
        ("images", lambda d, l: idx_images(d, magic=IDX_LABELS_MAGIC), "magic number is 2049, expected 2051"),
        ("labels", lambda d, l: idx_labels(l, magic=IDX_IMAGES_MAGIC), "magic number is 2051, expected 2049"),
        ("images", lambda d, l: idx_images(d)[:-5], "holds 4699 data bytes, its header announces 4704"),
        ("labels", lambda d, l: idx_labels(l)[:5], "shorter than its 8-byte header"),
        ("labels", lambda d, l: idx_labels(l[:-1]), "5 labels for the 6 images"),
        ("labels", lambda d, l: idx_labels(l + 5), "labels must be digits 0-9, found 10"),
    ],
)
def test_mnist_bad_idx_file_is_named(tmp_path, which, make_bytes, message):
    digits, labels = mnist_digits()
    images_bytes, labels_bytes = idx_images(digits), idx_labels(labels)
    if which == "images":
        images_bytes = make_bytes(digits, labels)
    else:
        labels_bytes = make_bytes(digits, labels)
    images_path, labels_path = write_mnist(tmp_path, images_bytes, labels_bytes)
    with pytest.raises(DataError, match=message) as error:
        MNIST(tmp_path)
    assert_names(error, images_path if which == "images" else labels_path)


def test_mnist_corrupt_gzip_is_named(tmp_path):
    digits, labels = mnist_digits()
    images_path, _ = write_mnist(tmp_path, idx_images(digits), idx_labels(labels))
    images_path.write_bytes(gzip.compress(idx_images(digits))[:40])
    with pytest.raises(DataError, match="cannot read idx file") as error:
        MNIST(tmp_path)
    assert_names(error, images_path)


def test_mnist_missing_file_is_named(tmp_path):
    digits, labels = mnist_digits()
    _, labels_path = write_mnist(tmp_path, idx_images(digits), idx_labels(labels))
    labels_path.unlink()
    with pytest.raises(DataError, match="missing MNIST file") as error:
        MNIST(tmp_path)
    assert_names(error, labels_path)


def test_to_model_input_repeats_grayscale():
    gray = torch.full((2, 3), 255, dtype=torch.uint8)
    assert torch.equal(to_model_input(gray, normalize=False), torch.ones(3, 2, 3))


# -- the real data next to the repository ---------------------------------------------------------


def require_shared(relative: str) -> Path:
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"real data {relative} not found under {SHARED_DATA.resolve()}")
    return path


REAL_TINY_IMAGENET_CLASSES = 200
REAL_TINY_IMAGENET_SIZE = 64
REAL_SAMPLE_INDICES = (0, 1, -1)


def test_real_tiny_imagenet_train_decodes():
    root = require_shared("tiny-imagenet-200")
    dataset = TinyImageNet(root, "train")
    assert dataset.num_classes == REAL_TINY_IMAGENET_CLASSES
    assert dataset.labels.unique().tolist() == list(range(REAL_TINY_IMAGENET_CLASSES))
    assert dataset.class_names[dataset.wnids.index("n01443537")].startswith("goldfish")
    for index in (0, len(dataset) // 2, len(dataset) - 1):
        image, label = dataset[index]
        assert image.shape == (3, REAL_TINY_IMAGENET_SIZE, REAL_TINY_IMAGENET_SIZE)
        assert torch.isfinite(image).all()
        assert dataset.files[index].parent.parent.name == dataset.wnids[label]


def test_real_tiny_imagenet_val_labels_match_annotations():
    root = require_shared("tiny-imagenet-200")
    dataset = TinyImageNet(root, "val", image_size=32)
    annotated = dict(line.split("\t")[:2] for line in (root / "val" / "val_annotations.txt").read_text().splitlines())
    assert len(dataset) == len(annotated)
    for index in (0, 1, 2, len(dataset) - 1):
        image, label = dataset[index]
        assert image.shape == (3, 32, 32)
        assert dataset.wnids[label] == annotated[dataset.files[index].name]


def test_real_mnist_test_split_decodes():
    root = require_shared("mnist")
    dataset = MNIST(root, "test", image_size=32)
    assert len(dataset) == 10_000
    assert dataset.labels.unique().tolist() == list(range(10))
    # The first three digits of the MNIST test set.
    assert dataset.labels[:3].tolist() == [7, 2, 1]
    image, label = dataset[0]
    assert image.shape == (3, 32, 32) and label == 7
    assert int(dataset.images[:, :2].max()) == 0
    assert int(dataset.images[0].max()) == 255
