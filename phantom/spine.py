"""The spine's curve: vertebrae laid out along a lordotic curve, T11 to the sacrum.

Coordinates as in :mod:`phantom.anatomy`: ``a`` (arc length, mm, down the
spine), ``t`` (mm along the curve's normal, posterior positive); sagittal-plane
points in phantom mm (``y`` inferior, ``z`` posterior). ``tissues`` and
``anatomy`` both place structures on it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.interpolate import PchipInterpolator
from scipy.spatial import cKDTree

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Segment:
    """One vertebra along the curve: body from ``a0`` to ``a1`` mm."""

    name: str
    label: int  # VerSe label; 0 for unlabelled sacral segments
    a0: float
    a1: float
    depth: float  # AP, mm
    half_width: float  # mm
    wedge: float  # slope of each endplate against the curve's normal (> 0: taller in front)

    def top(self, concave: FloatArray, tn: FloatArray) -> FloatArray:
        """Curve position of the superior endplate at AP offsets ``tn``, sunk by ``concave`` (mm)."""
        return self.a0 + concave + self.wedge * tn

    def bottom(self, concave: FloatArray, tn: FloatArray) -> FloatArray:
        """Curve position of the inferior endplate at AP offsets ``tn``, sunk by ``concave`` (mm)."""
        return self.a1 - concave - self.wedge * tn


# name, label, body height, following disc height, AP depth, half-width, axis angle (deg), wedge (mm).
# The lordotic curve alone wedges the bodies; the wedge (anterior minus posterior height over the
# body's depth, beyond the curve's) brings each level's Ha/Hp, measured at 20 % and 80 % of the
# depth, to the means of the shared VB2/VB3 truth masks (T12 0.98, L1 1.02, L2 1.04, L3 1.05,
# L4 1.08, L5 1.18), and the body heights give their posterior walls' progression (L4 and L5
# shorter than L3), so that a body's neighbours predict its normal shape as they do in patients.
_LAYOUT: tuple[tuple[str, int, float, float, float, float, float, float], ...] = (
    ("T11", 18, 23.0, 6.0, 29.0, 19.0, -8.0, 0.0),
    ("T12", 19, 25.5, 7.0, 30.0, 20.0, -7.0, -1.1),
    ("L1", 20, 25.8, 8.0, 32.0, 21.0, -6.0, -0.8),
    ("L2", 21, 26.3, 9.0, 33.0, 22.0, -3.0, -0.65),
    ("L3", 22, 27.0, 10.0, 35.0, 23.0, 2.0, -1.3),
    ("L4", 23, 26.0, 11.0, 36.0, 24.0, 9.0, -0.2),
    ("L5", 24, 27.0, 11.0, 36.0, 25.0, 18.0, 1.0),
    ("S1", 26, 24.0, 2.5, 34.0, 24.0, 32.0, 0.0),
    ("S2", 0, 18.0, 2.0, 26.0, 20.0, 40.0, 0.0),
    ("S3", 0, 15.0, 2.0, 20.0, 16.0, 44.0, 0.0),
    ("S4", 0, 13.0, 2.0, 15.0, 12.0, 44.0, 0.0),
)


@dataclass(frozen=True)
class Spine:
    """The curve (dense samples in the sagittal plane) and the vertebrae on it."""

    curve_y: FloatArray
    curve_z: FloatArray
    curve_a: FloatArray
    curve_phi: FloatArray  # radians; 0 = straight down, > 0 = heading posterior
    segments: tuple[Segment, ...]
    conus_a: float
    back_poly: tuple[float, ...]  # skin of the back: z = polyval(back_poly, y), mm

    def depth_below_skin(self, y: FloatArray, z: FloatArray) -> FloatArray:
        """mm from the skin of the back, anterior positive (negative outside the body)."""
        return np.asarray(np.polyval(self.back_poly, y) - z)

    def segment(self, name: str) -> Segment:
        return next(s for s in self.segments if s.name == name)

    def curve_coords(self, y: FloatArray, z: FloatArray) -> tuple[FloatArray, FloatArray]:
        """``(a, t)`` of sagittal-plane points: nearest curve sample, signed normal offset."""
        tree = cKDTree(np.column_stack([self.curve_y, self.curve_z]))
        _, idx = tree.query(np.column_stack([y.ravel(), z.ravel()]))
        phi = self.curve_phi[idx]
        dy, dz = y.ravel() - self.curve_y[idx], z.ravel() - self.curve_z[idx]
        along = dy * np.cos(phi) + dz * np.sin(phi)
        a = self.curve_a[idx] + along
        t = dz * np.cos(phi) - dy * np.sin(phi)
        return a.reshape(y.shape), t.reshape(y.shape)


def build_spine(top_y: float, top_z: float, scale: float = 1.0) -> Spine:
    """Lay the vertebrae out along a lordotic curve starting at (``top_y``, ``top_z``) mm."""
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    segments = []
    a = 0.0
    anchors_a, anchors_phi = [], []
    for name, label, h, disc, depth, hw, phi, wedge in _LAYOUT:
        segments.append(
            Segment(name, label, a, a + h * scale, depth * scale, hw * scale, wedge / (2.0 * depth))
        )
        anchors_a.append(a + 0.5 * h * scale)
        anchors_phi.append(np.deg2rad(phi))
        a += (h + disc) * scale
    curve_a = np.arange(-40.0, a + 40.0, 0.25)
    phi_of = PchipInterpolator(anchors_a, anchors_phi, extrapolate=True)
    phi = phi_of(np.clip(curve_a, anchors_a[0], anchors_a[-1]))
    step = np.diff(curve_a, prepend=curve_a[0])
    y = np.cumsum(step * np.cos(phi))
    z = np.cumsum(step * np.sin(phi))
    i0 = int(np.argmin(np.abs(curve_a)))
    y, z = y - y[i0] + top_y, z - z[i0] + top_z
    l1, l2 = segments[2], segments[3]
    conus = 0.5 * (l1.a1 + l2.a0)
    l3 = segments[4]
    z_ref = float(np.interp(0.5 * (l3.a0 + l3.a1), curve_a, z))
    # The back follows the lordosis only partly: a smooth curve 55-60 mm behind the laminae.
    depth = np.interp(curve_a, [0.5 * (s.a0 + s.a1) for s in segments], [s.depth for s in segments])
    behind = depth / 2 + 20.0 + 56.0 * scale + 0.25 * (z_ref - z)
    skin_y = y + behind * -np.sin(phi)
    skin_z = z + behind * np.cos(phi)
    keep = (curve_a > segments[0].a0) & (curve_a < segments[8].a1)
    poly = np.polyfit(skin_y[keep], skin_z[keep], 3)
    return Spine(y, z, curve_a, phi, tuple(segments), conus, tuple(float(c) for c in poly))
