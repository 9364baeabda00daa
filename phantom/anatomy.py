"""Synthetic lumbar-spine anatomy as a tissue map, T11 to the sacrum (pure numpy).

The spine (:mod:`phantom.spine`) is a curve in the mid-sagittal plane with lordosis; every structure
is placed in the curve's own coordinates: ``a`` (arc length, mm, down the
spine), ``t`` (mm along the curve's normal, posterior positive) and ``x``
(mm, patient left positive). Bodies and discs therefore tilt with the curve
and discs open anteriorly. :func:`tissue_map` classifies any set of points
(sagittal or axial grids alike) into :class:`Tissue` codes and VerSe body labels.

Points are given in phantom mm: ``x`` left (LPS +x), ``y`` inferior (LPS -z),
``z`` posterior (LPS +y), with the origin at the top-anterior corner of the
field of view.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from phantom.spine import Spine
from phantom.tissues import Tissue, anterior, neural

FloatArray = npt.NDArray[np.float64]


def tissue_map(
    spine: Spine, x: FloatArray, a: FloatArray, t: FloatArray, below_skin: FloatArray | None = None
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int16]]:
    """Tissue code and vertebral-body label (0 elsewhere) of points in curve coordinates.

    ``x``, ``a`` and ``t`` broadcast against each other (a sagittal stack passes
    ``x`` of shape (n, 1, 1) and ``a``, ``t`` of shape (1, rows, cols)).
    ``below_skin`` (:meth:`Spine.depth_below_skin`) places the back's skin;
    without it the skin follows the spine at a fixed depth.
    """
    shape = np.broadcast_shapes(x.shape, a.shape, t.shape)
    segs = spine.segments
    # Profiles along the spine, computed before broadcasting (they depend on a only).
    mids = np.array([0.5 * (s.a0 + s.a1) for s in segs])
    ends = [-40.0, segs[6].a0, segs[-1].a1 + 40]
    prof = {
        "depth": np.interp(a, mids, [s.depth for s in segs]),
        "half_w": np.interp(a, mids, [s.half_width for s in segs]),
        "sac_r_t": np.where(a < segs[8].a0, 7.0, np.clip(7.0 - (a - segs[8].a0) * 0.4, 0.0, 7.0)),
        "sac_r_x": np.where(a < segs[8].a0, 10.0, np.clip(10.0 - (a - segs[8].a0) * 0.5, 0.0, 10.0)),
        "skin_gap": np.interp(a, ends, [54.0, 60.0, 44.0]),
        "fat_depth": np.interp(a, ends, [16.0, 22.0, 14.0]),
        "psoas_r": np.interp(a, [segs[1].a0, segs[6].a1], [6.0, 22.0]),
    }
    prof["sac_c"] = prof["depth"] / 2 + 9.0
    prof["lam"] = prof["sac_c"] + 7.0 + np.where(a > segs[7].a0, 2.0, 4.0)  # anterior face of the lamina
    prof["skin"] = prof["lam"] + prof["skin_gap"]
    prof["below"] = prof["skin"] - t if below_skin is None else below_skin
    x, a, t = (np.broadcast_to(v, shape) for v in (x, a, t))
    depth, half_w, sac_r_t, sac_r_x, fat_depth, psoas_r, sac_c, lam, below = (
        np.broadcast_to(prof[k], shape)
        for k in ("depth", "half_w", "sac_r_t", "sac_r_x", "fat_depth", "psoas_r", "sac_c", "lam", "below")
    )
    tissue = np.full(shape, Tissue.AIR, dtype=np.uint8)
    labels = np.zeros(shape, dtype=np.int16)
    ax = np.abs(x)

    # Outside-in painting: later assignments win.
    inside = below >= 0
    tissue[inside] = Tissue.FAT
    tissue[inside & (below < 1.2)] = Tissue.SKIN
    # Erector spinae and multifidus: one oval either side of the spinous processes.
    oval = ((ax - 32.0) / 31.0) ** 2 + ((t - lam - 20.0) / 27.0) ** 2 <= 1.0
    muscle = inside & oval & (t > lam - np.where(ax > 14, 14.0, 0.0)) & (below > fat_depth) & (ax > 2.5)
    tissue[muscle] = Tissue.MUSCLE
    _interspinous(tissue, x, a, t, spine, lam, below > 3.0)
    anterior(tissue, x, a, t, spine, depth, half_w)
    # Psoas beside the lumbar bodies, growing downwards.
    psoas = ((ax - (half_w + psoas_r * 0.8)) / psoas_r) ** 2 + ((t + 2.0) / (psoas_r * 0.9)) ** 2 <= 1.0
    tissue[psoas & (a > segs[1].a0) & (a < segs[7].a0)] = Tissue.MUSCLE
    _posterior_elements(tissue, x, a, t, spine, depth, lam)
    # Canal: epidural fat, thecal sac with CSF, cord and roots.
    canal = (ax < 12.0) & (t > depth / 2) & (t < lam)
    tissue[canal] = Tissue.FAT
    r2 = (x / np.maximum(sac_r_x, 1e-3)) ** 2 + ((t - sac_c) / np.maximum(sac_r_t, 1e-3)) ** 2
    sac = (r2 <= 1.0) & (sac_r_t > 0.5)
    tissue[sac] = Tissue.CSF
    neural(tissue, x, a, t, spine, sac, sac_c)
    _vertebrae(tissue, labels, x, a, t, spine)
    return tissue, labels


def body_labels(spine: Spine, x: FloatArray, a: FloatArray, t: FloatArray) -> npt.NDArray[np.int16]:
    """Only the vertebral-body labels of points in curve coordinates (broadcast like :func:`tissue_map`)."""
    shape = np.broadcast_shapes(x.shape, a.shape, t.shape)
    labels = np.zeros(shape, dtype=np.int16)
    x, a, t = (np.broadcast_to(v, shape) for v in (x, a, t))
    _vertebrae(np.zeros(shape, dtype=np.uint8), labels, x, a, t, spine)
    return labels


def _vertebrae(
    tissue: npt.NDArray[np.uint8],
    labels: npt.NDArray[np.int16],
    x: FloatArray,
    a: FloatArray,
    t: FloatArray,
    spine: Spine,
) -> None:
    segs = spine.segments
    for n, s in enumerate(segs):
        hd = s.depth / 2
        near = (a > s.a0 - 14) & (a < s.a1 + 14) & (np.abs(t) < hd + 6) & (np.abs(x) < s.half_width + 6)
        if not near.any():
            continue
        xn, an, tn = x[near], a[near], t[near]
        # Boxy axial outline, flatter behind.
        expo = np.where(tn > 0, 4.0, 2.4)
        shape = np.abs(xn / s.half_width) ** expo + np.abs(tn / hd) ** expo
        r2 = np.clip(shape, 0, 1)
        concave = 1.2 * (1.0 - r2)
        top, bottom = s.top(concave, tn), s.bottom(concave, tn)
        body = (shape <= 1.0) & (an >= top) & (an <= bottom)
        side_depth = (1.0 - shape) * min(s.half_width, hd) / expo
        rim_depth = np.minimum(np.minimum(an - top, bottom - an), side_depth)
        tis = tissue[near]
        if n + 1 < len(segs):
            nxt = segs[n + 1]
            disc_h = nxt.a0 - s.a1
            bulge = 1.2 * np.clip(1.0 - ((an - 0.5 * (s.a1 + nxt.a0)) / (0.5 * disc_h + 1e-6)) ** 2, 0, 1)
            disc_shape = np.abs(xn / (s.half_width + bulge)) ** 2.4 + np.abs(tn / (hd + bulge)) ** 2.4
            disc = (disc_shape <= 1.0) & (an > bottom) & (an < nxt.top(concave, tn))
            mid = 0.5 * (s.a1 + nxt.a0)
            nucleus = disc & (
                (xn / (0.6 * s.half_width)) ** 2
                + ((tn + 1.5) / (0.55 * hd)) ** 2
                + ((an - mid) / (0.42 * disc_h)) ** 2
                <= 1.0
            )
            tis[disc] = Tissue.ANNULUS
            degenerated = s.name == "L5" or n >= 7
            tis[nucleus] = Tissue.DEGENERATED_NUCLEUS if degenerated else Tissue.NUCLEUS
            cleft = nucleus & (np.abs(an - mid) < 0.45) & (disc_h > 5)
            tis[cleft] = Tissue.ANNULUS
        tis[body] = Tissue.MARROW
        tis[body & (rim_depth < 1.1)] = Tissue.CORTEX
        vein = (
            body
            & (np.abs(xn) < 2.5)
            & (tn > hd - 9)
            & (np.abs(an - 0.5 * (s.a0 + s.a1)) < 1.3)
            & (rim_depth >= 1.1)
        )
        tis[vein] = Tissue.VEIN
        tissue[near] = tis
        if s.label:
            lab = labels[near]
            lab[body] = s.label
            labels[near] = lab


def _posterior_elements(
    tissue: npt.NDArray[np.uint8],
    x: FloatArray,
    a: FloatArray,
    t: FloatArray,
    spine: Spine,
    depth: FloatArray,
    lam: FloatArray,
) -> None:
    for n, s in enumerate(spine.segments[:8]):
        h = s.a1 - s.a0
        disc = spine.segments[n + 1].a0 - s.a1
        sel = (
            (a > s.a0)
            & (a < s.a1 + disc + 0.3 * h + 12)
            & (t > depth / 2 - 3)
            & (t < lam + 31)
            & (np.abs(x) < 27)
        )
        if not sel.any():
            continue
        xs, as_, ts, lm, dp = np.abs(x[sel]), a[sel], t[sel], lam[sel], depth[sel]
        tis = tissue[sel]

        def box(
            x0: float,
            x1: float,
            t0: FloatArray,
            t1: FloatArray,
            a0: FloatArray | float,
            a1: FloatArray | float,
            xs: FloatArray = xs,
            as_: FloatArray = as_,
            ts: FloatArray = ts,
            tis: npt.NDArray[np.uint8] = tis,
        ) -> None:
            outer = (xs > x0) & (xs < x1) & (ts > t0) & (ts < t1) & (as_ > a0) & (as_ < a1)
            inner = (
                (xs > x0 + 1.2 * (x0 > 0))
                & (xs < x1 - 1.2)
                & (ts > t0 + 1.2)
                & (ts < t1 - 1.2)
                & (as_ > a0 + 1.2)
                & (as_ < a1 - 1.2)
            )
            tis[outer] = Tissue.CORTEX
            tis[inner] = Tissue.MARROW

        box(11.0, 19.0, dp / 2 - 2, lm, s.a0 + 0.1 * h, s.a0 + 0.55 * h)  # pedicles
        box(12.0, 26.0, lm - 6, lm + 12, s.a0 + 0.2 * h, s.a1 + disc + 0.2 * h)  # articular pillars
        box(0.0, 16.0, lm, lm + 6, s.a0 + 0.2 * h, s.a1 + 0.3 * disc)  # lamina
        # Spinous process: narrow neck at the lamina, broader and rounded towards its tip.
        depth_n = np.clip((ts - lm) / 28.0, 0.0, 1.0)
        centre = 0.5 * (s.a0 + s.a1) + 0.2 * h + 0.3 * (ts - lm)
        half = h * (0.3 + 0.14 * depth_n) * np.sqrt(np.clip(1.0 - ((ts - lm - 14.0) / 15.0) ** 8, 0.0, 1.0))
        spine_bone = (xs < 3.5) & (ts >= lm) & (np.abs(as_ - centre) < half)
        tis[spine_bone] = Tissue.CORTEX
        tis[
            spine_bone & (xs < 2.3) & (np.abs(as_ - centre) < half - 1.3) & (ts > lm + 1.2) & (ts < lm + 27.5)
        ] = Tissue.MARROW
        # Exiting nerve root in the upper neural foramen, below this level's pedicle.
        root = (
            ((xs - 15.5) / 3.5) ** 2
            + ((as_ - (s.a1 - 0.2 * h)) / 2.8) ** 2
            + ((ts - dp / 2 - 5.0) / 3.0) ** 2
        )
        tis[(root <= 1.0) & (tis != Tissue.CORTEX) & (tis != Tissue.MARROW)] = Tissue.ROOT
        facet = (
            (np.abs(as_ - (s.a1 + 0.5 * disc)) < 0.6) & (xs > 14) & (xs < 24) & (ts > lm - 5) & (ts < lm + 11)
        )
        tis[facet] = Tissue.FACET_FLUID
        tissue[sel] = tis


def _interspinous(
    tissue: npt.NDArray[np.uint8],
    x: FloatArray,
    a: FloatArray,
    t: FloatArray,
    spine: Spine,
    lam: FloatArray,
    deep: npt.NDArray[np.bool_],
) -> None:
    ax = np.abs(x)
    span = (a > spine.segments[0].a0 - 40) & (a < spine.segments[7].a1) & deep
    # Interspinous ligament between the spinous processes, supraspinous along their tips.
    tissue[span & (ax < 2.5) & (t >= lam) & (t < lam + 34)] = Tissue.FAT
    tissue[span & (ax < 0.6) & (t >= lam) & (t < lam + 30)] = Tissue.LIGAMENT
    tissue[span & (ax < 3.0) & (t >= lam + 30) & (t < lam + 32.5)] = Tissue.LIGAMENT
    # Ligamentum flavum between the laminae (the laminae overwrite it at their levels).
    tissue[(ax < 12.0) & (t >= lam) & (t < lam + 4)] = Tissue.LIGAMENT
