"""Iterated function systems and how FractalDB draws them: the chaos game from the origin, points
stretched to fill the image (y up), optional random binary patches per point, and grey or random-hue
colour, as the reference renderer (hirokatsukataoka16/FractalDB-Pretrained-ResNet-PyTorch) does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from image2point.channels import RGB_CHANNELS
from image2point.errors import DataError

AFFINE_ROWS, AFFINE_COLS = 2, 3
NUM_AFFINE_PARAMS = AFFINE_ROWS * AFFINE_COLS
UINT8_MAX = 255
# The reference renderer draws grayscale points at mid-grey.
GRAY_POINT_VALUE = 127
# The reference renderer colours points with saturation and value 0.75 and a hue that cycles
# along the chain, which is unrelated to a point's position; a random hue per point is equivalent.
COLOR_SATURATION = 0.75
COLOR_VALUE = 0.75
HUE_SECTORS = 6
# Independent chaos-game chains advanced together; more chains means fewer (slow) numpy steps.
CHAOS_GAME_CHAINS = 256
# Steps each chain takes from the origin before its points count, so that they lie on the attractor.
BURN_IN_STEPS = 20
# Below this total |det| every map is (numerically) singular and the probabilities are undefined.
MIN_TOTAL_DETERMINANT = 1e-12
# Keeps the rescaling finite when every point falls on one coordinate.
MIN_EXTENT = 1e-12
# eq=False: generated equality would compare the arrays elementwise, which has no truth value.
@dataclass(frozen=True, eq=False)
class IFS:
    """An iterated function system: affine maps ``[N, 2, 3]`` (rows ``[a, b, e]``, ``[c, d, f]``)
    and the probability ``[N]`` of applying each map in the chaos game (summing to 1)."""

    maps: np.ndarray
    probs: np.ndarray

    def __post_init__(self) -> None:
        maps = np.array(self.maps, dtype=np.float64)
        probs = np.array(self.probs, dtype=np.float64)
        if maps.ndim != 3 or maps.shape[1:] != (AFFINE_ROWS, AFFINE_COLS) or maps.shape[0] < 1:
            raise DataError(f"IFS maps must have shape [N, 2, 3] with N >= 1, got {list(maps.shape)}")
        if probs.shape != (maps.shape[0],):
            raise DataError(f"IFS probs must have shape [{maps.shape[0]}], got {list(probs.shape)}")
        if not (np.all(np.isfinite(maps)) and np.all(probs >= 0) and math.isclose(probs.sum(), 1.0)):
            raise DataError("IFS maps must be finite and probs non-negative, summing to 1")
        maps.setflags(write=False)
        probs.setflags(write=False)
        # A frozen dataclass only allows this route to store the validated read-only copies.
        object.__setattr__(self, "maps", maps)
        object.__setattr__(self, "probs", probs)

    @classmethod
    def from_maps(cls, maps: np.ndarray) -> IFS:
        """The IFS of ``maps`` with probabilities proportional to ``|det|`` of their linear parts."""
        maps = np.asarray(maps, dtype=np.float64)
        determinants = np.abs(np.linalg.det(maps[:, :, :AFFINE_ROWS]))
        total = determinants.sum()
        if not total > MIN_TOTAL_DETERMINANT:
            raise DataError("every map of the IFS is singular; selection probabilities are undefined")
        return cls(maps=maps, probs=determinants / total)

    @property
    def num_maps(self) -> int:
        return self.maps.shape[0]

    def scaled(self, param_index: int, factor: float) -> IFS:
        """The "weight parameter" perturbation: parameter ``param_index`` (row-major over the 2 x 3
        map) multiplied by ``factor`` in every map; the probabilities are kept."""
        row, col = divmod(param_index, AFFINE_COLS)
        maps = self.maps.copy()
        maps[:, row, col] *= factor
        return IFS(maps=maps, probs=self.probs)


# -- the chaos game and rasterisation ----------------------------------------------------------


def chaos_game(ifs: IFS, num_points: int, rng: np.random.Generator) -> np.ndarray:
    """``num_points`` points ``[num_points, 2]`` on the attractor of ``ifs``.

    Runs independent chains from the origin, each first taking ``BURN_IN_STEPS`` unrecorded steps.
    Points of diverging systems may be infinite or NaN; :func:`render_ifs` drops them.
    """
    if num_points < 1:
        raise ValueError(f"num_points must be >= 1, got {num_points}")
    num_chains = min(CHAOS_GAME_CHAINS, num_points)
    recorded_steps = math.ceil(num_points / num_chains)
    choices = rng.choice(ifs.num_maps, size=(BURN_IN_STEPS + recorded_steps, num_chains), p=ifs.probs)
    coefficients = ifs.maps.reshape(-1, NUM_AFFINE_PARAMS)[choices]
    x = np.zeros(num_chains)
    y = np.zeros(num_chains)
    points = np.empty((recorded_steps, num_chains, 2))
    with np.errstate(over="ignore", invalid="ignore"):
        # Each step's coefficients as six [num_chains] rows: a, b, e, c, d, f.
        for step, (a, b, e, c, d, f) in enumerate(coefficients.transpose(0, 2, 1)):
            x, y = a * x + b * y + e, c * x + d * y + f
            if step >= BURN_IN_STEPS:
                points[step - BURN_IN_STEPS, :, 0] = x
                points[step - BURN_IN_STEPS, :, 1] = y
    return points.reshape(-1, 2)[:num_points]


def points_to_pixels(points: np.ndarray, size: int, padding: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the finite ``points``, each axis stretched to fill the image inside the
    padding (as the reference renderer does), with y pointing up."""
    points = points[np.all(np.isfinite(points), axis=1)]
    if len(points) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    lowest = points.min(axis=0)
    extent = np.maximum(points.max(axis=0) - lowest, MIN_EXTENT)
    cells = size - 2 * padding
    with np.errstate(over="ignore", invalid="ignore"):
        scaled = (points - lowest) / extent * cells
    # Overflowing extents (finite points near the float limit) give NaN here: drop those points.
    scaled = scaled[np.all(np.isfinite(scaled), axis=1)]
    cell = np.minimum(scaled.astype(np.int64), cells - 1) + padding
    return size - 1 - cell[:, 1], cell[:, 0]


def _expand_to_patches(
    rows: np.ndarray, cols: np.ndarray, size: int, patch_size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixels of a random binary ``patch_size`` x ``patch_size`` patch centred on each point, each
    cell on with probability 1/2 and the centre always on. Also returns, per pixel, its point."""
    offsets = np.arange(patch_size) - patch_size // 2
    offset_rows, offset_cols = (grid.ravel() for grid in np.meshgrid(offsets, offsets, indexing="ij"))
    cell_on = rng.random((len(rows), patch_size * patch_size)) < 0.5
    cell_on[:, patch_size * patch_size // 2] = True
    point_index, cell_index = np.nonzero(cell_on)
    patch_rows = np.clip(rows[point_index] + offset_rows[cell_index], 0, size - 1)
    patch_cols = np.clip(cols[point_index] + offset_cols[cell_index], 0, size - 1)
    return patch_rows, patch_cols, point_index


def random_hue_colors(count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` uint8 RGB colours of random hue at the reference's saturation and value."""
    sector_position = rng.random(count) * HUE_SECTORS
    sector = sector_position.astype(np.int64) % HUE_SECTORS
    within = sector_position - np.floor(sector_position)
    value = np.full(count, COLOR_VALUE)
    low = value * (1 - COLOR_SATURATION)
    falling = value * (1 - COLOR_SATURATION * within)
    rising = value * (1 - COLOR_SATURATION * (1 - within))
    # (R, G, B) of each of the six hue sectors, in the usual HSV-to-RGB order.
    sector_rgb = np.stack(
        [
            np.stack([value, rising, low], axis=-1),
            np.stack([falling, value, low], axis=-1),
            np.stack([low, value, rising], axis=-1),
            np.stack([low, falling, value], axis=-1),
            np.stack([rising, low, value], axis=-1),
            np.stack([value, low, falling], axis=-1),
        ]
    )
    rgb = sector_rgb[sector, np.arange(count)]
    return np.round(rgb * UINT8_MAX).astype(np.uint8)


def render_ifs(
    ifs: IFS,
    size: int,
    num_points: int,
    rng: np.random.Generator,
    *,
    color: bool = False,
    padding: int = 0,
    patch_size: int = 1,
) -> np.ndarray:
    """The attractor of ``ifs`` drawn on black: uint8 ``[size, size]``, or ``[size, size, 3]`` with
    ``color`` (a random hue per point). ``patch_size`` > 1 draws a random binary patch per point."""
    if size < 1 or patch_size < 1 or not 0 <= 2 * padding < size:
        raise ValueError(
            "need size >= 1, patch_size >= 1 and 0 <= 2 * padding < size; "
            f"got size {size}, patch_size {patch_size}, padding {padding}"
        )
    rows, cols = points_to_pixels(chaos_game(ifs, num_points, rng), size, padding)
    num_drawn_points = len(rows)
    point_index = np.arange(num_drawn_points)
    if patch_size > 1:
        rows, cols, point_index = _expand_to_patches(rows, cols, size, patch_size, rng)
    if not color:
        image = np.zeros((size, size), dtype=np.uint8)
        image[rows, cols] = GRAY_POINT_VALUE
        return image
    image = np.zeros((size, size, RGB_CHANNELS), dtype=np.uint8)
    image[rows, cols] = random_hue_colors(num_drawn_points, rng)[point_index]
    return image


def filling_rate(image: np.ndarray) -> float:
    """Fraction of pixels that are not black (in any channel)."""
    drawn = image != 0 if image.ndim == 2 else np.any(image != 0, axis=-1)
    return float(drawn.mean())
