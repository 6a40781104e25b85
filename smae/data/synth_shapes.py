"""Textures and shapes of the synthetic videos, as functions of local coordinates.

Everything here is evaluated per pixel on flat numpy arrays of local coordinates (u, v): a
sprite's pixels are mapped back into its own frame by the inverse of its pose, then asked
"inside?" (Shape.contains) and "which colour?" (Texture.sample). Because the texture is a
function of local coordinates, it translates, rotates and scales with the object exactly,
and the ground-truth masks come from the very same `contains` test that drew the pixels.

Shapes fit inside the unit disc (|(u, v)| <= 1), so a pose with scale s covers at most a
disc of radius s pixels around its centre.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TEXTURE_KINDS = ("noise", "stripes", "checker")
SHAPE_KINDS = ("ellipse", "polygon", "blob")
MIN_PERIOD_PIXELS = 12.0  # smallest stripe / checker / colour-cell period on screen
MIN_DETAIL_PIXELS = 4.0  # smallest fine-noise cell on screen


def _bilinear_wrap(grid: np.ndarray, gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """Samples a tiling grid (gh, gw, C) at float grid coordinates gx, gy (N,) -> (N, C)."""
    gh, gw = grid.shape[:2]
    x0 = np.floor(gx)
    y0 = np.floor(gy)
    fx = (gx - x0)[:, None].astype(np.float32)
    fy = (gy - y0)[:, None].astype(np.float32)
    ix0 = x0.astype(np.int64) % gw
    iy0 = y0.astype(np.int64) % gh
    ix1 = (ix0 + 1) % gw
    iy1 = (iy0 + 1) % gh
    top = grid[iy0, ix0] * (1 - fx) + grid[iy0, ix1] * fx
    bottom = grid[iy1, ix0] * (1 - fx) + grid[iy1, ix1] * fx
    return top * (1 - fy) + bottom * fy


def random_colour(rng: np.random.Generator) -> np.ndarray:
    """One RGB colour (3,) float32, away from pure black/white so textures stay visible."""
    return rng.uniform(20, 235, size=3).astype(np.float32)


@dataclass(frozen=True)
class Texture:
    """A procedural texture: base pattern times (1 + fine brightness noise).

    The fine noise breaks the periodicity of stripes and checkers, so every patch of every
    texture is locally distinctive (something a correspondence model can lock onto).
    """

    kind: str  # one of TEXTURE_KINDS
    colours: np.ndarray  # (2, 3) float32: the pattern's two colours (noise: unused)
    colour_grid: np.ndarray  # (g, g, 3) float32: coarse colour field (noise only)
    detail: np.ndarray  # (d, d, 1) float32: zero-mean fine brightness noise
    period: float  # local units per stripe / checker cell / noise grid cell
    detail_period: float  # local units per fine-noise cell
    detail_amplitude: float  # relative brightness variation of the fine noise
    angle: float  # rotation of the pattern in radians

    @staticmethod
    def random(rng: np.random.Generator, unit_pixels: float, kind: str | None = None, scale: float = 1.0,
               palette: np.ndarray | None = None) -> Texture:
        """A random texture for a surface drawn at `unit_pixels` pixels per local unit.

        palette: (k, 3) colours to draw this texture's colours near (a distractor of similar
        colour: a surface that looks like another one); None: colours drawn freely.

        Feature sizes are drawn in local units (times `scale`) but never below a few pixels:
        finer patterns would alias into per-pixel noise that flickers as the object moves and
        that no JPEG or H.264 encoder keeps.
        """
        kind = kind or TEXTURE_KINDS[rng.integers(len(TEXTURE_KINDS))]
        if kind not in TEXTURE_KINDS:
            raise ValueError(f"unknown texture kind {kind!r}; known: {TEXTURE_KINDS}")
        grid_size = int(rng.integers(4, 9))
        if palette is None:
            colour = lambda: random_colour(rng)  # noqa: E731
        else:
            colour = lambda: np.clip(palette[rng.integers(len(palette))] + rng.normal(0, 12, 3), 0, 255).astype(np.float32)  # noqa: E731
        anchors = np.stack([colour() for _ in range(3)])  # (3, 3)
        # Each coarse cell mixes the three anchor colours: smooth multi-colour blotches.
        weights = rng.dirichlet(np.full(3, 0.6), size=(grid_size, grid_size))  # (g, g, 3)
        colour_grid = (weights @ anchors).astype(np.float32)
        detail = rng.standard_normal((16, 16, 1)).astype(np.float32)
        detail -= detail.mean()
        return Texture(
            kind=kind,
            colours=np.stack([colour(), colour()]),
            colour_grid=colour_grid,
            detail=detail,
            period=float(max(rng.uniform(0.25, 0.7) * scale, MIN_PERIOD_PIXELS / unit_pixels)),
            detail_period=float(max(rng.uniform(0.03, 0.08) * scale, MIN_DETAIL_PIXELS / unit_pixels)),
            detail_amplitude=float(rng.uniform(0.08, 0.2)),
            angle=float(rng.uniform(0, np.pi)),
        )

    def palette(self) -> np.ndarray:
        """(k, 3) float32: the colours this texture shows (its pattern's or its noise field's)."""
        return self.colour_grid.reshape(-1, 3) if self.kind == "noise" else self.colours

    def sample(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Colours at local coordinates u, v (N,) -> (N, 3) float32 in [0, 255]."""
        cos, sin = np.cos(self.angle), np.sin(self.angle)
        a = (u * cos + v * sin) / self.period
        b = (v * cos - u * sin) / self.period
        if self.kind == "noise":
            base = _bilinear_wrap(self.colour_grid, a, b)
        elif self.kind == "stripes":
            base = self.colours[np.floor(a).astype(np.int64) % 2]
        else:  # checker
            base = self.colours[(np.floor(a) + np.floor(b)).astype(np.int64) % 2]
        shade = _bilinear_wrap(self.detail, u / self.detail_period, v / self.detail_period)
        return np.clip(base * (1 + self.detail_amplitude * shade), 0, 255)


@dataclass(frozen=True)
class Shape:
    """A filled shape inside the unit disc, tested point-wise by `contains`.

    ellipse: params = (a, b) semi-axes.
    polygon: params = (k, 2) vertices, star-shaped around the origin, in increasing angle.
    blob: params = (m, 3) rows (harmonic, amplitude, phase) of the radius
        r(t) = base * (1 + sum amplitude * cos(harmonic * t + phase)), base in `radius_scale`.
    """

    kind: str  # one of SHAPE_KINDS
    params: np.ndarray
    radius_scale: float = 1.0  # blob only: makes max r(t) = 1

    @staticmethod
    def ellipse(a: float, b: float) -> Shape:
        if not (0 < a <= 1 and 0 < b <= 1):
            raise ValueError(f"ellipse semi-axes must lie in (0, 1], got {a}, {b}")
        return Shape("ellipse", np.array([a, b], dtype=np.float64))

    @staticmethod
    def random(rng: np.random.Generator) -> Shape:
        kind = SHAPE_KINDS[rng.integers(len(SHAPE_KINDS))]
        if kind == "ellipse":
            return Shape.ellipse(1.0, float(rng.uniform(0.35, 1.0)))
        if kind == "polygon":
            k = int(rng.integers(3, 10))
            # Jitter below half a step keeps every angular gap < pi, so the polygon stays
            # star-shaped around the origin (what `contains` relies on).
            steps = np.arange(k) + rng.uniform(-0.2, 0.2, size=k)
            angles = 2 * np.pi * steps / k + rng.uniform(0, 2 * np.pi)
            radii = rng.uniform(0.45, 1.0, size=k)
            radii /= radii.max()
            order = np.argsort(np.mod(angles, 2 * np.pi))
            angles, radii = np.mod(angles, 2 * np.pi)[order], radii[order]
            vertices = np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
            return Shape("polygon", vertices)
        harmonics = np.arange(2, 6, dtype=np.float64)
        amplitudes = rng.uniform(0, 0.22, size=harmonics.size) / np.sqrt(harmonics - 1)
        phases = rng.uniform(0, 2 * np.pi, size=harmonics.size)
        params = np.stack([harmonics, amplitudes, phases], axis=1)
        t = np.linspace(0, 2 * np.pi, 720, endpoint=False)
        peak = (1 + (amplitudes * np.cos(np.outer(t, harmonics) + phases)).sum(1)).max()
        return Shape("blob", params, radius_scale=float(1 / peak))

    def contains(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Boolean inside-test at local coordinates u, v (any equal shapes)."""
        if self.kind == "ellipse":
            a, b = self.params
            return (u / a) ** 2 + (v / b) ** 2 <= 1
        theta = np.arctan2(v, u)
        if self.kind == "blob":
            harmonics, amplitudes, phases = self.params.T
            wobble = (amplitudes * np.cos(theta[..., None] * harmonics + phases)).sum(-1)
            return np.hypot(u, v) <= self.radius_scale * (1 + wobble)
        # Polygon: find the angular sector (vertex i -> i+1) holding the point, then test the
        # side of that one edge (vertices run counter-clockwise in (u, v)).
        vertices = self.params
        start = np.arctan2(vertices[:, 1], vertices[:, 0])
        start = np.mod(start - start[0], 2 * np.pi) + start[0]
        theta = np.where(theta < start[0], theta + 2 * np.pi, theta)
        sector = np.clip(np.searchsorted(start, theta, side="right") - 1, 0, len(vertices) - 1)
        p0 = vertices[sector]
        p1 = vertices[(sector + 1) % len(vertices)]
        cross = (p1[..., 0] - p0[..., 0]) * (v - p0[..., 1]) - (p1[..., 1] - p0[..., 1]) * (u - p0[..., 0])
        return cross >= 0
