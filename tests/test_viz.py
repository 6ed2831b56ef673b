"""Pictures of labelled clouds: palettes, projections, subsampling and valid PNG files."""

import io

import numpy as np
import pytest
from PIL import Image

from image2point.errors import DataError
from image2point.viz import (
    CORRECT_RGB,
    IGNORED_RGB,
    UNSCORED_RGB,
    WRONG_RGB,
    error_colours,
    extend_palette,
    generic_palette,
    label_colours,
    modelnet40_palette,
    perspective_projection,
    render_png,
    s3dis_palette,
    semantickitti_palette,
    subsample_indices,
)

POINTS = 2000
NUM_CLASSES = 4
MIN_PANEL_PIXELS = 400


def cloud(seed=0, count=POINTS):
    rng = np.random.default_rng(seed)
    points = rng.uniform(0.0, 10.0, (count, 3))
    labels = (points[:, 0] // 2.5).astype(np.int64)
    return points, labels


def image_size(data):
    with Image.open(io.BytesIO(data)) as image:
        image.verify()
    with Image.open(io.BytesIO(data)) as image:
        return image.size


def test_semantickitti_colours_come_from_the_bgr_color_map_through_learning_map_inv():
    palette = semantickitti_palette()
    assert palette.shape == (19, 3)
    assert palette[0].tolist() == [100, 150, 245]  # car: BGR (245, 150, 100)
    assert palette[8].tolist() == [255, 0, 255]  # road
    custom = semantickitti_palette({0: (0, 0, 0), 7: (1, 2, 3), 9: (10, 20, 30)}, {0: 0, 1: 9, 2: 7})
    assert custom.tolist() == [[30, 20, 10], [3, 2, 1]]
    with pytest.raises(DataError, match="raw id 9"):
        semantickitti_palette({7: (1, 2, 3)}, {0: 0, 1: 9})


def test_fixed_palettes_are_distinct_and_a_missing_one_is_generic():
    modelnet = modelnet40_palette()
    assert modelnet.shape == (40, 3) and len({tuple(colour) for colour in modelnet}) == 40
    assert s3dis_palette()[0].tolist() == [0, 255, 0]
    generic = generic_palette(60)
    assert len({tuple(colour) for colour in generic}) == 60
    np.testing.assert_array_equal(extend_palette(np.zeros((0, 3), np.uint8), 7), generic[:7])


def test_short_palettes_are_extended_and_long_ones_cut():
    base = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.uint8)
    extended = extend_palette(base, 5)
    assert extended.shape == (5, 3)
    np.testing.assert_array_equal(extended[:2], base)
    np.testing.assert_array_equal(extended[2:], generic_palette(5)[2:])
    np.testing.assert_array_equal(extend_palette(base, 1), base[:1])


def test_label_and_error_colours():
    palette = np.array([[10, 10, 10], [20, 20, 20]], dtype=np.uint8)
    colours = label_colours(np.array([1, 0, -100, 3]), palette)
    assert colours[:3].tolist() == [[20, 20, 20], [10, 10, 10], list(IGNORED_RGB)]
    assert colours[3].tolist() == generic_palette(4)[3].tolist()
    errors = error_colours(np.array([1, 2, 3]), np.array([1, 0, -100]))
    assert errors.tolist() == [list(CORRECT_RGB), list(WRONG_RGB), list(UNSCORED_RGB)]


def test_subsampling_is_seeded_sorted_and_bounded():
    first = subsample_indices(10_000, 500)
    np.testing.assert_array_equal(first, subsample_indices(10_000, 500))
    assert len(first) == 500 and len(np.unique(first)) == 500 and np.all(np.diff(first) > 0)
    assert not np.array_equal(first, subsample_indices(10_000, 500, seed=1))
    np.testing.assert_array_equal(subsample_indices(20, 500), np.arange(20))


def test_perspective_projection_puts_the_centre_in_the_middle_and_far_points_deeper():
    points = np.array([[0.0, 0.0, 0.0], [2.0, 2.0, 2.0], [1.0, 1.0, 1.0]])
    image, depth = perspective_projection(points, azimuth_degrees=45.0, elevation_degrees=35.26438968)
    np.testing.assert_allclose(image[2], [0.0, 0.0], atol=1e-6)
    # The camera is on the (1, 1, 1) diagonal: the far corner is (0, 0, 0).
    assert depth[0] > depth[2] > depth[1]


def test_prediction_only_gives_one_row_of_top_and_perspective_views(tmp_path):
    points, labels = cloud()
    data = render_png(points, labels, palette=s3dis_palette()[:NUM_CLASSES], class_names=list("abcd"),
                      out=tmp_path / "deep" / "picture.png")
    assert (tmp_path / "deep" / "picture.png").read_bytes() == data
    width, height = image_size(data)
    assert width > 2 * MIN_PANEL_PIXELS and MIN_PANEL_PIXELS <= height < 2 * MIN_PANEL_PIXELS
    assert [path.name for path in (tmp_path / "deep").iterdir()] == ["picture.png"]


def test_ground_truth_adds_truth_and_error_rows_with_red_for_wrong_points():
    points, labels = cloud()
    gt = labels.copy()
    gt[: POINTS // 2] = (gt[: POINTS // 2] + 1) % NUM_CLASSES
    with_truth = render_png(points, labels, gt)
    without = render_png(points, labels)
    (_, height), (_, single_height) = image_size(with_truth), image_size(without)
    assert height >= 3 * MIN_PANEL_PIXELS and height > 2 * single_height
    with Image.open(io.BytesIO(with_truth)) as image:
        pixels = np.asarray(image.convert("RGB")).reshape(-1, 3)
    assert (np.abs(pixels.astype(int) - WRONG_RGB).sum(axis=1) < 30).sum() > 100
    correct_everywhere = render_png(points, labels, labels)
    with Image.open(io.BytesIO(correct_everywhere)) as image:
        pixels = np.asarray(image.convert("RGB")).reshape(-1, 3)
    red = (np.abs(pixels.astype(int) - WRONG_RGB).sum(axis=1) < 30).sum()
    assert red < 400, "only the legend swatch may be red when every point is right"


def test_clouds_without_labels_are_coloured_by_height_and_large_ones_subsampled():
    points, _ = cloud(count=50_000)
    data = render_png(points, max_points=3000)
    assert image_size(data)[1] >= MIN_PANEL_PIXELS


@pytest.mark.parametrize("call,expected", [
    (lambda points, labels: render_png(points, labels[:-1]), "one value per point"),
    (lambda points, labels: render_png(points, None, labels), "needs predicted labels"),
    (lambda points, labels: render_png(points, labels.astype(float)), "integers"),
    (lambda points, labels: render_png(points[:, :2], labels), r"\[N > 0, 3\]"),
    (lambda points, labels: render_png(np.full((3, 3), np.nan)), "NaN"),
])
def test_bad_arrays_are_refused(call, expected, tmp_path):
    points, labels = cloud(count=50)
    with pytest.raises(DataError, match=expected):
        call(points, labels)
