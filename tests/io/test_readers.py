"""Readers on files written independently of image2point's writers (by hand, numpy, plyfile,
laspy, h5py) and on the real KITTI and ModelNet40 files; the PointCloud container; input paths."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from image2point.errors import DataError
from image2point.io import (
    PointCloud,
    iter_input_paths,
    needs_recentring,
    read_labels,
    read_point_cloud,
    recentre,
    write_las,
    write_npy,
    write_ply,
)

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
KITTI_RECORD_BYTES = 16  # float32 x, y, z, intensity
MODELNET_POINTS_PER_FILE = 10_000
MILLIMETRE = 1e-3


def shared(relative: str) -> Path:
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"real data {relative} not found under {SHARED_DATA.resolve()}")
    return path


# ---------------------------------------------------------------- PLY


ASCII_PLY = """ply
format ascii 1.0
comment hand-written test cloud
element vertex 3
property float x
property float y
property float z
property uchar red
property uchar green
property uchar blue
property float nx
property float ny
property float nz
property int label
element face 1
property list uchar int vertex_indices
end_header
0.5 -1.25 2 255 0 10 0 0 1 7
1.5 0.25 -3 0 128 20 1 0 0 -2
-2 4 0.125 1 2 3 0 1 0 40
3 0 1 2
"""


def test_ascii_ply_written_by_hand(tmp_path):
    path = tmp_path / "hand.ply"
    path.write_text(ASCII_PLY)
    cloud = read_point_cloud(path)
    np.testing.assert_array_equal(cloud.points, [[0.5, -1.25, 2], [1.5, 0.25, -3], [-2, 4, 0.125]])
    assert cloud.points.dtype == np.float64
    assert list(cloud.fields) == ["rgb", "normals", "label"]
    np.testing.assert_array_equal(cloud.fields["rgb"], [[255, 0, 10], [0, 128, 20], [1, 2, 3]])
    assert cloud.fields["rgb"].dtype == np.uint8
    np.testing.assert_array_equal(cloud.fields["normals"], [[0, 0, 1], [1, 0, 0], [0, 1, 0]])
    np.testing.assert_array_equal(cloud.fields["label"], [7, -2, 40])
    assert cloud.source == str(path)


def test_big_endian_binary_ply(tmp_path):
    points = np.array([[1.0, 2.0, 3.0], [-4.5, 5.25, 1e6 + 0.001]])
    vertices = np.empty(2, dtype=[("x", ">f8"), ("y", ">f8"), ("z", ">f8"), ("intensity", ">u2")])
    for axis, name in enumerate("xyz"):
        vertices[name] = points[:, axis]
    vertices["intensity"] = [1000, 65535]
    header = "ply\nformat binary_big_endian 1.0\nelement vertex 2\n"
    header += "".join(f"property double {name}\n" for name in "xyz") + "property ushort intensity\nend_header\n"
    path = tmp_path / "big_endian.ply"
    path.write_bytes(header.encode() + vertices.tobytes())
    cloud = read_point_cloud(path)
    np.testing.assert_array_equal(cloud.points, points)
    np.testing.assert_array_equal(cloud.fields["intensity"], [1000, 65535])
    assert cloud.fields["intensity"].dtype == np.uint16


def test_ply_written_by_plyfile(tmp_path):
    plyfile = pytest.importorskip("plyfile")
    vertices = np.array([(0.0, 1.0, 2.0, 0.5), (3.0, 4.0, 5.0, 0.25)], dtype=[(n, "f4") for n in ("x", "y", "z", "s")])
    path = tmp_path / "by_plyfile.ply"
    plyfile.PlyData([plyfile.PlyElement.describe(vertices, "vertex")], text=False).write(str(path))
    cloud = read_point_cloud(path, fields=["s"])
    np.testing.assert_array_equal(cloud.points, [[0, 1, 2], [3, 4, 5]])
    np.testing.assert_array_equal(cloud.fields["s"], [0.5, 0.25])


def test_fields_selects_attributes_of_a_named_source(tmp_path):
    path = tmp_path / "hand.ply"
    path.write_text(ASCII_PLY)
    cloud = read_point_cloud(path, fields=["x", "y", "z", "label", "rgb"])
    assert list(cloud.fields) == ["label", "rgb"]


# ---------------------------------------------------------------- PCD


ASCII_PCD = """# .PCD v0.7 - Point Cloud Data file format
VERSION 0.7
FIELDS x y z _ rgb uv intensity
SIZE 4 4 4 1 4 4 2
TYPE F F F U F F U
COUNT 1 1 1 1 1 2 1
WIDTH 2
HEIGHT 2
VIEWPOINT 0 0 0 1 0 0 0
POINTS 4
DATA ascii
1 2 3 0 4286611584 0.5 0.25 10
-1 0.5 2 0 16711680 1 2 20
0 0 0 0 255 3 4 30
7.25 -8 9 0 65280 5 6 40
"""


def test_ascii_pcd_written_by_hand(tmp_path):
    path = tmp_path / "hand.pcd"
    path.write_text(ASCII_PCD)
    cloud = read_point_cloud(path)
    np.testing.assert_array_equal(cloud.points, [[1, 2, 3], [-1, 0.5, 2], [0, 0, 0], [7.25, -8, 9]])
    assert list(cloud.fields) == ["rgb", "uv", "intensity"]  # the "_" padding field holds no data
    # 4286611584 = 0xFF808080: opaque grey; 16711680 = 0xFF0000 red; 255 blue; 65280 green
    np.testing.assert_array_equal(cloud.fields["rgb"], [[128, 128, 128], [255, 0, 0], [0, 0, 255], [0, 255, 0]])
    np.testing.assert_array_equal(cloud.fields["uv"], [[0.5, 0.25], [1, 2], [3, 4], [5, 6]])
    np.testing.assert_array_equal(cloud.fields["intensity"], [10, 20, 30, 40])
    assert cloud.fields["intensity"].dtype == np.uint16


def test_ascii_pcd_with_rgb_written_as_float_bits(tmp_path):
    """Old PCL versions wrote the packed colour as the float whose bits hold it."""
    packed = np.array([0x00102030, 0x00FF00FF], dtype=np.uint32)
    as_float = packed.view(np.float32)
    lines = "\n".join(f"{index} {index * 2} {index * 3} {value!r}" for index, value in enumerate(as_float.tolist()))
    header = "VERSION 0.7\nFIELDS x y z rgb\nSIZE 4 4 4 4\nTYPE F F F F\nWIDTH 2\nPOINTS 2\nDATA ascii\n"
    path = tmp_path / "float_rgb.pcd"
    path.write_text(header + lines + "\n")
    cloud = read_point_cloud(path)
    np.testing.assert_array_equal(cloud.fields["rgb"], [[0x10, 0x20, 0x30], [0xFF, 0x00, 0xFF]])


def test_binary_pcd_built_with_numpy(tmp_path):
    records = np.zeros(
        3,
        dtype=[
            ("x", "<f8"),
            ("y", "<f8"),
            ("z", "<f8"),
            ("rgba", "<u4"),
            ("normal_x", "<f4"),
            ("normal_y", "<f4"),
            ("normal_z", "<f4"),
            ("label", "<i4"),
        ],
    )
    records["x"], records["y"], records["z"] = [4.0e6 + 0.001, 2, 3], [1, -2, 3], [0, 0, 1.5]
    records["rgba"] = [0x80FF0000, 0x0000FF00, 0xFF0000FF]
    records["normal_z"] = 1.0
    records["label"] = [3, -1, 255]
    header = (
        "VERSION 0.7\nFIELDS x y z rgba normal_x normal_y normal_z label\nSIZE 8 8 8 4 4 4 4 4\n"
        "TYPE F F F U F F F I\nCOUNT 1 1 1 1 1 1 1 1\nWIDTH 3\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\n"
        "POINTS 3\nDATA binary\n"
    )
    path = tmp_path / "numpy.pcd"
    path.write_bytes(header.encode() + records.tobytes())
    cloud = read_point_cloud(path)
    np.testing.assert_array_equal(cloud.points[:, 0], [4.0e6 + 0.001, 2, 3])
    np.testing.assert_array_equal(cloud.fields["rgb"], [[255, 0, 0], [0, 255, 0], [0, 0, 255]])
    np.testing.assert_array_equal(cloud.fields["alpha"], [0x80, 0, 0xFF])
    np.testing.assert_array_equal(cloud.fields["normals"], [[0, 0, 1]] * 3)
    np.testing.assert_array_equal(cloud.fields["label"], [3, -1, 255])


# ---------------------------------------------------------------- LAS


def test_las_written_by_laspy(tmp_path):
    laspy = pytest.importorskip("laspy")
    header = laspy.LasHeader(point_format=3, version="1.2")
    header.scales = np.array([0.01, 0.01, 0.01])
    header.offsets = np.array([500_000.0, 4_000_000.0, 0.0])
    las = laspy.LasData(header)
    las.x = [500_000.25, 500_010.5, 499_990.0]
    las.y = [4_000_000.75, 4_000_001.0, 3_999_999.5]
    las.z = [12.34, 56.78, -1.0]
    las.intensity = [10, 20, 65535]
    las.classification = [2, 6, 31]
    las.red, las.green, las.blue = [65535, 0, 256], [0, 65535, 512], [0, 0, 768]
    path = tmp_path / "laspy.las"
    las.write(str(path))
    cloud = read_point_cloud(path)
    np.testing.assert_allclose(cloud.points[:, 0], [500_000.25, 500_010.5, 499_990.0], atol=1e-9)
    np.testing.assert_allclose(cloud.points[:, 1], [4_000_000.75, 4_000_001.0, 3_999_999.5], atol=1e-9)
    np.testing.assert_allclose(cloud.points[:, 2], [12.34, 56.78, -1.0], atol=1e-9)
    np.testing.assert_array_equal(cloud.fields["intensity"], [10, 20, 65535])
    np.testing.assert_array_equal(cloud.fields["classification"], [2, 6, 31])
    np.testing.assert_array_equal(cloud.fields["rgb"], [[65535, 0, 0], [0, 65535, 0], [256, 512, 768]])


def test_laz_round_trip(tmp_path):
    pytest.importorskip("laspy")
    pytest.importorskip("lazrs")
    rng = np.random.default_rng(3)
    points = rng.uniform(0, 100, (200, 3)) + np.array([600_000.0, 5_000_000.0, 0.0])
    intensity = rng.integers(0, 4000, 200)
    path = tmp_path / "cloud.laz"
    write_las(path, points, {"intensity": intensity})
    cloud = read_point_cloud(path)
    assert np.abs(cloud.points - points).max() <= MILLIMETRE / 2 + 1e-9
    np.testing.assert_array_equal(cloud.fields["intensity"], intensity)


# ---------------------------------------------------------------- KITTI .bin


def test_kitti_bin_written_with_tofile(tmp_path):
    records = np.array([[1, 2, 3, 0.5], [-4, 5, -6, 0.25], [7, 8, 9, 0]], dtype=np.float32)
    path = tmp_path / "000000.bin"
    records.tofile(path)
    cloud = read_point_cloud(path)
    np.testing.assert_array_equal(cloud.points, records[:, :3])
    np.testing.assert_array_equal(cloud.fields["intensity"], records[:, 3])


def test_bin_fields_name_a_wider_record(tmp_path):
    records = np.arange(20, dtype=np.float32).reshape(4, 5)
    path = tmp_path / "five_values.bin"
    records.tofile(path)
    cloud = read_point_cloud(path, fields=["x", "y", "z", "intensity", "ring"])
    np.testing.assert_array_equal(cloud.fields["ring"], [4, 9, 14, 19])


def test_real_kitti_scans():
    scans = sorted(shared("kitti_velodyne").glob("*.bin"))
    assert scans
    for scan in scans:
        cloud = read_point_cloud(scan)
        assert cloud.num_points == scan.stat().st_size // KITTI_RECORD_BYTES
        assert list(cloud.fields) == ["intensity"]
        assert cloud.fields["intensity"].min() >= 0.0
        assert cloud.fields["intensity"].max() <= 1.0
        assert np.abs(cloud.points).max() < 200.0  # a velodyne HDL-64E sees about 120 m
        raw = np.fromfile(scan, dtype=np.float32).reshape(-1, 4)
        np.testing.assert_array_equal(cloud.points, raw[:, :3])


def test_real_semantickitti_scan_with_its_labels():
    sequence = shared("semantickitti/sequences/00")
    scan, labels = sequence / "velodyne" / "000001.bin", sequence / "labels" / "000001.label"
    cloud = read_point_cloud(scan, labels_path=labels)
    assert cloud.fields["labels"].dtype == np.uint32
    np.testing.assert_array_equal(cloud.fields["labels"], np.fromfile(labels, dtype=np.uint32))
    assert cloud.num_points == labels.stat().st_size // 4


# ---------------------------------------------------------------- .npy


def test_plain_npy_default_and_named_columns(tmp_path):
    array = np.array([[0, 0, 0, 0.5], [1, 2, 3, 0.75]], dtype=np.float32)
    path = tmp_path / "plain.npy"
    np.save(path, array)
    assert list(read_point_cloud(path).fields) == ["column3"]
    cloud = read_point_cloud(path, fields=["x", "y", "z", "intensity"])
    np.testing.assert_array_equal(cloud.fields["intensity"], [0.5, 0.75])
    assert cloud.fields["intensity"].dtype == np.float32


def test_columns_may_be_named_in_any_order(tmp_path):
    path = tmp_path / "intensity_first.npy"
    np.save(path, np.array([[0.5, 1, 2, 3], [0.25, 4, 5, 6]]))
    cloud = read_point_cloud(path, fields=["intensity", "x", "y", "z"])
    np.testing.assert_array_equal(cloud.points, [[1, 2, 3], [4, 5, 6]])
    np.testing.assert_array_equal(cloud.fields["intensity"], [0.5, 0.25])


def test_structured_npy(tmp_path):
    array = np.zeros(2, dtype=[("x", "f8"), ("y", "f8"), ("z", "f8"), ("feat", "f4", (4,)), ("label", "i8")])
    array["x"], array["y"], array["z"] = [1, 2], [3, 4], [5, 6]
    array["feat"] = [[1, 2, 3, 4], [5, 6, 7, 8]]
    array["label"] = [9, 10]
    path = tmp_path / "structured.npy"
    np.save(path, array)
    cloud = read_point_cloud(path)
    np.testing.assert_array_equal(cloud.points, [[1, 3, 5], [2, 4, 6]])
    np.testing.assert_array_equal(cloud.fields["feat"], [[1, 2, 3, 4], [5, 6, 7, 8]])
    np.testing.assert_array_equal(cloud.fields["label"], [9, 10])


# ---------------------------------------------------------------- text


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("spaces.txt", "1 2 3 0.5\n  4\t5   6 0.25\n\n"),
        ("commas.csv", "1,2,3,0.5\n4, 5, 6, 0.25\n"),
        ("semicolons.xyz", "1;2;3;0.5\n4;5;6;0.25\n"),
    ],
)
def test_text_delimiters_are_detected(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    cloud = read_point_cloud(path, fields=["x", "y", "z", "intensity"])
    np.testing.assert_array_equal(cloud.points, [[1, 2, 3], [4, 5, 6]])
    np.testing.assert_array_equal(cloud.fields["intensity"], [0.5, 0.25])


@pytest.mark.parametrize("header", ["x,y,z,red,green,blue,label", "//X,Y,Z,R,G,B,Label", "# x y z r g b label"])
def test_text_header_names_the_columns(tmp_path, header):
    delimiter = " " if header.startswith("#") else ","
    rows = ["10.5,20,30,255,0,0,1", "11,21,31.25,0,255,0,2"]
    path = tmp_path / "with_header.txt"
    path.write_text("\n".join([header, *(row.replace(",", delimiter) for row in rows)]) + "\n")
    cloud = read_point_cloud(path)
    np.testing.assert_array_equal(cloud.points, [[10.5, 20, 30], [11, 21, 31.25]])
    np.testing.assert_array_equal(cloud.fields["rgb"], [[255, 0, 0], [0, 255, 0]])
    np.testing.assert_array_equal(cloud.fields["label"], [1, 2])


def test_text_keeps_georeferenced_precision(tmp_path):
    path = tmp_path / "survey.xyz"
    path.write_text("4512345.678 5412345.123 312.456\n4512346.789 5412346.234 313.567\n")
    cloud = read_point_cloud(path)
    np.testing.assert_array_equal(cloud.points[:, 0], [4512345.678, 4512346.789])


def test_real_modelnet_text_file():
    path = shared("modelnet40_normal_resampled/airplane/airplane_0126.txt")
    cloud = read_point_cloud(path, fields=["x", "y", "z", "nx", "ny", "nz"])
    assert cloud.num_points == MODELNET_POINTS_PER_FILE
    assert list(cloud.fields) == ["normals"]
    assert np.abs(cloud.points).max() <= 1.0 + 1e-6  # the resampled shapes lie in the unit sphere
    np.testing.assert_allclose(np.linalg.norm(cloud.fields["normals"], axis=1), 1.0, atol=1e-3)
    first_line = path.read_text().splitlines()[0].split(",")
    np.testing.assert_array_equal(cloud.points[0], [float(value) for value in first_line[:3]])


# ---------------------------------------------------------------- HDF5


@pytest.mark.parametrize("name", ["cloud.h5", "cloud.hdf5"])
def test_h5_points_and_labels(tmp_path, name):
    h5py = pytest.importorskip("h5py")
    points = np.array([[0, 0, 0], [1, 2, 3], [4, 5, 6]], dtype=np.float32)
    path = tmp_path / name
    with h5py.File(path, "w") as file:
        file["xyz"] = np.concatenate([points, [[0.1], [0.2], [0.3]]], axis=1)
        file["label"] = np.array([[1], [2], [3]], dtype=np.uint8)
    cloud = read_point_cloud(path, fields=["x", "y", "z", "intensity"])
    np.testing.assert_array_equal(cloud.points, points)
    np.testing.assert_array_equal(cloud.fields["labels"], [1, 2, 3])
    np.testing.assert_allclose(cloud.fields["intensity"], [0.1, 0.2, 0.3], rtol=1e-6)


# ---------------------------------------------------------------- labels files


def test_label_files_in_each_format(tmp_path):
    points = np.array([[0, 0, 0], [1, 1, 1], [2, 0, 1]], dtype=np.float32)
    scan = tmp_path / "scan.bin"
    np.concatenate([points, np.zeros((3, 1), np.float32)], axis=1).tofile(scan)
    raw = np.array([10 | (3 << 16), 40, 252], dtype=np.uint32)
    raw.tofile(tmp_path / "scan.label")
    np.save(tmp_path / "labels.npy", np.array([[4], [5], [6]], dtype=np.int16))
    (tmp_path / "labels.txt").write_text("7\n8\n\n9\n")
    np.testing.assert_array_equal(read_point_cloud(scan, labels_path=tmp_path / "scan.label").fields["labels"], raw)
    np.testing.assert_array_equal(read_labels(tmp_path / "labels.npy"), [4, 5, 6])
    labels = read_point_cloud(scan, labels_path=tmp_path / "labels.txt").fields["labels"]
    np.testing.assert_array_equal(labels, [7, 8, 9])
    assert labels.dtype == np.int64


# ---------------------------------------------------------------- PointCloud


def make_cloud() -> PointCloud:
    return PointCloud(
        points=np.array([[0, 1, 2], [3, 4, 5]], dtype=np.float32),
        fields={"intensity": np.array([0.5, 0.25]), "rgb": np.array([[1, 2, 3], [4, 5, 6]], dtype=np.uint8)},
        source="memory",
    )


def test_point_cloud_field_and_features():
    cloud = make_cloud()
    assert cloud.points.dtype == np.float64
    assert len(cloud) == cloud.num_points == 2
    np.testing.assert_array_equal(cloud.field("y"), [1, 4])
    features = cloud.features(["intensity", "rgb", "z"])
    assert features.dtype == np.float32
    np.testing.assert_array_equal(features, [[0.5, 1, 2, 3, 2], [0.25, 4, 5, 6, 5]])
    assert cloud.features([]).shape == (2, 0)


def test_point_cloud_missing_field_lists_available():
    with pytest.raises(DataError, match=r"memory: no field 'normals'; available: x, y, z, intensity, rgb"):
        make_cloud().features(["normals"])


def test_point_cloud_is_frozen():
    cloud = make_cloud()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cloud.points = np.zeros((1, 3))
    with pytest.raises(TypeError):
        cloud.fields["labels"] = np.zeros(2)


def test_point_cloud_rejects_mismatched_field():
    with pytest.raises(ValueError, match="field 'intensity' must be"):
        PointCloud(np.zeros((3, 3)), {"intensity": np.zeros(2)}, "memory")


# ---------------------------------------------------------------- recentre


@pytest.mark.parametrize("anchor", ["min", "mean"])
def test_recentre_keeps_millimetres_in_float32(anchor):
    rng = np.random.default_rng(0)
    points = rng.uniform(0, 500, (1000, 3)) + np.array([9_876_543.21, 1_234_567.89, 250.0])
    cloud = PointCloud(points, {}, "survey")
    assert needs_recentring(cloud.points)
    moved, offset = recentre(cloud, anchor)
    assert offset.dtype == np.float64
    np.testing.assert_array_equal(offset, np.round(offset))  # whole units
    assert not needs_recentring(moved.points)
    restored = moved.points.astype(np.float32).astype(np.float64) + offset
    assert np.abs(restored - points).max() < MILLIMETRE
    if anchor == "min":
        assert moved.points.min() >= 0.0
    # float32 without recentring loses far more than a millimetre at these coordinates
    assert np.abs(points.astype(np.float32).astype(np.float64) - points).max() > 10 * MILLIMETRE


# ---------------------------------------------------------------- input paths


def test_iter_input_paths(tmp_path):
    points = np.array([[0.0, 0, 0], [1, 1, 1]])
    scans = tmp_path / "scans"
    nested = scans / "nested"
    nested.mkdir(parents=True)
    for name in ("b.ply", "a.PLY"):
        write_ply(scans / name, points)
    write_npy(scans / "c.npy", points)
    write_npy(nested / "d.npy", points)
    (scans / "notes.md").write_text("not a cloud")
    single = tmp_path / "single.npy"
    write_npy(single, points)
    found = iter_input_paths([str(scans), str(single), str(tmp_path / "scans" / "*.npy"), str(scans / "b.ply")])
    assert found == [scans / "a.PLY", scans / "b.ply", scans / "c.npy", single]
    assert iter_input_paths([str(tmp_path / "**" / "*.npy")]) == [scans / "c.npy", nested / "d.npy", single]
