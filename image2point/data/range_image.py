"""Spherical projection of a LiDAR scan to a range image, back-projection of labels and kNN refinement.

The projection follows RangeNet++ (Milioto et al., IROS 2019) and its SemanticKITTI defaults: a
64 x 2048 image whose rows span the sensor's vertical field of view (+3 deg to -25 deg for the
HDL-64E) and whose columns span 360 deg of azimuth. Column 0 looks backwards (azimuth pi), the image
centre looks along +x, and azimuth grows from right to left (yaw = -atan2(y, x)). Row 0 is the top
of the field of view.

Every point gets a pixel. Points above or below the vertical field of view are clamped to the first
or last row rather than dropped, so every point can be labelled by back-projection. When several
points fall into one pixel, the pixel shows the closest one (RangeNet++ writes the points in order of
decreasing range, so the nearest is written last); ties in range go to the lowest point index.

Functions accept numpy arrays or torch tensors and return torch tensors on the CPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from image2point.data.sample import IGNORE_INDEX
from image2point.errors import ConfigError, DataError

ArrayLike = np.ndarray | torch.Tensor

# SemanticKITTI's Velodyne HDL-64E as configured in RangeNet++ (arch_cfg sensor block).
KITTI_HEIGHT = 64
KITTI_WIDTH = 2048
KITTI_FOV_UP_DEG = 3.0
KITTI_FOV_DOWN_DEG = -25.0
MAX_ELEVATION_DEG = 90.0

# Channels of RangeImage.image, in order.
CHANNELS = ("x", "y", "z", "intensity", "range")
NUM_CHANNELS = len(CHANNELS)
XYZ = 3
INTENSITY_CHANNEL = CHANNELS.index("intensity")
RANGE_CHANNEL = CHANNELS.index("range")
EMPTY_PIXEL = -1

# RangeNet++'s post-processing defaults (postproc block of its arch configs).
KNN_NEIGHBOURS = 5
KNN_SEARCH = 5
KNN_SIGMA = 1.0
KNN_CUTOFF = 1.0


@dataclass(frozen=True)
class RangeProjectionConfig:
    """Image size and the sensor's vertical field of view in degrees (up: top row, down: bottom row)."""

    height: int = KITTI_HEIGHT
    width: int = KITTI_WIDTH
    fov_up_deg: float = KITTI_FOV_UP_DEG
    fov_down_deg: float = KITTI_FOV_DOWN_DEG

    def __post_init__(self) -> None:
        for name in ("height", "width"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"range image {name} must be a positive integer, got {value!r}")
        for name in ("fov_up_deg", "fov_down_deg"):
            value = getattr(self, name)
            if not math.isfinite(value) or abs(value) > MAX_ELEVATION_DEG:
                raise ConfigError(f"{name} must be an elevation in [-90, 90] degrees, got {value!r}")
        if self.fov_up_deg <= self.fov_down_deg:
            raise ConfigError(
                f"fov_up_deg ({self.fov_up_deg}) must be above fov_down_deg ({self.fov_down_deg})"
            )

    @property
    def fov_up(self) -> float:
        return math.radians(self.fov_up_deg)

    @property
    def fov_down(self) -> float:
        return math.radians(self.fov_down_deg)

    @property
    def fov(self) -> float:
        """Vertical field of view in radians."""
        return self.fov_up - self.fov_down


@dataclass(frozen=True, eq=False)
class RangeImage:
    """A scan projected to an image, with the maps between its points and pixels.

    image: float32 ``[5, H, W]``, channels x, y, z, intensity, range of the pixel's point (zeros where
    empty). mask: bool ``[H, W]``, True where a point was written. pixel_of_point: int64 ``[N, 2]``
    (row, col) of every point. point_of_pixel: int64 ``[H, W]``, index of the point shown by each
    pixel, -1 where empty. point_range: float32 ``[N]``, every point's distance from the sensor.
    """

    image: torch.Tensor
    mask: torch.Tensor
    pixel_of_point: torch.Tensor
    point_of_pixel: torch.Tensor
    point_range: torch.Tensor
    config: RangeProjectionConfig

    @property
    def num_points(self) -> int:
        return self.pixel_of_point.shape[0]

    @property
    def flat_pixel_of_point(self) -> torch.Tensor:
        """``row * W + col`` of every point, int64 ``[N]``."""
        return self.pixel_of_point[:, 0] * self.config.width + self.pixel_of_point[:, 1]

    def owns_pixel(self) -> torch.Tensor:
        """bool ``[N]``: the point is the one its pixel shows (it was not hidden by a closer point)."""
        owner = self.point_of_pixel.reshape(-1)[self.flat_pixel_of_point]
        return owner == torch.arange(self.num_points)


def project_to_range_image(
    points: ArrayLike,
    intensity: ArrayLike | None = None,
    config: RangeProjectionConfig = RangeProjectionConfig(),
) -> RangeImage:
    """Project ``points`` [N, 3] (sensor frame, metres) and their ``intensity`` [N] to a range image.

    Without intensity the intensity channel is zero. A point at the sensor origin (range 0) gets
    elevation 0. Raises ``DataError`` for an empty cloud, wrong shapes or non-finite values.
    """
    xyz = _as_float_tensor(points, "points")
    if xyz.ndim != 2 or xyz.shape[1] != XYZ:
        raise DataError(f"points must have shape [N, 3], got {list(xyz.shape)}")
    num_points = xyz.shape[0]
    if num_points == 0:
        raise DataError("cannot project an empty point cloud")
    _require_finite(xyz, "points")
    if intensity is None:
        remission = torch.zeros(num_points, dtype=torch.float64)
    else:
        remission = _as_float_tensor(intensity, "intensity")
        if remission.shape != (num_points,):
            raise DataError(f"intensity must have shape [{num_points}], got {list(remission.shape)}")
        _require_finite(remission, "intensity")

    # Angles in float64: at 2048 columns a pixel is 3 mrad wide, and float32 atan2 near pixel
    # boundaries would move points between neighbouring pixels depending on the backend.
    x, y, z = xyz.unbind(1)
    point_range = torch.linalg.vector_norm(xyz, dim=1)
    yaw = -torch.atan2(y, x)
    pitch = torch.atan2(z, torch.hypot(x, y))  # asin(z / range), and 0 at the origin
    height, width = config.height, config.width
    col = torch.floor(0.5 * (yaw / math.pi + 1.0) * width).long().clamp_(0, width - 1)
    row = torch.floor((1.0 - (pitch - config.fov_down) / config.fov) * height).long().clamp_(0, height - 1)
    pixel_of_point = torch.stack([row, col], dim=1)

    flat = row * width + col
    owners = _nearest_point_per_pixel(flat, point_range)
    owned_pixels = flat[owners]
    point_of_pixel = torch.full((height * width,), EMPTY_PIXEL, dtype=torch.int64)
    point_of_pixel[owned_pixels] = owners
    values = torch.cat([xyz, remission[:, None], point_range[:, None]], dim=1).float()
    image = torch.zeros(height * width, NUM_CHANNELS, dtype=torch.float32)
    image[owned_pixels] = values[owners]
    return RangeImage(
        image=image.T.reshape(NUM_CHANNELS, height, width).contiguous(),
        mask=(point_of_pixel != EMPTY_PIXEL).reshape(height, width),
        pixel_of_point=pixel_of_point,
        point_of_pixel=point_of_pixel.reshape(height, width),
        point_range=point_range.float(),
        config=config,
    )


def _nearest_point_per_pixel(flat_pixel: torch.Tensor, point_range: torch.Tensor) -> torch.Tensor:
    """Index of the closest point of every occupied pixel (lowest index among equal ranges).

    Sorting by range, then stably by pixel, puts each pixel's nearest point first in its run.
    """
    by_range = torch.argsort(point_range, stable=True)
    by_pixel = by_range[torch.argsort(flat_pixel[by_range], stable=True)]
    sorted_pixels = flat_pixel[by_pixel]
    first_in_run = torch.ones_like(sorted_pixels, dtype=torch.bool)
    first_in_run[1:] = sorted_pixels[1:] != sorted_pixels[:-1]
    return by_pixel[first_in_run]


def back_project_labels(pixel_labels: ArrayLike, range_image: RangeImage) -> torch.Tensor:
    """Per-point labels int64 ``[N]``: each point takes the label of the pixel it falls into."""
    labels = _pixel_map(pixel_labels, range_image, "pixel_labels")
    return labels.reshape(-1)[range_image.flat_pixel_of_point].long()


def pixel_labels_from_points(
    point_labels: ArrayLike, range_image: RangeImage, empty_label: int = IGNORE_INDEX
) -> torch.Tensor:
    """int64 ``[H, W]`` label image: each pixel takes its point's label, ``empty_label`` where empty.

    The training target of a range-image network, built from per-point ground truth.
    """
    labels = torch.as_tensor(point_labels)
    if labels.shape != (range_image.num_points,):
        raise DataError(f"point_labels must have shape [{range_image.num_points}], got {list(labels.shape)}")
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise DataError(f"point_labels must be integers, got {labels.dtype}")
    owner = range_image.point_of_pixel
    pixel_labels = torch.full(owner.shape, empty_label, dtype=torch.int64)
    pixel_labels[range_image.mask] = labels.long()[owner[range_image.mask]]
    return pixel_labels


def knn_refine(
    range_image: RangeImage,
    pixel_predictions: ArrayLike,
    k: int = KNN_NEIGHBOURS,
    search: int = KNN_SEARCH,
    cutoff: float | None = KNN_CUTOFF,
    sigma: float = KNN_SIGMA,
) -> torch.Tensor:
    """RangeNet++'s kNN post-processing: per-point labels int64 ``[N]`` voted among nearby pixels.

    ``pixel_predictions`` is either logits ``[C, H, W]`` (their argmax is used) or labels ``[H, W]``.
    For every point, the ``search`` x ``search`` window of pixels around its own pixel is compared by
    range: the distance to a neighbour pixel is ``|range(pixel) - range(point)|`` weighted by one minus
    a normalised Gaussian of standard deviation ``sigma`` pixels, and the point's own pixel counts as
    at distance 0 (it stands for the point itself, which may be hidden behind a closer one). Among the
    ``k`` nearest, those farther than ``cutoff`` metres (None: no cutoff), empty pixels and pixels
    labelled negative (``IGNORE_INDEX``) do not vote; the most voted label wins, the lowest label on a
    tie; a point without any vote gets ``IGNORE_INDEX``. The window wraps around horizontally, since
    the image covers 360 deg of azimuth, and rows beyond the top and bottom are empty.
    """
    if k < 1 or search < 1 or search % 2 == 0 or k > search * search:
        raise ValueError(f"kNN needs an odd search window >= 1 and 1 <= k <= search^2, got k={k}, search={search}")
    if sigma <= 0 or (cutoff is not None and cutoff < 0):
        raise ValueError(f"kNN needs sigma > 0 and cutoff >= 0, got sigma={sigma}, cutoff={cutoff}")
    height, width = range_image.config.height, range_image.config.width
    pad = search // 2
    if pad > width:
        raise ValueError(f"kNN search window {search} is wider than twice the image ({width} columns)")
    labels = _prediction_labels(pixel_predictions, range_image)
    pixel_range = torch.where(range_image.mask, range_image.image[RANGE_CHANNEL].double(), math.inf)
    # Range and label travel together through unfold; float64 holds every int32 label exactly.
    planes = torch.stack([pixel_range, labels.double()])[None]
    planes = F.pad(planes, (pad, pad, 0, 0), mode="circular")
    planes = F.pad(planes, (0, 0, pad, pad), value=math.inf)
    windows = F.unfold(planes, kernel_size=search).reshape(2, search * search, height * width)
    flat = range_image.flat_pixel_of_point
    neighbour_range = windows[0][:, flat]  # [S*S, N]
    neighbour_label = windows[1][:, flat]
    centre = search * search // 2
    point_range = range_image.point_range.double()
    neighbour_range[centre] = point_range
    weights = 1.0 - _gaussian_window(search, sigma)
    distance = (neighbour_range - point_range[None]).abs() * weights[:, None]
    nearest_distance, nearest = distance.topk(k, dim=0, largest=False)
    votes = torch.gather(neighbour_label, 0, nearest)
    valid = torch.isfinite(nearest_distance) & (votes >= 0)
    if cutoff is not None:
        valid &= nearest_distance <= cutoff
    valid_labels = votes[valid].long()
    num_classes = int(valid_labels.max()) + 1 if valid_labels.numel() else 1
    counts = torch.zeros(num_classes, range_image.num_points, dtype=torch.int64)
    point_index = torch.arange(range_image.num_points).expand_as(votes)[valid]
    counts.index_put_((valid_labels, point_index), torch.ones_like(valid_labels), accumulate=True)
    refined = counts.argmax(dim=0)
    refined[counts.sum(dim=0) == 0] = IGNORE_INDEX
    return refined


def _gaussian_window(size: int, sigma: float) -> torch.Tensor:
    """Flattened ``size`` x ``size`` Gaussian of standard deviation ``sigma``, summing to 1."""
    offsets = torch.arange(size, dtype=torch.float64) - size // 2
    one_d = torch.exp(-(offsets**2) / (2.0 * sigma**2))
    window = one_d[:, None] * one_d[None, :]
    return (window / window.sum()).reshape(-1)


def _prediction_labels(pixel_predictions: ArrayLike, range_image: RangeImage) -> torch.Tensor:
    predictions = torch.as_tensor(pixel_predictions).detach().cpu()
    if predictions.ndim == 3:
        if not predictions.dtype.is_floating_point:
            raise DataError(f"pixel logits [C, H, W] must be floating point, got {predictions.dtype}")
        _require_finite(predictions, "pixel logits")
        predictions = predictions.argmax(dim=0)
    return _pixel_map(predictions, range_image, "pixel_predictions")


def _pixel_map(values: ArrayLike, range_image: RangeImage, name: str) -> torch.Tensor:
    """An integer ``[H, W]`` map of ``range_image``'s size, on the CPU."""
    tensor = torch.as_tensor(values).detach().cpu()
    expected = (range_image.config.height, range_image.config.width)
    if tuple(tensor.shape) != expected:
        raise DataError(f"{name} must have shape [{expected[0]}, {expected[1]}], got {list(tensor.shape)}")
    if tensor.dtype.is_floating_point or tensor.dtype.is_complex or tensor.dtype == torch.bool:
        raise DataError(f"{name} must hold integer labels, got {tensor.dtype}")
    return tensor.long()


def _as_float_tensor(values: ArrayLike, name: str) -> torch.Tensor:
    try:
        tensor = torch.as_tensor(values)
    except (TypeError, ValueError, RuntimeError) as error:
        raise DataError(f"{name} is not a numeric array: {error}") from error
    if not (tensor.dtype.is_floating_point or _is_integer(tensor.dtype)):
        raise DataError(f"{name} must be numeric, got {tensor.dtype}")
    return tensor.detach().cpu().double()


def _is_integer(dtype: torch.dtype) -> bool:
    return not dtype.is_floating_point and not dtype.is_complex and dtype != torch.bool


def _require_finite(tensor: torch.Tensor, name: str) -> None:
    bad = ~torch.isfinite(tensor)
    if bad.ndim > 1:
        bad = bad.reshape(bad.shape[0], -1).any(dim=1)
    if bad.any():
        raise DataError(f"{name}: entry {int(bad.nonzero()[0, 0])} has NaN or infinite values")
