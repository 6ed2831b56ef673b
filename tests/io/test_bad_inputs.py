"""Malformed point cloud files: each raises DataError whose message names the file and the problem.
Also the unusual inputs that must work: LAS with odd scale and offset, coordinates near 1e7."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from image2point.errors import DataError
from image2point.io import (
    iter_input_paths,
    needs_recentring,
    read_labels,
    read_point_cloud,
    recentre,
    write_las,
    write_pcd,
    write_ply,
)

MILLIMETRE = 1e-3
PCD_HEADER = (
    "VERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\n"
    "WIDTH {width}\nHEIGHT 1\nPOINTS {points}\nDATA {data}\n"
)
PLY_ASCII_HEADER = "ply\nformat ascii 1.0\nelement vertex {count}\n{properties}end_header\n"
TRIANGLE = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


@dataclass(frozen=True)
class BadFile:
    """A malformed file that ``write`` creates in a directory, and what the error must say about it."""

    name: str
    write: Callable[[Path], None]
    problem: str  # a regular expression the message must contain after "<path>: "
    read_options: dict = field(default_factory=dict)


def text(content: str) -> Callable[[Path], None]:
    return lambda path: path.write_text(content)


def raw_bytes(content: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(content)


def npy(array: np.ndarray) -> Callable[[Path], None]:
    return lambda path: np.save(path, array)


def h5(**datasets: np.ndarray) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        h5py = pytest.importorskip("h5py")
        with h5py.File(path, "w") as file:
            for name, values in datasets.items():
                file[name] = values

    return write


def ascii_ply(properties: list[str], rows: list[str], extra_elements: str = "") -> Callable[[Path], None]:
    header = PLY_ASCII_HEADER.format(
        count=len(rows), properties="".join(f"property float {name}\n" for name in properties) + extra_elements
    )
    return text(header + "".join(row + "\n" for row in rows))


def truncated_binary_ply(path: Path) -> None:
    write_ply(path, TRIANGLE)
    path.write_bytes(path.read_bytes()[:-5])


def ply_with_faces_only(path: Path) -> None:
    path.write_text(
        "ply\nformat ascii 1.0\nelement face 1\nproperty list uchar int vertex_indices\nend_header\n3 0 1 2\n"
    )


def binary_pcd(declared_points: int, records: int) -> Callable[[Path], None]:
    header = PCD_HEADER.format(width=declared_points, points=declared_points, data="binary").encode()
    return raw_bytes(header + np.ones((records, 3), dtype="<f4").tobytes())


def truncated_laz(path: Path) -> None:
    pytest.importorskip("laspy")
    pytest.importorskip("lazrs")
    write_las(path, np.random.default_rng(0).uniform(0, 10, (100, 3)))
    path.write_bytes(path.read_bytes()[:-100])


def pcd_with_nan_rows(path: Path) -> None:
    rows = "1 2 3\nnan nan nan\n4 5 6\nnan nan nan\n"
    path.write_text(PCD_HEADER.format(width=4, points=4, data="ascii") + rows)


def not_utf8(path: Path) -> None:
    path.write_bytes(b"1 2 3\n4 \xff 6\n")


def object_npy(path: Path) -> None:
    np.save(path, np.array([[1, "a", None]], dtype=object), allow_pickle=True)


BAD_FILES = [
    BadFile("empty.txt", text(""), r"empty file \(0 bytes\)"),
    BadFile("empty.bin", raw_bytes(b""), r"empty file \(0 bytes\)"),
    BadFile("blank.csv", text("\n  \n\n"), "no points: the file holds only blank lines"),
    BadFile("truncated.bin", raw_bytes(bytes(1001)), "size 1001 bytes is not a multiple of the 16-byte record"),
    BadFile("two_columns.txt", text("1 2\n3 4\n"), "wrong column count: 2 columns; at least 3"),
    BadFile("ragged.txt", text("1 2 3\n4 5 6\n7 8 9 10\n"), "line 3: wrong column count: 4 values where line 1 has 3"),
    BadFile("word.csv", text("1,2,3\n\n4,abc,6\n"), r"line 3: 'abc' is not a number"),
    BadFile("not_utf8.xyz", not_utf8, "line 2: not UTF-8 text"),
    BadFile(
        "header_mismatch.csv", text("x,y,z,i\n1,2,3\n4,5,6\n"), "header on line 1 names 4 columns but the data has 3"
    ),
    BadFile(
        "nan.txt",
        text("1 2 3\nnan 5 6\n7 nan 9\n"),
        r"non-finite coordinates: 2 NaN and 0 Inf values in 2 points \(first at point 1\)",
    ),
    BadFile(
        "inf.npy",
        npy(np.array([[1.0, 2, 3], [4, np.inf, 6], [7, 8, -np.inf]])),
        "non-finite coordinates: 0 NaN and 2 Inf",
    ),
    BadFile(
        "nan_intensity.bin",
        raw_bytes(np.array([[0, 0, 0, np.nan], [1, 1, 1, 0]], "<f4").tobytes()),
        r"non-finite field 'intensity': 1 NaN and 0 Inf values in 1 point \(first at point 0\)",
    ),
    BadFile(
        "identical.txt",
        text("1.5 2 3\n1.5 2 3\n1.5 2 3\n"),
        r"degenerate cloud: all 3 points are identical, at \(1\.5, 2\.0, 3\.0\)",
    ),
    BadFile("one_point.npy", npy(np.array([[1.0, 2, 3]])), "degenerate cloud: a single point"),
    BadFile("no_x.ply", ascii_ply(["y", "z"], ["1 2", "3 4"]), r"no 'x' vertex property; the file has y, z"),
    BadFile("faces_only.ply", ply_with_faces_only, r"no 'vertex' element; elements: face"),
    BadFile("truncated.ply", truncated_binary_ply, "not a readable PLY file"),
    BadFile("garbage.ply", text("hello\n"), "not a readable PLY file"),
    BadFile(
        "list_property.ply",
        ascii_ply(["x", "y", "z"], ["0 0 0 1 5", "1 1 1 1 6"], "property list uchar int ids\n"),
        "vertex property 'ids' is a list",
    ),
    BadFile(
        "compressed.pcd",
        text(PCD_HEADER.format(width=2, points=2, data="binary_compressed")),
        "DATA binary_compressed .* not supported; convert the file to binary",
    ),
    BadFile(
        "short_data.pcd",
        binary_pcd(declared_points=3, records=2),
        r"data size mismatch: the header declares 3 points of 12 bytes \(36 bytes\) but 24 bytes",
    ),
    BadFile(
        "long_data.pcd",
        binary_pcd(declared_points=1, records=2),
        r"data size mismatch: the header declares 1 point of 12 bytes \(12 bytes\) but 24 bytes",
    ),
    BadFile(
        "few_lines.pcd",
        text(PCD_HEADER.format(width=3, points=3, data="ascii") + "1 2 3\n4 5 6\n"),
        "data size mismatch: the header declares 3 points but 2 data lines follow",
    ),
    BadFile(
        "width_points.pcd",
        text(PCD_HEADER.format(width=2, points=3, data="ascii")),
        "WIDTH 2 x HEIGHT 1 = 2 but POINTS is 3",
    ),
    BadFile(
        "bad_type.pcd",
        text("FIELDS x y z\nSIZE 4 4 3\nTYPE F F F\nWIDTH 1\nPOINTS 1\nDATA ascii\n1 2 3\n"),
        "field 'z': TYPE F with SIZE 3 is not a PCD type",
    ),
    BadFile("no_data_line.pcd", text("FIELDS x y z\nSIZE 4 4 4\n"), "no DATA line"),
    BadFile("nan_rows.pcd", pcd_with_nan_rows, "non-finite coordinates: 6 NaN and 0 Inf values in 2 points"),
    BadFile("not_las.las", raw_bytes(b"LASF" + bytes(50)), "not a readable LAS/LAZ file"),
    BadFile("truncated.laz", truncated_laz, "not a readable LAS/LAZ file"),
    BadFile("cloud.xyzw", text("1 2 3\n"), r"unsupported extension '\.xyzw'; supported: \.ply, \.pcd, \.las"),
    BadFile("rank1.npy", npy(np.arange(6.0)), r"wrong rank: array of shape \(6,\)"),
    BadFile("batch.npy", npy(np.zeros((2, 5, 3))), "looks like a batch of several clouds"),
    BadFile("pickled.npy", object_npy, "not a readable .npy file"),
    BadFile(
        "named_wrong.npy",
        npy(np.eye(4)),
        r"wrong column count: 4 columns but fields names 3 \(x, y, z\)",
        {"fields": ["x", "y", "z"]},
    ),
    BadFile(
        "no_such_field.ply",
        ascii_ply(["x", "y", "z"], ["0 0 0", "1 1 1"]),
        r"no field 'rgb'; available: x, y, z",
        {"fields": ["x", "y", "z", "rgb"]},
    ),
    BadFile("batch.h5", h5(data=np.zeros((4, 16, 3), np.float32)), "holds 4 clouds of 16 points; a single cloud"),
    BadFile("no_points.h5", h5(normals=np.zeros((4, 3))), "no point dataset: expected one of points, xyz, data"),
    BadFile(
        "labels.h5", h5(points=TRIANGLE, labels=np.arange(4)), r"label count mismatch: dataset 'labels' of shape \(4,\)"
    ),
    BadFile("not_hdf5.h5", text("plain text"), "not a readable HDF5 file"),
]


@pytest.mark.parametrize("bad", BAD_FILES, ids=[bad.name for bad in BAD_FILES])
def test_bad_file_raises_data_error_naming_file_and_problem(tmp_path, bad):
    path = tmp_path / bad.name
    bad.write(path)
    with pytest.raises(DataError) as caught:
        read_point_cloud(path, **bad.read_options)
    assert_names(caught.value, path, bad.problem)


def assert_names(error: DataError, path: Path | str, problem: str) -> None:
    message = str(error)
    assert "\n" not in message
    assert error.path == Path(path)
    assert message.startswith(f"{path}: "), message
    assert re.search(problem, message), f"{problem!r} not in {message!r}"


def test_missing_file(tmp_path):
    path = tmp_path / "absent.ply"
    with pytest.raises(DataError) as caught:
        read_point_cloud(path)
    assert_names(caught.value, path, "file not found")


def test_label_count_mismatch_names_the_labels_file(tmp_path):
    scan = tmp_path / "scan.bin"
    np.zeros((4, 4), np.float32).tofile(scan)
    np.ones((1, 4), np.float32).tofile(scan.open("ab"))
    labels = tmp_path / "scan.label"
    np.arange(4, dtype=np.uint32).tofile(labels)
    with pytest.raises(DataError) as caught:
        read_point_cloud(scan, labels_path=labels)
    assert_names(caught.value, labels, f"label count mismatch: 4 labels for the 5 points of {re.escape(str(scan))}")


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("short.label", bytes(7), "size 7 bytes is not a multiple of the 4-byte uint32 label"),
        ("fractional.txt", b"1\n2.5\n", r"line 2: 2\.5 is not an integer label"),
        ("floats.npy", None, "labels of dtype float64; integers expected"),
        ("labels.csv", b"1\n", r"unsupported label extension '\.csv'"),
    ],
)
def test_bad_label_files(tmp_path, name, content, problem):
    path = tmp_path / name
    if content is None:
        np.save(path, np.array([1.0, 2.0]))
    else:
        path.write_bytes(content)
    with pytest.raises(DataError) as caught:
        read_labels(path)
    assert_names(caught.value, path, problem)


def test_directory_without_a_readable_file(tmp_path):
    (tmp_path / "readme.md").write_text("no clouds here")
    (tmp_path / "deeper").mkdir()
    write_ply(tmp_path / "deeper" / "cloud.ply", TRIANGLE)  # not found: directories are not searched recursively
    with pytest.raises(DataError) as caught:
        iter_input_paths([str(tmp_path)])
    assert_names(caught.value, tmp_path, r"no point cloud file in this directory \(looked for \.ply")


def test_glob_without_a_match(tmp_path):
    pattern = str(tmp_path / "*.pcd")
    with pytest.raises(DataError) as caught:
        iter_input_paths([pattern])
    assert_names(caught.value, pattern, "glob pattern matches nothing")
    (tmp_path / "notes.pcd.txt.bak").write_text("")
    pattern = str(tmp_path / "notes*")
    with pytest.raises(DataError) as caught:
        iter_input_paths([pattern])
    assert_names(caught.value, pattern, "glob pattern matches only 1 paths that are not point cloud files")


def test_explicit_input_with_unsupported_extension(tmp_path):
    path = tmp_path / "mesh.obj"
    path.write_text("v 0 0 0\n")
    with pytest.raises(DataError) as caught:
        iter_input_paths([str(path)])
    assert_names(caught.value, path, r"unsupported extension '\.obj'")


def test_las_with_unusual_scale_and_offset_reads_correctly(tmp_path):
    laspy = pytest.importorskip("laspy")
    header = laspy.LasHeader(point_format=1, version="1.2")
    header.scales = np.array([0.0025, 0.5, 1e-5])
    header.offsets = np.array([-123_456.789, 7_654_321.0, -0.125])
    las = laspy.LasData(header)
    expected = np.array(
        [[-123_456.789, 7_654_321.0, -0.125], [-123_400.0, 7_654_400.5, 0.00042], [-123_456.7815, 7_654_000.0, -0.3]]
    )
    las.x, las.y, las.z = expected[:, 0], expected[:, 1], expected[:, 2]
    path = tmp_path / "odd_scale.las"
    las.write(str(path))
    cloud = read_point_cloud(path)
    # each coordinate is within half its axis's scale of the value written
    assert (np.abs(cloud.points - expected) <= header.scales / 2 + 1e-9).all()
    np.testing.assert_allclose(cloud.points[:, 1], [7_654_321.0, 7_654_400.5, 7_654_000.0])


def test_coordinates_near_1e7_are_read_and_recentred(tmp_path):
    """Georeferenced coordinates are not an error; recentring fits them into float32 within 1 mm."""
    rng = np.random.default_rng(0)
    points = rng.uniform(0, 300, (500, 3)) + np.array([9_999_000.0, 9_999_500.0, 50.0])
    for path, write in [
        (tmp_path / "survey.pcd", lambda p: write_pcd(p, points)),
        (tmp_path / "survey.ply", lambda p: write_ply(p, points)),
        (tmp_path / "survey.las", lambda p: write_las(p, points)),
    ]:
        if path.suffix == ".las":
            pytest.importorskip("laspy")
        write(path)
        cloud = read_point_cloud(path)
        assert needs_recentring(cloud.points)
        moved, offset = recentre(cloud)
        restored = moved.points.astype(np.float32).astype(np.float64) + offset
        assert np.abs(restored - points).max() < MILLIMETRE, path.name


@pytest.mark.parametrize(
    ("module", "name", "hint"),
    [
        ("plyfile", "cloud.ply", "pip install plyfile"),
        ("laspy", "cloud.las", r'pip install "laspy\[lazrs\]"'),
        ("h5py", "cloud.h5", "pip install h5py"),
    ],
)
def test_missing_optional_package_gives_an_install_hint(tmp_path, monkeypatch, module, name, hint):
    path = tmp_path / name
    path.write_bytes(b"not empty")
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    with pytest.raises(ImportError, match=hint):
        read_point_cloud(path)


def test_writing_ply_needs_no_optional_package(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "plyfile", None)
    path = tmp_path / "cloud.ply"
    write_ply(path, TRIANGLE)
    assert path.read_bytes().startswith(b"ply\nformat binary_little_endian 1.0\nelement vertex 3\n")
