"""A vertebral body's own sagittal frame, its height profile and its collapse.

Arrays are indexed ``[k, j, i]`` on a sagittal grid: ``k`` left-right, ``j``
superior to inferior, ``i`` anterior to posterior (Image Orientation
``0\\1\\0\\0\\0\\-1``, the shared data and the phantom). Bodies are tilted by
the lordosis, so heights are taken along the body's own superior-inferior axis
``s`` (mm, pointing inferior) against its anterior-posterior axis ``t`` (mm,
pointing posterior); ``x`` is the left-right offset in mm.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage

FloatArray = npt.NDArray[np.float64]
# Where the analysis measures a body's heights (analysis.vertebrae.measure), so that an implant's
# grade is the one the same measurement of the truth gives
HEIGHT_FRACTIONS = (0.2, 0.5, 0.8)
BoolArray = npt.NDArray[np.bool_]
# Disc space a collapsing endplate may stretch into, mm.
_MAX_DISC_MARGIN_MM = 10.0
_PAD_MM = 16.0


@dataclass(frozen=True)
class BodyFrame:
    """Where one body is and how it is tilted; ``crop`` covers it plus margins."""

    label: int
    spacing: tuple[float, float, float]
    centre_mm: tuple[float, float, float]  # (k, j, i) mm
    axis_s: tuple[float, float]  # (j, i) unit vector, inferior
    axis_t: tuple[float, float]  # (j, i) unit vector, posterior
    crop: tuple[slice, slice, slice]

    def local(self) -> tuple[FloatArray, FloatArray, FloatArray]:
        """``(x, s, t)`` mm of every voxel of the crop."""
        kk, jj, ii = np.meshgrid(
            *(np.arange(sl.start, sl.stop, dtype=float) for sl in self.crop), indexing="ij"
        )
        dk = kk * self.spacing[0] - self.centre_mm[0]
        dj = jj * self.spacing[1] - self.centre_mm[1]
        di = ii * self.spacing[2] - self.centre_mm[2]
        s = dj * self.axis_s[0] + di * self.axis_s[1]
        t = dj * self.axis_t[0] + di * self.axis_t[1]
        return dk, s, t

    def to_index(self, s: FloatArray, t: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Crop-relative ``(j, i)`` continuous indices of local ``(s, t)`` mm."""
        j_mm = self.centre_mm[1] + s * self.axis_s[0] + t * self.axis_t[0]
        i_mm = self.centre_mm[2] + s * self.axis_s[1] + t * self.axis_t[1]
        return j_mm / self.spacing[1] - self.crop[1].start, i_mm / self.spacing[2] - self.crop[2].start


def body_frame(
    labels: npt.NDArray[np.integer], label: int, spacing: tuple[float, float, float], lateral: bool = False
) -> BodyFrame:
    """The body's frame; ``lateral`` widens the crop beyond its sides too (a mass beside it)."""
    mask = labels == label
    idx = np.argwhere(mask)
    if idx.size == 0:
        raise ValueError(f"labels has no voxel with label {label}")
    mm = idx * np.asarray(spacing)
    centre = mm.mean(axis=0)
    si = _spine_axis(labels, label, centre, spacing)
    ap = np.array([-si[1], si[0]])
    ap = ap if ap[1] > 0 else -ap
    pad = np.ceil(_PAD_MM / np.asarray(spacing)).astype(int)
    lo = np.maximum(idx.min(axis=0) - pad, 0)
    hi = np.minimum(idx.max(axis=0) + pad + 1, labels.shape)
    if not lateral:
        lo[0], hi[0] = idx[:, 0].min(), idx[:, 0].max() + 1
    crop = (slice(int(lo[0]), int(hi[0])), slice(int(lo[1]), int(hi[1])), slice(int(lo[2]), int(hi[2])))
    return BodyFrame(
        label=label,
        spacing=(float(spacing[0]), float(spacing[1]), float(spacing[2])),
        centre_mm=(float(centre[0]), float(centre[1]), float(centre[2])),
        axis_s=(float(si[0]), float(si[1])),
        axis_t=(float(ap[0]), float(ap[1])),
        crop=crop,
    )


def _spine_axis(
    labels: npt.NDArray[np.integer], label: int, centre: FloatArray, spacing: tuple[float, float, float]
) -> FloatArray:
    """Unit (j, i) vector along the spine at this body, pointing inferior.

    The line through the neighbouring bodies' centroids is robust where a
    body's own shape (square, or collapsed) says little about its tilt.
    """
    sp = np.asarray(spacing)
    centroids = {}
    for lb in np.unique(labels):
        if lb > 0:
            centroids[int(lb)] = np.argwhere(labels == lb).mean(axis=0) * sp
    above = [c for lb, c in centroids.items() if lb != label and c[1] < centre[1]]
    below = [c for lb, c in centroids.items() if lb != label and c[1] > centre[1]]
    up = min(above, key=lambda c: float(np.linalg.norm(c - centre)), default=centre)
    down = min(below, key=lambda c: float(np.linalg.norm(c - centre)), default=centre)
    vec = (down - up)[1:]
    norm = float(np.linalg.norm(vec))
    if norm < 1e-6:
        return np.array([1.0, 0.0])
    vec = vec / norm
    return vec if vec[0] > 0 else -vec


@dataclass(frozen=True)
class Profile:
    """Per ``(k slice, t bin)`` column: body top and bottom and free disc space, mm."""

    t0: float
    bin_mm: float
    top: FloatArray  # (nk, nbins), +inf where the column holds no body
    bottom: FloatArray
    space_above: FloatArray
    space_below: FloatArray
    t_min: float  # AP extent on the mid slab
    t_max: float

    def bins(self, t: FloatArray) -> npt.NDArray[np.intp]:
        return np.clip(((t - self.t0) / self.bin_mm).astype(np.intp), 0, self.top.shape[1] - 1)

    def heights_mm(self, mid_k: int, fractions: tuple[float, ...] = HEIGHT_FRACTIONS) -> tuple[float, ...]:
        """Heights at fractions of the AP depth on the mid slab (anterior, middle, posterior)."""
        out = []
        for f in fractions:
            b = int((self.t_min + f * (self.t_max - self.t_min) - self.t0) / self.bin_mm)
            cols = slice(max(b - 1, 0), min(b + 2, self.top.shape[1]))
            h = self.bottom[mid_k, cols] - self.top[mid_k, cols]
            h = h[np.isfinite(h)]
            out.append(float(np.median(h)) + self.bin_mm if h.size else 0.0)
        return tuple(out)


def profile(frame: BodyFrame, crop_labels: npt.NDArray[np.integer]) -> Profile:
    _x, s, t = frame.local()
    body = crop_labels == frame.label
    other = (crop_labels != 0) & ~body
    bin_mm = min(frame.spacing[1], frame.spacing[2])
    t0 = float(t[body].min()) - bin_mm
    nb = int((t[body].max() - t0) / bin_mm) + 2
    nk = body.shape[0]
    kidx = np.broadcast_to(np.arange(nk)[:, None, None], body.shape)
    b = np.clip(((t - t0) / bin_mm).astype(np.intp), 0, nb - 1)
    top = np.full((nk, nb), np.inf)
    bottom = np.full((nk, nb), -np.inf)
    np.minimum.at(top, (kidx[body], b[body]), s[body])
    np.maximum.at(bottom, (kidx[body], b[body]), s[body])
    above = np.full((nk, nb), -np.inf)
    below = np.full((nk, nb), np.inf)
    up = other & (s < 0)
    down = other & (s > 0)
    np.maximum.at(above, (kidx[up], b[up]), s[up])
    np.minimum.at(below, (kidx[down], b[down]), s[down])
    with np.errstate(invalid="ignore"):
        space_above = np.clip(top - above - bin_mm, bin_mm, _MAX_DISC_MARGIN_MM)
        space_below = np.clip(below - bottom - bin_mm, bin_mm, _MAX_DISC_MARGIN_MM)
    mid = mid_slice(frame, crop_labels)
    tm = t[mid][body[mid]]
    return Profile(
        t0=t0,
        bin_mm=bin_mm,
        top=top,
        bottom=bottom,
        space_above=np.nan_to_num(space_above, nan=bin_mm),
        space_below=np.nan_to_num(space_below, nan=bin_mm),
        t_min=float(tm.min()),
        t_max=float(tm.max()),
    )


def mid_slice(frame: BodyFrame, crop_labels: npt.NDArray[np.integer]) -> int:
    """Crop-relative k of the slice through the body's centre that holds body voxels."""
    counts = (crop_labels == frame.label).sum(axis=(1, 2))
    centre = round(frame.centre_mm[0] / frame.spacing[0]) - frame.crop[0].start
    order = np.argsort(np.abs(np.arange(len(counts)) - centre))
    return int(next(k for k in order if counts[k] > 0))


# Fractional collapse of a column from normalised AP position u (0 anterior,
# 1 posterior) and lateral position v (-1..1).
LossProfile = Callable[[FloatArray, FloatArray], FloatArray]


def collapse(
    frame: BodyFrame,
    crop_images: list[FloatArray],
    crop_labels: npt.NDArray[np.integer],
    loss: LossProfile,
    top_share: float,
) -> tuple[list[FloatArray], npt.NDArray[np.integer], Profile]:
    """Collapse the body's columns by ``loss`` of their height; the discs fill the gap.

    ``top_share`` of the lost height is taken at the superior endplate. Returns
    the new crops and the profile of the collapsed body.
    """
    prof = profile(frame, crop_labels)
    x, s, t = frame.local()
    nk = crop_labels.shape[0]
    kidx = np.broadcast_to(np.arange(nk)[:, None, None], s.shape)
    b = prof.bins(t)
    top, bottom = prof.top[kidx, b], prof.bottom[kidx, b]
    has = np.isfinite(top) & np.isfinite(bottom)
    height = np.where(has, bottom - top, 0.0)
    half_width = max(float(np.abs(x[crop_labels == frame.label]).max()), 1.0)
    u = np.clip((t - prof.t_min) / max(prof.t_max - prof.t_min, 1e-6), 0.0, 1.0)
    lost = np.clip(loss(u, np.clip(x / half_width, -1.0, 1.0)), 0.0, 0.9) * height
    d_top, d_bot = lost * top_share, lost * (1.0 - top_share)
    m_a, m_b = prof.space_above[kidx, b], prof.space_below[kidx, b]
    new_top, new_bot = top + d_top, bottom - d_bot
    src = s.copy()
    zone_a = has & (s >= top - m_a) & (s < new_top)
    src[zone_a] = (top - m_a)[zone_a] + (s - (top - m_a))[zone_a] * (m_a / (m_a + d_top))[zone_a]
    zone_b = has & (s >= new_top) & (s <= new_bot)
    scale = np.where(new_bot > new_top, height / np.maximum(new_bot - new_top, 1e-6), 1.0)
    src[zone_b] = top[zone_b] + (s - new_top)[zone_b] * scale[zone_b]
    zone_c = has & (s > new_bot) & (s <= bottom + m_b)
    src[zone_c] = bottom[zone_c] + (s - new_bot)[zone_c] * (m_b / (m_b + d_bot))[zone_c]
    images, labels = remap(frame, crop_images, crop_labels, src, t)
    return images, labels, profile(frame, labels)


def remap(
    frame: BodyFrame,
    crop_images: list[FloatArray],
    crop_labels: npt.NDArray[np.integer],
    src_s: FloatArray,
    src_t: FloatArray,
) -> tuple[list[FloatArray], npt.NDArray[np.integer]]:
    """Resample the crops so each voxel takes the value found at local ``(src_s, src_t)``."""
    jj, ii = frame.to_index(src_s, src_t)
    kk = np.broadcast_to(np.arange(crop_labels.shape[0], dtype=float)[:, None, None], jj.shape)
    coords = np.stack([kk, jj, ii])
    images = [ndimage.map_coordinates(im, coords, order=1, mode="nearest") for im in crop_images]
    labels = ndimage.map_coordinates(crop_labels, coords, order=0, mode="nearest").astype(crop_labels.dtype)
    return images, labels


def smooth_field(
    shape: tuple[int, ...], sigma_vox: tuple[float, ...], rng: np.random.Generator
) -> FloatArray:
    """Zero-mean, unit-std smooth random field (lesion margins and heterogeneity)."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma_vox)
    std = float(field.std())
    return field / std if std > 0 else field


def retropulse(
    frame: BodyFrame,
    ims: list[FloatArray],
    lab: np.ndarray,
    prof: Profile,
    local: tuple[FloatArray, FloatArray, FloatArray],
    shift_mm: float,
) -> tuple[list[FloatArray], np.ndarray]:
    """Push the posterosuperior corner of the body back into the canal."""
    _, s, t = local
    body = lab == frame.label
    height = float(s[body].max() - s[body].min())
    u = (t - prof.t_min) / max(prof.t_max - prof.t_min, 1e-6)
    fragment = body & (u >= 0.78) & (s <= float(s[body].min()) + 0.45 * height)
    moved = remap(frame, [fragment.astype(float)], lab, s, t - shift_mm)[0][0] > 0.5
    new_ims, _ = remap(frame, ims, lab, s, np.where(moved, t - shift_mm, t))
    out = [np.where(moved, nim, im) for im, nim in zip(ims, new_ims, strict=True)]
    return out, np.where(moved, frame.label, lab).astype(lab.dtype)
