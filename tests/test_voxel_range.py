"""Coordinates against the range the networks' int64 voxel keys can hold."""

import numpy as np
import pytest

from image2point.errors import DataError
from image2point.voxel_range import check_batch_key_range, check_key_range
from image2point.voxelize import voxelize


def test_coordinates_beyond_the_networks_key_range_are_refused():
    points = np.random.default_rng(8).uniform(0, 10, size=(200, 3))
    points[0] = 4e9  # 4e9 m at 0.25 m: 1.6e10 voxels per axis, 4e30 cells
    voxels = voxelize(points, 0.25)
    with pytest.raises(DataError, match=r"far\.ply: coordinates out of range for voxel size 0\.25: the points span "
                                        r"16000000001 x 16000000001 x 16000000001 voxels"):
        check_key_range(voxels, "far.ply")
    with pytest.raises(DataError, match="coordinates out of range for voxel size 0.25"):
        check_batch_key_range([voxels])


def test_a_batch_is_checked_over_its_samples_together():
    # One axis of 2**40 voxels fits one sample's keys (with the kernel reach, 2**40 * 65**2 < 2**62) but
    # not 2**10 samples of it.
    points = np.array([[0.0, 0.0, 0.0], [2.0**40 - 1, 0.0, 0.0]])
    voxels = voxelize(points, 1.0)
    check_key_range(voxels)
    check_batch_key_range([voxels, voxels])
    with pytest.raises(DataError, match="coordinates out of range for voxel size 1"):
        check_batch_key_range([voxels] * 1024)
