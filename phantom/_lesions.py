"""Shapes of implanted lesions and fracture features, in a body's crop.

Every function takes the crop's local coordinates ``(x, s, t)`` (see
``_bodyframe``) and returns boolean masks on the crop.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from phantom._bodyframe import BodyFrame, Profile, smooth_field

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


def _irregular(
    local: tuple[FloatArray, FloatArray, FloatArray],
    centre: tuple[float, float, float],
    radii: tuple[float, float, float],
    frame: BodyFrame,
    rng: np.random.Generator,
) -> BoolArray:
    """An ellipsoid whose surface wobbles by about 15 % (lesions are not spheres)."""
    x, s, t = local
    r2 = (
        ((x - centre[0]) / radii[0]) ** 2
        + ((s - centre[1]) / radii[1]) ** 2
        + ((t - centre[2]) / radii[2]) ** 2
    )
    sigma = tuple(2.5 / sp for sp in frame.spacing)
    wobble = 0.15 * smooth_field(x.shape, sigma, rng)
    return np.asarray(r2 <= (1.0 + wobble) ** 2)


def body_extent(
    body: BoolArray, local: tuple[FloatArray, FloatArray, FloatArray]
) -> tuple[float, float, float]:
    """Half-width (x), height (s) and AP depth (t) of the body, mm."""
    x, s, t = local
    return (
        float(np.abs(x[body]).max()) + 0.5,
        float(s[body].max() - s[body].min()),
        float(t[body].max() - t[body].min()),
    )


def focal(
    body: BoolArray,
    frame: BodyFrame,
    local: tuple[FloatArray, FloatArray, FloatArray],
    radius_mm: float | None,
    rng: np.random.Generator,
) -> BoolArray:
    """A focal lesion wholly inside the body, clear of its cortex."""
    _, _height, depth = body_extent(body, local)
    dist = ndimage.distance_transform_edt(body, sampling=frame.spacing)
    r = radius_mm if radius_mm is not None else float(rng.uniform(0.22, 0.32)) * depth
    r = float(np.clip(r, 2.0, max(0.8 * float(dist.max()) - 1.0, 2.0)))
    candidates = np.argwhere(dist >= r + 1.0)
    if len(candidates) == 0:
        candidates = np.argwhere(dist >= 0.9 * dist.max())
    c = candidates[rng.integers(len(candidates))]
    centre = (float(local[0][tuple(c)]), float(local[1][tuple(c)]), float(local[2][tuple(c)]))
    radii = (max(r, frame.spacing[0] * 0.75), r * 0.9, r)
    core = ndimage.binary_erosion(body, iterations=1)
    return _irregular(local, centre, radii, frame, rng) & core


def breakout(
    body: BoolArray,
    free: BoolArray,
    frame: BodyFrame,
    local: tuple[FloatArray, FloatArray, FloatArray],
    wall: str,
    radius_mm: float | None,
    extension_mm: float | None,
    rng: np.random.Generator,
) -> tuple[BoolArray, BoolArray]:
    """A lesion that destroys the ``wall`` ("anterior", "posterior" or "side") and grows out.

    Returns (inside part, outside part); ``free`` is where soft tissue may grow
    (not another body). A lesion through the side replaces that side of the body
    and its mass lies beside it: the crop must reach past the body's sides
    (``body_frame(..., lateral=True)``).
    """
    if wall not in ("anterior", "posterior", "side"):
        raise ValueError(f"wall must be 'anterior', 'posterior' or 'side', got {wall!r}")
    x, s, t = local
    half_width, height, depth = body_extent(body, local)
    # the side's draw comes first, so the front and back walls draw as they always did
    sign = (1.0 if rng.random() < 0.5 else -1.0) if wall == "side" else 0.0
    s0 = float(rng.uniform(-0.15, 0.15)) * height
    if wall == "side":
        centre = (sign * (half_width - 0.5), s0, float(np.median(t[body])))
    else:
        mid = np.abs(x) <= max(frame.spacing[0], 2.0)
        band = mid & body & (np.abs(s - s0) < max(0.15 * height, 2.0))
        posterior = wall == "posterior"
        wall_t = (
            float(t[band].max() if posterior else t[band].min())
            if band.any()
            else float(t[body].max() if posterior else t[body].min())
        )
        centre = (0.0, s0, wall_t)
    r = radius_mm if radius_mm is not None else float(rng.uniform(0.28, 0.38)) * depth
    r_lr = r if wall == "side" else max(r, 1.5 * frame.spacing[0])
    inside = _irregular(local, centre, (r_lr, 0.8 * r, r), frame, rng) & body
    ext = extension_mm if extension_mm is not None else float(rng.uniform(5.0, 8.0))
    if wall == "side":
        radii = (ext, 0.6 * height, 0.4 * depth)
        beyond = sign * x >= half_width
    elif wall == "posterior":
        radii = (min(8.0, half_width), 0.6 * height, ext)
        beyond = t >= centre[2] + 0.5
    else:
        radii = (0.75 * half_width, 0.6 * height, ext)
        beyond = t <= centre[2] - 0.5
    outside = _irregular(local, centre, radii, frame, rng) & beyond & free & ~body
    return inside, outside


def pedicles(
    body: BoolArray,
    free: BoolArray,
    frame: BodyFrame,
    local: tuple[FloatArray, FloatArray, FloatArray],
    prof: Profile,
) -> BoolArray:
    """Both pedicle roots: behind the upper posterior body, either side of the canal."""
    x, s, t = local
    half_width, height, _ = body_extent(body, local)
    s_top = float(s[body].min())
    offset = 0.6 * half_width
    lateral = np.abs(np.abs(x) - offset) <= max(4.0, 0.6 * frame.spacing[0])
    vertical = (s >= s_top + 0.1 * height) & (s <= s_top + 0.6 * height)
    behind = (t > prof.t_max - 2.0) & (t <= prof.t_max + 10.0)
    return lateral & vertical & behind & free & ~body


def convex_bulge(
    body: BoolArray, free: BoolArray, local: tuple[FloatArray, FloatArray, FloatArray], bulge_mm: float
) -> BoolArray:
    """Voxels that make the posterior wall bow backwards by up to ``bulge_mm``."""
    x, s, t = local
    half_width, height, _ = body_extent(body, local)
    s_mid = 0.5 * (float(s[body].min()) + float(s[body].max()))
    # Posterior wall per (k, 1 mm s-bin).
    s_bin = np.round(s - s_mid).astype(np.intp)
    offset = int(s_bin.min())
    nb = int(s_bin.max()) - offset + 1
    kidx = np.broadcast_to(np.arange(body.shape[0])[:, None, None], body.shape)
    wall = np.full((body.shape[0], nb), np.inf)
    post = np.full((body.shape[0], nb), -np.inf)
    np.maximum.at(post, (kidx[body], s_bin[body] - offset), t[body])
    wall = np.where(np.isfinite(post), post, np.inf)
    wall_here = wall[kidx, s_bin - offset]
    amount = (
        bulge_mm
        * np.clip(1.0 - ((s - s_mid) / (0.5 * height)) ** 2, 0.0, 1.0)
        * np.clip(1.0 - (x / half_width) ** 2, 0.0, 1.0)
    )
    return np.asarray((t > wall_here) & (t <= wall_here + amount) & free)


def endplate_band(
    body: BoolArray,
    local: tuple[FloatArray, FloatArray, FloatArray],
    prof: Profile,
    depth_mm: tuple[float, float],
    superior: bool,
    inferior: bool,
    frame: BodyFrame,
    rng: np.random.Generator,
    ap_range: tuple[float, float] = (0.0, 1.0),
) -> BoolArray:
    """A band parallel to the endplate(s), ``depth_mm`` below the surface, gently irregular."""
    x, s, t = local
    kidx = np.broadcast_to(np.arange(body.shape[0])[:, None, None], body.shape)
    b = prof.bins(t)
    top, bottom = prof.top[kidx, b], prof.bottom[kidx, b]
    wobble = 0.8 * smooth_field(x.shape, tuple(4.0 / sp for sp in frame.spacing), rng)
    u = (t - prof.t_min) / max(prof.t_max - prof.t_min, 1e-6)
    out = np.zeros(body.shape, dtype=bool)
    with np.errstate(invalid="ignore"):
        if superior:
            d = s - top + wobble
            out |= (d >= depth_mm[0]) & (d <= depth_mm[1])
        if inferior:
            d = bottom - s + wobble
            out |= (d >= depth_mm[0]) & (d <= depth_mm[1])
    return out & body & (u >= ap_range[0]) & (u <= ap_range[1])


def rim_of(mask: BoolArray) -> BoolArray:
    """Boundary voxels of ``mask`` (in-plane 4-connected)."""
    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = ndimage.generate_binary_structure(2, 1)
    return mask & ~ndimage.binary_erosion(mask, structure)
