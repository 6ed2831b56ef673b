"""Headless pictures of labelled point clouds: a top view and a perspective view, as one PNG.

:func:`render_png` draws with matplotlib's Agg canvas (no display, no pyplot state). Without ground
truth a picture has one row (the prediction, or the height when there are no labels); with ground
truth three rows: ground truth, prediction, and an error map (correct points grey, wrong points red,
points without a ground-truth class pale). Large clouds are drawn from a random subset of
``max_points`` points drawn with a fixed seed, so the same cloud always gives the same picture.

The palettes here are the datasets' fixed colours, which each dataset names in its registration
(:mod:`image2point.data.registry`): SemanticKITTI's official ``color_map`` (stored as BGR in
semantic-kitti.yaml, converted here) indexed through ``learning_map_inv``, PointNet's S3DIS colours, a
fixed 40-colour palette for ModelNet40 and the procedural shapes, and a generic golden-angle palette
for any other class list. A legend names the classes present.

This module needs only numpy and, inside the rendering functions, matplotlib (``pip install
"image2point[viz]"``).
"""

from __future__ import annotations

import colorsys
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from image2point.checkpoint import atomic_write
from image2point.errors import DataError
from image2point.io.kitti import OFFICIAL_COLOR_MAP_BGR, OFFICIAL_LEARNING_MAP_INV

MATPLOTLIB_INSTALL_HINT = 'rendering PNG files needs matplotlib: pip install "image2point[viz]"'
DEFAULT_MAX_POINTS = 60_000
RENDER_SEED = 0
# Perspective camera: looking at the cloud's centre from this azimuth and elevation, at this many
# bounding-sphere radii from it.
CAMERA_AZIMUTH_DEGREES = -60.0
CAMERA_ELEVATION_DEGREES = 30.0
CAMERA_DISTANCE_RADII = 2.5
PANEL_INCHES = 4.5
LEGEND_INCHES = 2.2
DPI = 100
# Layout, as fractions of the figure (margins) or of a panel (gaps between panels and rows).
FIGURE_MARGIN = 0.01
# Heights reserved above the panels for the figure title and for each panel's own title.
TITLE_INCHES = 0.45
PANEL_TITLE_INCHES = 0.3
PANEL_GAP = 0.02
ROW_GAP = 0.08
LEGEND_EDGE_WIDTH = 0.3
# Marker area (points^2) is this budget shared by the drawn points, within the clip range.
MARKER_AREA_BUDGET = 40_000.0
MARKER_AREA_RANGE = (0.2, 8.0)
MAX_LEGEND_ENTRIES = 40
BACKGROUND = "white"
IGNORED_RGB = (200, 200, 200)
CORRECT_RGB = (150, 150, 150)
WRONG_RGB = (220, 30, 30)
UNSCORED_RGB = (225, 225, 225)
HEIGHT_COLORMAP = "viridis"
RGB_MAX = 255.0
GOLDEN_ANGLE_TURNS = 0.381966
GENERIC_SATURATIONS = (0.75, 0.55)
GENERIC_VALUES = (0.9, 0.7)

# The 20 + 20 colours of matplotlib's tab20 and tab20b (d3's category20 and category20b).
MODELNET40_PALETTE_HEX = (
    "1f77b4", "aec7e8", "ff7f0e", "ffbb78", "2ca02c", "98df8a", "d62728", "ff9896", "9467bd", "c5b0d5",
    "8c564b", "c49c94", "e377c2", "f7b6d2", "7f7f7f", "c7c7c7", "bcbd22", "dbdb8d", "17becf", "9edae5",
    "393b79", "5254a3", "6b6ecf", "9c9ede", "637939", "8ca252", "b5cf6b", "cedb9c", "8c6d31", "bd9e39",
    "e7ba52", "e7cb94", "843c39", "ad494a", "d6616b", "e7969c", "7b4173", "a55194", "ce6dbd", "de9ed6",
)
# PointNet's indoor3d_util g_class2color, in S3DIS class order (ceiling .. clutter).
S3DIS_PALETTE_RGB = (
    (0, 255, 0), (0, 0, 255), (0, 255, 255), (255, 255, 0), (255, 0, 255), (100, 100, 255), (200, 200, 100),
    (170, 120, 200), (255, 0, 0), (200, 100, 100), (10, 200, 100), (200, 200, 200), (50, 50, 50),
)


def generic_palette(num_classes: int) -> np.ndarray:
    """uint8 [K, 3]: hues a golden angle apart, alternating saturation and brightness, for any K."""
    if num_classes < 0:
        raise ValueError(f"num_classes must be >= 0, got {num_classes}")
    colours = []
    for index in range(num_classes):
        hue = (index * GOLDEN_ANGLE_TURNS) % 1.0
        saturation = GENERIC_SATURATIONS[index % len(GENERIC_SATURATIONS)]
        value = GENERIC_VALUES[(index // len(GENERIC_SATURATIONS)) % len(GENERIC_VALUES)]
        colours.append(colorsys.hsv_to_rgb(hue, saturation, value))
    return np.round(np.asarray(colours, dtype=np.float64).reshape(-1, 3) * RGB_MAX).astype(np.uint8)


def semantickitti_palette(
    color_map_bgr: Mapping[int, Sequence[int]] = OFFICIAL_COLOR_MAP_BGR,
    learning_map_inv: Mapping[int, int] = OFFICIAL_LEARNING_MAP_INV,
) -> np.ndarray:
    """uint8 [K, 3] RGB of the training classes 0..K-1 (the yaml's learned classes 1..K).

    Class ``c`` is drawn in ``color_map[learning_map_inv[c + 1]]`` with BGR turned into RGB; learned
    class 0 ("unlabeled") is not a training class (it becomes IGNORE_INDEX).
    """
    learned = sorted(key for key in learning_map_inv if key > 0)
    colours = []
    for key in learned:
        raw_id = learning_map_inv[key]
        if raw_id not in color_map_bgr:
            raise DataError(f"color_map has no colour for raw id {raw_id} (learning_map_inv of class {key})")
        blue, green, red = (int(channel) for channel in color_map_bgr[raw_id])
        colours.append((red, green, blue))
    return np.asarray(colours, dtype=np.uint8).reshape(-1, 3)


def modelnet40_palette() -> np.ndarray:
    """uint8 [40, 3]: the 40 colours of tab20 and tab20b."""
    return np.asarray([[int(code[i:i + 2], 16) for i in (0, 2, 4)] for code in MODELNET40_PALETTE_HEX], dtype=np.uint8)


def s3dis_palette() -> np.ndarray:
    """uint8 [13, 3]: PointNet's S3DIS colours, ceiling .. clutter."""
    return np.asarray(S3DIS_PALETTE_RGB, dtype=np.uint8)


def extend_palette(palette: np.ndarray, num_classes: int) -> np.ndarray:
    """The first ``num_classes`` colours of ``palette``, with generic colours appended when it is short."""
    palette = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)
    if len(palette) >= num_classes:
        return palette[:num_classes]
    extra = generic_palette(num_classes)[len(palette):]
    return np.concatenate([palette, extra])


def label_colours(labels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """uint8 [N, 3] colour of each label; negative labels (no class) are pale grey."""
    labels = np.asarray(labels)
    palette = extend_palette(palette, int(labels.max(initial=-1)) + 1)
    colours = np.empty((len(labels), 3), dtype=np.uint8)
    valid = labels >= 0
    colours[valid] = palette[labels[valid]]
    colours[~valid] = IGNORED_RGB
    return colours


def error_colours(labels: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """uint8 [N, 3]: grey where ``labels`` equal ``gt``, red where they differ, pale where gt < 0."""
    colours = np.empty((len(labels), 3), dtype=np.uint8)
    colours[:] = CORRECT_RGB
    colours[labels != gt] = WRONG_RGB
    colours[gt < 0] = UNSCORED_RGB
    return colours


def subsample_indices(num_points: int, max_points: int, seed: int = RENDER_SEED) -> np.ndarray:
    """Sorted indices of at most ``max_points`` of ``num_points`` points, drawn without replacement."""
    if max_points < 1:
        raise ValueError(f"max_points must be >= 1, got {max_points}")
    if num_points <= max_points:
        return np.arange(num_points)
    return np.sort(np.random.default_rng(seed).choice(num_points, size=max_points, replace=False))


def perspective_projection(points: np.ndarray, azimuth_degrees: float = CAMERA_AZIMUTH_DEGREES,
                           elevation_degrees: float = CAMERA_ELEVATION_DEGREES,
                           distance_radii: float = CAMERA_DISTANCE_RADII) -> tuple[np.ndarray, np.ndarray]:
    """Image-plane coordinates [N, 2] and depths [N] of ``points`` seen by a pinhole camera.

    The camera looks at the centre of the bounding box from ``distance_radii`` bounding-sphere radii
    away, z up; larger depth is farther.
    """
    points = np.asarray(points, dtype=np.float64)
    centre = (points.min(axis=0) + points.max(axis=0)) / 2.0
    radius = float(np.linalg.norm(points - centre, axis=1).max()) or 1.0
    azimuth, elevation = math.radians(azimuth_degrees), math.radians(elevation_degrees)
    towards_camera = np.array([math.cos(elevation) * math.cos(azimuth), math.cos(elevation) * math.sin(azimuth),
                               math.sin(elevation)])
    camera = centre + towards_camera * radius * distance_radii
    forward = -towards_camera
    right = np.cross(forward, np.array([0.0, 0.0, 1.0]))
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    relative = points - camera
    depth = relative @ forward
    image = np.stack([relative @ right, relative @ up], axis=1) / depth[:, None]
    return image, depth


def render_png(
    points: np.ndarray,
    labels: np.ndarray | None = None,
    gt: np.ndarray | None = None,
    palette: np.ndarray | None = None,
    class_names: Sequence[str] | None = None,
    out: str | Path | None = None,
    max_points: int = DEFAULT_MAX_POINTS,
    title: str | None = None,
    seed: int = RENDER_SEED,
    labels_name: str = "prediction",
) -> bytes:
    """PNG bytes of ``points`` ([N, 3]) from above and in perspective; written atomically to ``out`` if given.

    labels: class per point ([N] integers, negative = no class); None colours by height. gt: ground
    truth per point (needs labels); adds the ground-truth and error rows. palette: uint8 [K, 3]
    (generic colours when None or short). class_names: legend names (``class <i>`` when None).
    labels_name: what the labels are, in panel titles.
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3 or len(points) == 0:
        raise DataError(f"points must be [N > 0, 3], got shape {points.shape}")
    if not np.isfinite(points).all():
        raise DataError("points hold NaN or infinite coordinates")
    labels = _checked_labels(labels, len(points), "labels")
    gt = _checked_labels(gt, len(points), "ground truth")
    if gt is not None and labels is None:
        raise DataError("ground truth needs predicted labels to compare with")
    keep = subsample_indices(len(points), max_points, seed)
    points = points[keep]
    labels = None if labels is None else labels[keep]
    gt = None if gt is None else gt[keep]
    present = np.unique(np.concatenate([values for values in (labels, gt) if values is not None]
                                       or [np.zeros(0, dtype=np.int64)]))
    present = present[present >= 0]
    palette = extend_palette(palette if palette is not None else generic_palette(0), int(present.max(initial=-1)) + 1)
    rows = _rows(points, labels, gt, palette, labels_name)
    data = _draw(points, rows, _legend(present, palette, class_names, gt is not None), title)
    if out is not None:
        _write_atomically(Path(out), data)
    return data


def _checked_labels(values: np.ndarray | None, num_points: int, what: str) -> np.ndarray | None:
    if values is None:
        return None
    values = np.asarray(values)
    if values.shape != (num_points,):
        raise DataError(f"{what} must have one value per point ({num_points}), got shape {values.shape}")
    if values.dtype.kind not in "iu":
        raise DataError(f"{what} must be integers, got dtype {values.dtype}")
    return values.astype(np.int64)


def _rows(points: np.ndarray, labels: np.ndarray | None, gt: np.ndarray | None, palette: np.ndarray,
          labels_name: str) -> list[tuple[str, np.ndarray]]:
    """(row name, float RGB [N, 3] in [0, 1]) of each row of panels."""
    if labels is None:
        return [("height", _height_colours(points[:, 2]))]
    prediction = label_colours(labels, palette) / RGB_MAX
    if gt is None:
        return [(labels_name, prediction)]
    return [("ground truth", label_colours(gt, palette) / RGB_MAX), (labels_name, prediction),
            ("errors", error_colours(labels, gt) / RGB_MAX)]


def _height_colours(heights: np.ndarray) -> np.ndarray:
    from matplotlib import colormaps

    span = float(heights.max() - heights.min()) or 1.0
    return colormaps[HEIGHT_COLORMAP]((heights - heights.min()) / span)[:, :3]


def _legend(present: np.ndarray, palette: np.ndarray, class_names: Sequence[str] | None,
            with_errors: bool) -> list[tuple[str, tuple[float, float, float]]]:
    entries = []
    for label in present[:MAX_LEGEND_ENTRIES]:
        name = class_names[label] if class_names is not None and label < len(class_names) else f"class {label}"
        entries.append((f"{label}: {name}", tuple(palette[label] / RGB_MAX)))
    if len(present) > MAX_LEGEND_ENTRIES:
        entries.append((f"... {len(present) - MAX_LEGEND_ENTRIES} more", (1.0, 1.0, 1.0)))
    if with_errors:
        entries += [("correct", tuple(np.array(CORRECT_RGB) / RGB_MAX)),
                    ("wrong", tuple(np.array(WRONG_RGB) / RGB_MAX)),
                    ("no ground truth", tuple(np.array(UNSCORED_RGB) / RGB_MAX))]
    return entries


def _draw(points: np.ndarray, rows: list[tuple[str, np.ndarray]],
          legend: list[tuple[str, tuple[float, float, float]]], title: str | None) -> bytes:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.patches import Patch
    except ImportError as error:
        raise ImportError(MATPLOTLIB_INSTALL_HINT) from error
    legend_width = LEGEND_INCHES if legend else 0.0
    figure = Figure(figsize=(2 * PANEL_INCHES + legend_width, PANEL_INCHES * len(rows)), dpi=DPI,
                    facecolor=BACKGROUND)
    FigureCanvasAgg(figure)
    area = float(np.clip(MARKER_AREA_BUDGET / len(points), *MARKER_AREA_RANGE))
    top_order = np.argsort(points[:, 2], kind="stable")
    image, depth = perspective_projection(points)
    perspective_order = np.argsort(-depth, kind="stable")
    right_edge = 1.0 - legend_width / (2 * PANEL_INCHES + legend_width)
    # Room for the figure title and the panel titles below it, in inches, whatever the number of rows.
    figure_height = PANEL_INCHES * len(rows)
    top = 1.0 - ((TITLE_INCHES if title else 0.0) + PANEL_TITLE_INCHES) / figure_height
    grid = figure.add_gridspec(len(rows), 2, left=FIGURE_MARGIN, right=right_edge - FIGURE_MARGIN, top=top,
                               bottom=FIGURE_MARGIN, wspace=PANEL_GAP, hspace=ROW_GAP)
    for row, (name, colours) in enumerate(rows):
        for column, (view, xy, order) in enumerate((("top view", points[:, :2], top_order),
                                                    ("perspective", image, perspective_order))):
            axes = figure.add_subplot(grid[row, column])
            axes.scatter(xy[order, 0], xy[order, 1], c=colours[order], s=area, marker="o", linewidths=0,
                         rasterized=True)
            axes.set_aspect("equal", adjustable="datalim")
            axes.set_xticks([])
            axes.set_yticks([])
            axes.set_title(f"{view}: {name}", fontsize="medium")
    if legend:
        handles = [Patch(facecolor=colour, edgecolor="black", linewidth=LEGEND_EDGE_WIDTH, label=name) for name, colour in legend]
        figure.legend(handles=handles, loc="center left", bbox_to_anchor=(right_edge, 0.5), fontsize="small",
                      frameon=False)
    if title:
        figure.suptitle(title, fontsize="large", y=1.0 - FIGURE_MARGIN / 2, va="top")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", facecolor=BACKGROUND)
    return buffer.getvalue()


def _write_atomically(path: Path, data: bytes) -> None:
    with atomic_write(path, "wb") as handle:
        handle.write(data)

