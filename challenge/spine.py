"""An independent synthetic lumbar spine: tissue map and MR signal on a 1 mm canonical grid.

Arrays are indexed ``[lr, si, ap]`` (left-right, superior->inferior,
anterior->posterior), 1 mm voxels. Bodies are rounded super-ellipsoids tilted
along a lordotic curve that bends back into a tilted sacrum; discs, a dural
sac with cord and cauda equina, pedicles, laminae and spinous processes,
paraspinal muscle, psoas, a prevertebral vessel, fat and a posterior surface
coil's fall-off are drawn. Signal levels are this module's own, jittered per
study.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from enum import IntEnum

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from analysis.volume import LEVEL_LABELS, Sequence

FloatArray = npt.NDArray[np.float64]


class T(IntEnum):
    AIR = 0
    FAT = 1
    MUSCLE = 2
    MARROW = 3
    CORTEX = 4
    NUCLEUS = 5
    ANNULUS = 6
    CSF = 7
    NERVE = 8
    LIGAMENT = 9
    VESSEL = 10
    BOWEL = 11
    SKIN = 12


# (T1, T2, STIR) arbitrary units; jittered +/- 10 % per study
SIGNAL: dict[T, tuple[float, float, float]] = {
    T.AIR: (8.0, 8.0, 8.0),
    T.FAT: (980.0, 780.0, 55.0),
    T.MUSCLE: (360.0, 260.0, 230.0),
    T.MARROW: (640.0, 430.0, 150.0),
    T.CORTEX: (70.0, 55.0, 45.0),
    T.NUCLEUS: (370.0, 880.0, 720.0),
    T.ANNULUS: (290.0, 230.0, 190.0),
    T.CSF: (240.0, 1250.0, 1050.0),
    T.NERVE: (440.0, 430.0, 360.0),
    T.LIGAMENT: (110.0, 90.0, 75.0),
    T.VESSEL: (60.0, 70.0, 60.0),
    T.BOWEL: (420.0, 560.0, 380.0),
    T.SKIN: (520.0, 380.0, 260.0),
}
_COLUMN = {Sequence.T1: 0, Sequence.T2: 1, Sequence.STIR: 2}
LEVELS = ("T11", "T12", "L1", "L2", "L3", "L4", "L5", "S1")


@dataclass(frozen=True)
class Body:
    level: str
    label: int  # VerSe; 0 for the sacral segments below S1
    si: float
    ap: float
    tilt: float  # radians, tangent angle from the SI axis (positive: lower end more posterior)
    height: float
    depth: float
    width: float
    wedge: float  # anterior minus posterior height (mm)


@dataclass(frozen=True)
class Spine:
    tissue: npt.NDArray[np.int8]
    labels: npt.NDArray[np.int16]
    bodies: tuple[Body, ...]
    texture: FloatArray  # multiplicative marrow heterogeneity
    shape: tuple[int, int, int]


def _curve(si: FloatArray, top: float, l5s1: float, lordosis: float, sacral: float) -> FloatArray:
    """AP position of the bodies' centre line for each SI position (mm)."""
    base = 95.0
    t = np.clip((si - top) / (l5s1 - top), 0.0, 1.0)
    ap = base - lordosis * np.sin(np.pi * t)
    below = np.maximum(si - l5s1, 0.0)
    return np.asarray(ap + sacral * below + 0.006 * below**2, dtype=np.float64)


def _place(rng: np.random.Generator, n_si: int) -> tuple[Body, ...]:
    scale = float(rng.uniform(0.92, 1.08))
    lordosis = float(rng.uniform(8.0, 18.0))
    sacral = float(rng.uniform(0.55, 0.85))
    heights = dict(zip(LEVELS, (21.5, 23.0, 24.5, 25.5, 26.5, 26.5, 26.0, 25.0), strict=True))
    discs = (6.0, 7.0, 8.5, 9.5, 10.5, 11.0, 10.0)
    top = float(rng.uniform(6.0, 14.0))
    l5s1 = top + sum(heights[lv] * scale for lv in LEVELS[:-1]) + sum(discs) * scale
    si_grid = np.arange(0.0, n_si + 80.0, 0.25)
    ap_grid = _curve(si_grid, top, l5s1, lordosis, sacral)
    arc = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(si_grid), np.diff(ap_grid)))])
    s = float(np.interp(top, si_grid, arc))
    bodies: list[Body] = []
    specs = [
        (lv, LEVEL_LABELS[lv], heights[lv] * scale, d * scale)
        for lv, d in zip(LEVELS, (*discs, 1.8), strict=True)
    ]
    specs += [("S2", 0, 19.0 * scale, 1.8), ("S3", 0, 15.0 * scale, 1.5)]
    for i, (lv, lab, h, gap) in enumerate(specs):
        centre_s = s + h / 2
        si = float(np.interp(centre_s, arc, si_grid))
        ap = float(np.interp(si, si_grid, ap_grid))
        slope = float(np.interp(si, si_grid, np.gradient(ap_grid, si_grid)))
        depth = (33.0 if i < 7 else (31.0, 27.0, 22.0)[i - 7]) * scale * float(rng.uniform(0.95, 1.05))
        width = (38.0 + 2.0 * min(i, 6)) * scale if i < 8 else 34.0 * scale - 6.0 * (i - 8)
        wedge = {"L5": 3.5, "L4": 1.5, "T12": -1.0, "T11": -1.5}.get(lv, 0.5) * scale
        bodies.append(Body(lv, lab, si, ap, float(np.arctan(slope)), h, depth, width, wedge))
        s = centre_s + h / 2 + gap
    return tuple(bodies)


def _local(body: Body, si: FloatArray, ap: FloatArray) -> tuple[FloatArray, FloatArray]:
    """(u along the body's axis, inferior positive; v across it, posterior positive)."""
    c, s = np.cos(body.tilt), np.sin(body.tilt)
    dsi, dap = si - body.si, ap - body.ap
    return dsi * c + dap * s, -dsi * s + dap * c


def _body_level(body: Body, lr: FloatArray, u: FloatArray, v: FloatArray, grow: float = 0.0) -> FloatArray:
    """Super-ellipsoid level function: <= 1 inside the body (``grow`` mm larger in every direction)."""
    half_h = 0.5 * (body.height + body.wedge * (-v / body.depth)) + grow
    half_h = half_h - 0.8 * np.clip(1.0 - (lr / (body.width / 2)) ** 2 - (v / (body.depth / 2)) ** 2, 0, 1)
    r = (np.abs(lr) / (body.width / 2 + grow)) ** 2.4 + (np.abs(v) / (body.depth / 2 + grow)) ** 2.4
    r = r ** (1 / 2.4)
    return np.asarray((np.abs(u) / np.maximum(half_h, 1.0)) ** 8 + r**8, dtype=np.float64) ** (1 / 8)


def _box(
    body: Body, shape: tuple[int, int, int], lr: FloatArray, si: FloatArray, ap: FloatArray
) -> tuple[tuple[slice, slice, slice], tuple[FloatArray, FloatArray, FloatArray]]:
    """A box around ``body`` and its coordinates there, broadcast to the box's shape."""
    reach = 0.75 * max(body.height, body.depth) + 6.0
    s_si = slice(max(0, int(body.si - reach)), min(shape[1], int(body.si + reach) + 1))
    s_ap = slice(max(0, int(body.ap - reach)), min(shape[2], int(body.ap + reach) + 1))
    if s_si.start >= s_si.stop or s_ap.start >= s_ap.stop:  # below the field of view
        s_si = s_ap = slice(0, 0)
    box = (slice(0, shape[0]), s_si, s_ap)
    full = (shape[0], s_si.stop - s_si.start, s_ap.stop - s_ap.start)
    return box, (
        np.broadcast_to(lr, full),
        np.broadcast_to(si[:, s_si], full),
        np.broadcast_to(ap[:, :, s_ap], full),
    )


def build_spine(rng: np.random.Generator, shape: tuple[int, int, int] = (60, 280, 210)) -> Spine:
    """The tissue map, the VerSe body labels and the marrow texture of one random spine."""
    n_lr, n_si, n_ap = shape
    lr = (np.arange(n_lr, dtype=np.float64) - (n_lr - 1) / 2)[:, None, None]
    si = np.arange(n_si, dtype=np.float64)[None, :, None]
    ap = np.arange(n_ap, dtype=np.float64)[None, None, :]
    bodies = _place(rng, n_si)
    tissue = np.full(shape, T.FAT, dtype=np.int8)
    labels = np.zeros(shape, dtype=np.int16)
    # row-wise anatomy follows the bodies' centre line
    rows_si = np.array([b.si for b in bodies])
    rows_ap = np.array([b.ap for b in bodies])
    rows_d = np.array([b.depth for b in bodies])
    centre = np.interp(si[0, :, 0], rows_si, rows_ap)[None, :, None]
    depth = np.interp(si[0, :, 0], rows_si, rows_d)[None, :, None]
    back = centre + depth / 2  # posterior wall line
    canal_r_ap = float(rng.uniform(6.5, 8.5))
    canal_r_lr = float(rng.uniform(9.0, 11.0))
    canal_c = back + 2.0 + canal_r_ap
    sac_end = bodies[9].si  # the sac ends at S2
    arch_front = canal_c + canal_r_ap + 1.5
    skin = arch_front + float(rng.uniform(55.0, 75.0))
    # posterior soft tissues: muscle, subcutaneous fat, skin, air
    muscle = (ap > arch_front - 4) & (ap < skin - float(rng.uniform(12.0, 25.0))) & (np.abs(lr) > 3.0)
    tissue[np.broadcast_to(muscle, shape)] = T.MUSCLE
    tissue[np.broadcast_to((ap >= skin) & (ap < skin + 2.5), shape)] = T.SKIN
    tissue[np.broadcast_to(ap >= skin + 2.5, shape)] = T.AIR
    # anterior: ligament, vessel, bowel
    front = centre - depth / 2
    tissue[np.broadcast_to((ap < front - 35.0) & (np.sin(si / 9.0 + lr / 7.0) > 0.2), shape)] = T.BOWEL
    vessel_lr = float(rng.uniform(3.0, 12.0))
    vessel = ((lr - vessel_lr) / 9.0) ** 2 + ((ap - (front - 11.0)) / 9.0) ** 2 <= 1.0
    tissue[np.broadcast_to(vessel & (si < bodies[5].si), shape)] = T.VESSEL
    # psoas beside the lumbar bodies, widening downward
    psoas_r = np.interp(si[0, :, 0], [bodies[2].si, bodies[6].si], [6.0, 16.0], left=0.0, right=16.0)
    psoas = (np.abs(lr) > 17.0) & (
        (ap - centre) ** 2 / (psoas_r[None, :, None] + 1e-3) ** 2 + ((np.abs(lr) - 28.0) / 12.0) ** 2 <= 1.0
    )
    tissue[np.broadcast_to(psoas & (si > bodies[2].si) & (si < bodies[7].si), shape)] = T.MUSCLE
    # canal: epidural fat, dura, CSF, cord and cauda equina
    ell = ((ap - canal_c) / canal_r_ap) ** 2 + (lr / canal_r_lr) ** 2
    epi = ((ap - canal_c) / (canal_r_ap + 2.5)) ** 2 + (lr / (canal_r_lr + 2.0)) ** 2 <= 1.0
    tissue[np.broadcast_to(epi, shape)] = T.FAT
    tissue[
        np.broadcast_to((ap < canal_c) & (ap >= back + 0.5) & (ap < back + 2.0) & (np.abs(lr) < 12), shape)
    ] = T.LIGAMENT
    in_sac = si < sac_end
    tissue[np.broadcast_to((ell <= 1.0) & (ell > 0.82) & in_sac, shape)] = T.LIGAMENT
    tissue[np.broadcast_to((ell <= 0.82) & in_sac, shape)] = T.CSF
    conus = bodies[2].si + 0.3 * bodies[2].height
    cord_r = np.clip((conus - si) / 12.0, 0.0, 1.0) * 4.0
    cord = (ap - canal_c) ** 2 + (lr * 0.8) ** 2 <= cord_r**2
    tissue[np.broadcast_to(cord, shape)] = T.NERVE
    for off in (-5.0, -2.5, 0.0, 2.5, 5.0):
        root = (
            ((lr - off) ** 2 + (ap - (canal_c + 0.55 * canal_r_ap)) ** 2 <= 0.8) & (si > conus - 4) & in_sac
        )
        tissue[np.broadcast_to(root, shape)] = T.NERVE
    # posterior elements of each level, then the bodies and discs on top
    for b in bodies[:9]:
        u_row = si - b.si
        pedicle_u = (u_row > -0.45 * b.height) & (u_row < 0.05 * b.height)
        ped = (
            pedicle_u
            & (np.abs(lr) > canal_r_lr + 0.5)
            & (np.abs(lr) < canal_r_lr + 7.5)
            & (ap > back - 1.0)
            & (ap < arch_front)
        )
        lam_u = (u_row > -0.3 * b.height) & (u_row < 0.55 * b.height)
        lamina = lam_u & (ap >= arch_front - 2.0) & (ap < arch_front + 6.0) & (np.abs(lr) < canal_r_lr + 8.0)
        spinous = (
            (u_row > -0.1 * b.height)
            & (u_row < 0.6 * b.height)
            & (ap >= arch_front)
            & (ap < arch_front + 30.0)
            & (np.abs(lr) < 3.5)
        )
        bone = np.broadcast_to(ped | lamina | spinous, shape)
        rim = bone & ~ndimage.binary_erosion(bone, iterations=1)
        tissue[bone] = T.MARROW
        tissue[rim] = T.CORTEX
    for upper, lower in itertools.pairwise(bodies):
        mid = Body(
            "disc",
            0,
            (upper.si + lower.si) / 2,
            (upper.ap + lower.ap) / 2,
            (upper.tilt + lower.tilt) / 2,
            abs(lower.si - upper.si),
            (upper.depth + lower.depth) / 2 + 1.5,
            (upper.width + lower.width) / 2 + 1.5,
            0.0,
        )
        box, (lr3, si3, ap3) = _box(mid, shape, lr, si, ap)
        u, v = _local(mid, si3, ap3)
        r = ((np.abs(lr3) / (mid.width / 2)) ** 2.4 + (np.abs(v) / (mid.depth / 2)) ** 2.4) ** (1 / 2.4)
        disc = (np.abs(u) < mid.height / 2) & (r <= 1.0)
        sub = tissue[box]
        sub[disc] = T.ANNULUS
        sub[disc & (r <= 0.7)] = T.NUCLEUS if lower.label != 0 else T.ANNULUS
    for b in bodies:
        box, (lr3, si3, ap3) = _box(b, shape, lr, si, ap)
        u, v = _local(b, si3, ap3)
        inside = _body_level(b, lr3, u, v) <= 1.0
        sub = tissue[box]
        sub[inside] = T.MARROW
        dist = ndimage.distance_transform_edt(np.pad(inside, 1))[1:-1, 1:-1, 1:-1]
        sub[inside & (dist <= 1.5)] = T.CORTEX
        if b.label:
            labels[box][inside] = b.label
    tex = ndimage.gaussian_filter(rng.standard_normal(shape), 2.5)
    tex = 1.0 + 0.06 * tex / max(float(tex.std()), 1e-9)
    return Spine(tissue, labels, bodies, tex, shape)


def render(spine: Spine, seq: Sequence, rng: np.random.Generator) -> FloatArray:
    """Noise-free signal of ``seq`` with texture and a posterior surface coil's fall-off."""
    col = _COLUMN[seq]
    table = np.array([SIGNAL[t][col] * float(rng.uniform(0.9, 1.1)) for t in T], dtype=np.float64)
    img = table[spine.tissue.astype(np.int64)]
    marrow = spine.tissue == T.MARROW
    img = np.where(marrow, img * spine.texture, img)
    n_ap = spine.shape[2]
    coil = 0.65 + 0.55 * np.exp(-(n_ap - 1 - np.arange(n_ap, dtype=np.float64)) / 120.0)
    return np.asarray(img * coil[None, None, :], dtype=np.float64)
