"""Surfaces sampled uniformly by area: the primitives the procedural shapes and scenes are built from."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

PointSampler = Callable[[np.random.Generator, int], np.ndarray]


@dataclass(frozen=True)
class Surface:
    """A surface that can be sampled uniformly: its area and a sampler of n points on it."""

    area: float
    sample: PointSampler

    def moved(self, rotation: np.ndarray, offset: np.ndarray | tuple[float, float, float]) -> Surface:
        """The same surface rotated about the origin, then shifted by offset."""
        inner = self.sample
        shift = np.asarray(offset, dtype=np.float64)
        return Surface(self.area, lambda rng, n: inner(rng, n) @ rotation.T + shift)


def sample_surfaces(rng: np.random.Generator, surfaces: list[Surface], n: int) -> tuple[np.ndarray, np.ndarray]:
    """n points spread over the surfaces in proportion to their areas, and the surface index of each."""
    areas = np.array([surface.area for surface in surfaces])
    counts = rng.multinomial(n, areas / areas.sum())
    points = [surface.sample(rng, count) for surface, count in zip(surfaces, counts, strict=True)]
    owners = np.repeat(np.arange(len(surfaces)), counts)
    return np.concatenate(points), owners


# Primitive surfaces, in their own frame (z up). ----------------------------------------------


def sphere(radius: float, center: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> Surface:
    def sample(rng: np.random.Generator, n: int) -> np.ndarray:
        return radius * unit_vectors(rng, n) + center

    return Surface(4.0 * math.pi * radius**2, sample)


def hemisphere(radius: float, z_sign: float, center: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> Surface:
    def sample(rng: np.random.Generator, n: int) -> np.ndarray:
        directions = unit_vectors(rng, n)
        directions[:, 2] = z_sign * np.abs(directions[:, 2])
        return radius * directions + center

    return Surface(2.0 * math.pi * radius**2, sample)


def box(size: tuple[float, float, float], center: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> Surface:
    """The six faces of an axis-aligned box."""
    size_array = np.asarray(size, dtype=np.float64)
    face_areas = np.repeat([size[1] * size[2], size[0] * size[2], size[0] * size[1]], 2)

    def sample(rng: np.random.Generator, n: int) -> np.ndarray:
        faces = rng.choice(len(face_areas), size=n, p=face_areas / face_areas.sum())
        points = (rng.random((n, 3)) - 0.5) * size_array
        axis = faces // 2
        side = np.where(faces % 2 == 0, -0.5, 0.5)
        points[np.arange(n), axis] = side * size_array[axis]
        return points + center

    return Surface(float(face_areas.sum()), sample)


def disc(radius: float, z: float) -> Surface:
    """A horizontal disc centred on the z axis."""

    def sample(rng: np.random.Generator, n: int) -> np.ndarray:
        radii = radius * np.sqrt(rng.random(n))
        angles = rng.uniform(0.0, 2.0 * math.pi, n)
        return np.column_stack([radii * np.cos(angles), radii * np.sin(angles), np.full(n, z)])

    return Surface(math.pi * radius**2, sample)


def cylinder_side(radius: float, z_low: float, z_high: float) -> Surface:
    def sample(rng: np.random.Generator, n: int) -> np.ndarray:
        angles = rng.uniform(0.0, 2.0 * math.pi, n)
        heights = rng.uniform(z_low, z_high, n)
        return np.column_stack([radius * np.cos(angles), radius * np.sin(angles), heights])

    return Surface(2.0 * math.pi * radius * (z_high - z_low), sample)


def cone_side(radius: float, z_base: float, z_apex: float) -> Surface:
    """The lateral surface of a cone around the z axis (z_apex may be below z_base)."""

    def sample(rng: np.random.Generator, n: int) -> np.ndarray:
        # Area grows linearly with the distance from the apex, hence the square root.
        fractions = np.sqrt(rng.random(n))
        angles = rng.uniform(0.0, 2.0 * math.pi, n)
        radii = radius * fractions
        heights = z_apex + (z_base - z_apex) * fractions
        return np.column_stack([radii * np.cos(angles), radii * np.sin(angles), heights])

    return Surface(math.pi * radius * math.hypot(radius, z_apex - z_base), sample)


def torus(major_radius: float, minor_radius: float) -> Surface:
    """A torus around the z axis."""

    def sample(rng: np.random.Generator, n: int) -> np.ndarray:
        tube_angles = _torus_tube_angles(rng, n, major_radius, minor_radius)
        ring_angles = rng.uniform(0.0, 2.0 * math.pi, n)
        ring_radii = major_radius + minor_radius * np.cos(tube_angles)
        return np.column_stack(
            [ring_radii * np.cos(ring_angles), ring_radii * np.sin(ring_angles), minor_radius * np.sin(tube_angles)]
        )

    return Surface(4.0 * math.pi**2 * major_radius * minor_radius, sample)


def _torus_tube_angles(rng: np.random.Generator, n: int, major_radius: float, minor_radius: float) -> np.ndarray:
    # The outer side of the tube has more area: accept angle v with probability (R + r cos v) / (R + r).
    accepted: list[np.ndarray] = []
    remaining = n
    while remaining > 0:
        angles = rng.uniform(0.0, 2.0 * math.pi, 2 * remaining)
        keep = rng.random(len(angles)) * (major_radius + minor_radius) < major_radius + minor_radius * np.cos(angles)
        accepted.append(angles[keep][:remaining])
        remaining -= len(accepted[-1])
    return np.concatenate(accepted)


def triangle(a: tuple[float, ...], b: tuple[float, ...], c: tuple[float, ...]) -> Surface:
    corner_a, corner_b, corner_c = (np.asarray(corner, dtype=np.float64) for corner in (a, b, c))
    area = 0.5 * float(np.linalg.norm(np.cross(corner_b - corner_a, corner_c - corner_a)))

    def sample(rng: np.random.Generator, n: int) -> np.ndarray:
        first, second = rng.random(n), rng.random(n)
        root = np.sqrt(first)[:, None]
        return (1.0 - root) * corner_a + root * (1.0 - second[:, None]) * corner_b + root * second[:, None] * corner_c

    return Surface(area, sample)


def rectangle(origin: np.ndarray, edge_u: np.ndarray, edge_v: np.ndarray) -> Surface:
    """The parallelogram origin + s * edge_u + t * edge_v for s, t in [0, 1]."""
    area = float(np.linalg.norm(np.cross(edge_u, edge_v)))

    def sample(rng: np.random.Generator, n: int) -> np.ndarray:
        coefficients = rng.random((n, 2))
        return origin + coefficients[:, :1] * edge_u + coefficients[:, 1:] * edge_v

    return Surface(area, sample)


def rotation_about_z(angle: float) -> np.ndarray:
    cosine, sine = math.cos(angle), math.sin(angle)
    return np.array([[cosine, -sine, 0.0], [sine, cosine, 0.0], [0.0, 0.0, 1.0]])


def rotation_about_axis(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rodrigues' formula for a unit axis."""
    x, y, z = axis
    cross = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    return np.eye(3) + math.sin(angle) * cross + (1.0 - math.cos(angle)) * cross @ cross


def unit_vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    vectors = rng.standard_normal((n, 3))
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
