"""Writers: their files parsed independently (header by hand, numpy, plyfile, laspy), read back by
image2point's readers, and atomic replacement."""

from __future__ import annotations

import numpy as np
import pytest

from image2point.errors import DataError
from image2point.io import (
    WRITERS,
    PointCloud,
    read_point_cloud,
    write_kitti_bin,
    write_kitti_label,
    write_las,
    write_npy,
    write_pcd,
    write_ply,
    write_point_cloud,
)
from image2point.io.output import atomic_output

NUM_POINTS = 50
MILLIMETRE = 1e-3
GEOREFERENCED_ORIGIN = np.array([9_876_543.0, 4_321_000.0, 120.0])


def sample_points(seed: int = 0, origin: np.ndarray | None = None) -> np.ndarray:
    points = np.random.default_rng(seed).uniform(-10, 10, (NUM_POINTS, 3)).astype(np.float32).astype(np.float64)
    return points if origin is None else points + origin


def sample_fields(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "intensity": rng.uniform(0, 1, NUM_POINTS).astype(np.float32),
        "labels": rng.integers(0, 20, NUM_POINTS).astype(np.int32),
        "normals": rng.normal(size=(NUM_POINTS, 3)).astype(np.float32),
        "feat": rng.normal(size=(NUM_POINTS, 4)),
    }


def sample_colors(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (NUM_POINTS, 3)).astype(np.uint8)


def parse_header(raw: bytes, end_marker: bytes) -> tuple[list[str], bytes]:
    """(header lines, bytes after the header) of a PLY ("end_header") or PCD ("DATA ...") file."""
    lines = []
    offset = 0
    while True:
        end = raw.index(b"\n", offset)
        line = raw[offset:end].decode("ascii")
        lines.append(line)
        offset = end + 1
        if line.startswith(end_marker.decode()):
            return lines, raw[offset:]


# ---------------------------------------------------------------- PLY


def test_ply_header_and_records_parsed_by_hand(tmp_path):
    points, fields, colors = sample_points(), sample_fields(), sample_colors()
    path = tmp_path / "cloud.ply"
    write_ply(path, points, fields, colors)
    lines, body = parse_header(path.read_bytes(), b"end_header")
    assert lines[:3] == ["ply", "format binary_little_endian 1.0", f"element vertex {NUM_POINTS}"]
    properties = [line.split()[1:] for line in lines if line.startswith("property")]
    assert properties == [
        ["float", "x"], ["float", "y"], ["float", "z"],
        ["float", "intensity"], ["int", "labels"],
        ["float", "nx"], ["float", "ny"], ["float", "nz"],
        ["double", "feat_0"], ["double", "feat_1"], ["double", "feat_2"], ["double", "feat_3"],
        ["uchar", "red"], ["uchar", "green"], ["uchar", "blue"],
    ]  # fmt: skip
    ply_to_numpy = {"float": "<f4", "double": "<f8", "int": "<i4", "uchar": "u1"}
    records = np.frombuffer(body, dtype=[(name, ply_to_numpy[kind]) for kind, name in properties])
    np.testing.assert_array_equal(np.stack([records[name] for name in "xyz"], axis=1), points)
    np.testing.assert_array_equal(records["labels"], fields["labels"])
    np.testing.assert_array_equal(records["feat_2"], fields["feat"][:, 2])
    np.testing.assert_array_equal(np.stack([records[c] for c in ("red", "green", "blue")], axis=1), colors)


def test_ply_round_trip_through_plyfile_and_reader(tmp_path):
    plyfile = pytest.importorskip("plyfile")
    points, fields, colors = sample_points(1), sample_fields(1), sample_colors(1)
    path = tmp_path / "cloud.ply"
    write_ply(path, points, fields, colors)
    vertex = plyfile.PlyData.read(str(path))["vertex"]
    np.testing.assert_array_equal(vertex["nz"], fields["normals"][:, 2])
    cloud = read_point_cloud(path)
    np.testing.assert_array_equal(cloud.points, points)
    assert list(cloud.fields) == ["intensity", "labels", "normals", "feat", "rgb"]
    for name, values in fields.items():
        np.testing.assert_array_equal(cloud.fields[name], values)
        assert cloud.fields[name].dtype == values.dtype
    np.testing.assert_array_equal(cloud.fields["rgb"], colors)


def test_ply_stores_georeferenced_coordinates_as_double(tmp_path):
    points = sample_points(origin=GEOREFERENCED_ORIGIN) + 0.0015
    path = tmp_path / "survey.ply"
    write_ply(path, points)
    lines, _ = parse_header(path.read_bytes(), b"end_header")
    assert "property double x" in lines
    np.testing.assert_array_equal(read_point_cloud(path).points, points)


def test_ply_int64_field_is_narrowed_when_it_fits(tmp_path):
    labels = np.arange(NUM_POINTS, dtype=np.int64) - 5
    path = tmp_path / "labels.ply"
    write_ply(path, sample_points(), {"labels": labels})
    assert read_point_cloud(path).fields["labels"].dtype == np.int32
    with pytest.raises(ValueError, match="PLY has no 64-bit integers"):
        write_ply(path, sample_points(), {"labels": labels + 2**40})


# ---------------------------------------------------------------- PCD


def test_binary_pcd_parsed_by_hand(tmp_path):
    points, colors = sample_points(2), sample_colors(2)
    intensity = np.arange(NUM_POINTS, dtype=np.uint16)
    path = tmp_path / "cloud.pcd"
    write_pcd(path, points, {"intensity": intensity}, colors)
    lines, body = parse_header(path.read_bytes(), b"DATA")
    entries = {line.split()[0]: line.split()[1:] for line in lines if not line.startswith("#")}
    assert entries["FIELDS"] == ["x", "y", "z", "intensity", "rgb"]
    assert entries["SIZE"] == ["4", "4", "4", "2", "4"]
    assert entries["TYPE"] == ["F", "F", "F", "U", "F"]
    assert entries["WIDTH"] == entries["POINTS"] == [str(NUM_POINTS)]
    assert entries["DATA"] == ["binary"]
    records = np.frombuffer(body, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("i", "<u2"), ("rgb", "<u4")])
    np.testing.assert_array_equal(np.stack([records["x"], records["y"], records["z"]], axis=1), points)
    np.testing.assert_array_equal(records["i"], intensity)
    expected = (
        (0xFF << 24) | (colors[:, 0].astype(np.uint32) << 16) | (colors[:, 1].astype(np.uint32) << 8) | colors[:, 2]
    )
    np.testing.assert_array_equal(records["rgb"], expected)


def test_ascii_pcd_lines(tmp_path):
    points = np.array([[0.5, -1.25, 3.0], [1.0, 2.0, 4.0]])
    path = tmp_path / "cloud.pcd"
    write_pcd(path, points, {"label": np.array([7, 300], dtype=np.int16)}, np.array([[255, 0, 0], [0, 0, 1]]), "ascii")
    lines, body = parse_header(path.read_bytes(), b"DATA")
    assert lines[-1] == "DATA ascii"
    assert body.decode().splitlines() == ["0.5 -1.25 3 7 4294901760", "1 2 4 300 4278190081"]


@pytest.mark.parametrize("data_format", ["ascii", "binary"])
def test_pcd_round_trip(tmp_path, data_format):
    points, fields, colors = sample_points(3), sample_fields(3), sample_colors(3)
    path = tmp_path / f"{data_format}.pcd"
    write_pcd(path, points, fields, colors, data_format)
    cloud = read_point_cloud(path)
    np.testing.assert_array_equal(cloud.points, points)
    for name, values in fields.items():
        np.testing.assert_array_equal(cloud.fields[name], values)
        assert cloud.fields[name].dtype == values.dtype
    np.testing.assert_array_equal(cloud.fields["rgb"], colors)


def test_pcd_keeps_georeferenced_coordinates(tmp_path):
    points = sample_points(origin=GEOREFERENCED_ORIGIN) + 0.0015
    for data_format in ("ascii", "binary"):
        path = tmp_path / f"{data_format}.pcd"
        write_pcd(path, points, data_format=data_format)
        assert b"SIZE 8 8 8" in path.read_bytes()
        np.testing.assert_array_equal(read_point_cloud(path).points, points)


# ---------------------------------------------------------------- LAS


def test_las_parsed_by_laspy(tmp_path):
    laspy = pytest.importorskip("laspy")
    points = sample_points(origin=GEOREFERENCED_ORIGIN) + 0.0004
    colors = sample_colors(4)
    intensity = np.arange(NUM_POINTS) * 1000
    classification = np.arange(NUM_POINTS) % 20
    temperature = np.linspace(-5, 30, NUM_POINTS)
    path = tmp_path / "survey.las"
    write_las(
        path, points, {"intensity": intensity, "classification": classification, "temperature": temperature}, colors
    )
    las = laspy.read(str(path))
    np.testing.assert_array_equal(las.header.scales, [MILLIMETRE] * 3)
    np.testing.assert_array_equal(las.header.offsets, np.round(las.header.offsets))
    stored = np.stack([np.asarray(las.x), np.asarray(las.y), np.asarray(las.z)], axis=1)
    assert np.abs(stored - points).max() <= MILLIMETRE / 2 + 1e-9
    np.testing.assert_array_equal(las.intensity, intensity)
    np.testing.assert_array_equal(las.classification, classification)
    np.testing.assert_array_equal(las.red, colors[:, 0].astype(np.uint16) * 257)
    np.testing.assert_array_equal(las["temperature"], temperature)
    cloud = read_point_cloud(path)
    assert np.abs(cloud.points - points).max() <= MILLIMETRE / 2 + 1e-9
    np.testing.assert_array_equal(cloud.fields["rgb"] // 257, colors)
    np.testing.assert_array_equal(cloud.fields["temperature"], temperature)


def test_las_extra_dimensions_round_trip(tmp_path):
    pytest.importorskip("laspy")
    fields = {"normals": sample_fields()["normals"], "feat": sample_fields()["feat"]}
    path = tmp_path / "extra.las"
    write_las(path, sample_points(), fields)
    cloud = read_point_cloud(path)
    np.testing.assert_array_equal(cloud.fields["normals"], fields["normals"])
    np.testing.assert_array_equal(cloud.fields["feat"], fields["feat"])


def test_las_refuses_fractional_intensity(tmp_path):
    pytest.importorskip("laspy")
    path = tmp_path / "kitti.las"
    with pytest.raises(ValueError, match="LAS intensity must be whole numbers"):
        write_las(path, sample_points(), {"intensity": np.full(NUM_POINTS, 0.5)})
    assert not path.exists()


# ---------------------------------------------------------------- KITTI, .npy


def test_kitti_bin_read_with_numpy(tmp_path):
    points = sample_points(5)
    intensity = np.linspace(0, 1, NUM_POINTS)
    path = tmp_path / "000000.bin"
    write_kitti_bin(path, points, intensity)
    records = np.fromfile(path, dtype="<f4").reshape(-1, 4)
    np.testing.assert_array_equal(records[:, :3], points)
    np.testing.assert_array_equal(records[:, 3], intensity.astype(np.float32))
    write_kitti_bin(path, points)
    np.testing.assert_array_equal(np.fromfile(path, dtype="<f4").reshape(-1, 4)[:, 3], 0.0)


def test_kitti_bin_refuses_coordinates_float32_cannot_hold(tmp_path):
    with pytest.raises(ValueError, match="recentre"):
        write_kitti_bin(tmp_path / "far.bin", sample_points(origin=GEOREFERENCED_ORIGIN) + 0.0015)


def test_kitti_label_read_with_numpy(tmp_path):
    labels = np.array([10 | (7 << 16), 40, 252, 0], dtype=np.int64)
    path = tmp_path / "000000.label"
    write_kitti_label(path, labels)
    assert path.stat().st_size == 4 * len(labels)
    np.testing.assert_array_equal(np.fromfile(path, dtype="<u4"), labels)
    with pytest.raises(ValueError, match=r"labels must lie in 0\.\.4294967295"):
        write_kitti_label(path, np.array([1, -1]))


def test_npy_is_a_structured_array(tmp_path):
    points, fields = sample_points(6), sample_fields(6)
    path = tmp_path / "cloud.npy"
    write_npy(path, points, fields)
    records = np.load(path)
    assert records.dtype.names == ("x", "y", "z", "intensity", "labels", "normals", "feat")
    np.testing.assert_array_equal(records["y"], points[:, 1])
    np.testing.assert_array_equal(records["normals"], fields["normals"])
    cloud = read_point_cloud(path)
    for name, values in fields.items():
        np.testing.assert_array_equal(cloud.fields[name], values)


# ---------------------------------------------------------------- dispatch


@pytest.mark.parametrize("suffix", sorted(WRITERS))
def test_write_point_cloud_round_trips_every_format(tmp_path, suffix):
    if suffix in (".las", ".laz"):
        pytest.importorskip("laspy")
    if suffix == ".laz":
        pytest.importorskip("lazrs")
    fields = {"intensity": np.arange(NUM_POINTS, dtype=np.float32)}
    if suffix != ".bin":
        fields["classification"] = (np.arange(NUM_POINTS) % 5).astype(np.uint8)
    cloud = PointCloud(sample_points(7), fields, "memory")
    path = tmp_path / f"cloud{suffix}"
    write_point_cloud(path, cloud)
    back = read_point_cloud(path)
    assert np.abs(back.points - cloud.points).max() <= MILLIMETRE / 2
    for name, values in fields.items():
        np.testing.assert_array_equal(back.fields[name], values)


def test_write_point_cloud_refuses_what_kitti_bin_cannot_hold(tmp_path):
    cloud = PointCloud(sample_points(), {"rgb": sample_colors()}, "memory")
    with pytest.raises(ValueError, match="the cloud also has rgb"):
        write_point_cloud(tmp_path / "cloud.bin", cloud)


def test_write_point_cloud_unknown_extension(tmp_path):
    path = tmp_path / "cloud.obj"
    with pytest.raises(DataError, match=r"cloud\.obj: cannot write extension '\.obj'; writable: \.ply"):
        write_point_cloud(path, PointCloud(sample_points(), {}, "memory"))


# ---------------------------------------------------------------- atomicity


class WriteInterrupted(Exception):
    pass


def test_atomic_output_leaves_nothing_when_the_body_fails(tmp_path):
    path = tmp_path / "out.ply"
    with pytest.raises(WriteInterrupted), atomic_output(path) as handle:
        handle.write(b"partial")
        raise WriteInterrupted
    assert list(tmp_path.iterdir()) == []


def test_failed_writes_keep_the_existing_file(tmp_path):
    path = tmp_path / "cloud.ply"
    write_ply(path, sample_points())
    before = path.read_bytes()
    bad_inputs = [
        (lambda: write_ply(path, sample_points(), {"labels": np.arange(3)}), "field 'labels' must be"),
        (lambda: write_ply(path, np.full((NUM_POINTS, 3), np.nan)), "points hold 150 NaN or Inf values"),
        (lambda: write_pcd(path, sample_points(), colors=np.full((NUM_POINTS, 3), 256)), "colors must lie in 0..255"),
        (lambda: write_npy(path, np.zeros((0, 3))), "no points to write"),
        (lambda: write_kitti_label(path, np.array([0.5])), "labels must be whole numbers"),
    ]
    for write, message in bad_inputs:
        with pytest.raises(ValueError, match=message):
            write()
    assert path.read_bytes() == before
    assert list(tmp_path.iterdir()) == [path]


def test_writers_create_parent_directories_and_leave_no_temporary_file(tmp_path):
    path = tmp_path / "a" / "b" / "cloud.pcd"
    write_pcd(path, sample_points())
    assert list(path.parent.iterdir()) == [path]


def test_writing_onto_a_directory_is_a_data_error(tmp_path):
    target = tmp_path / "taken.ply"
    target.mkdir()
    with pytest.raises(DataError, match=r"taken\.ply: cannot write: it is a directory"):
        write_ply(target, sample_points())


def test_colors_given_twice(tmp_path):
    with pytest.raises(ValueError, match="colors given twice"):
        write_ply(tmp_path / "c.ply", sample_points(), {"rgb": sample_colors()}, sample_colors())
