"""A small block spine whose every sign is known, for the sign tests.

Grid as the shared data: ``[k, j, i]`` = left-right (3 mm slices), superior to
inferior, anterior to posterior (1 mm pixels). Five bodies (L1-L5) 24 mm tall,
34 mm deep, 39 mm wide with a 1 mm dark cortex; discs between; a CSF-filled
canal behind; fat everywhere else. Lesions are painted with the contrasts of
tumour (dark on T1, bright on STIR/T2), so the expected answer is exact.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from analysis.results import BodyMeasurement, SpineSegmentation
from analysis.volume import LEVEL_LABELS, Sequence, Volume

DIRECTION = (0.0, 0.0, -1.0, 1.0, 0.0, 0.0, 0.0, -1.0, 0.0)
SPACING_IJK = (1.0, 1.0, 3.0)
SHAPE = (17, 180, 110)  # k, j, i
LEVELS = ("L1", "L2", "L3", "L4", "L5")
BODY_TOP = 14  # j of L1's superior endplate
BODY_H, DISC_H = 24, 8
AP0, AP1 = 30, 64  # i range of the bodies
K0, K1 = 2, 15  # k range of the bodies (13 slices = 39 mm)
CANAL = (66, 82)  # i range of the canal (16 mm)
CANAL_K = (5, 12)
LAMINA = (82, 90)  # i range of the dark posterior arch behind the canal

# "hot": a tumour bright enough on T2 to be seen without T1 (2.3x marrow)
# "wet": a tumour close to CSF on T1 and STIR (within 35 % of it, not within 20 %)
# "cord": spinal cord or conus inside the CSF (0.3 of CSF on T2, as on sct-t2-lumbar)
# "faint": a tumour darker than the marrow on T1 (0.71 of it) but brighter than disc
# "pale": CSF as on the real STIR VB1_03, little brighter than tumour there, and grey on T1:
#   within the lesion signature's 35 % of "tumour" on T1 and STIR, nearer CSF than tumour on both
# "dim": a faint tumour replacing a whole body, a third of the way from marrow to "tumour" on
#   every sequence: T1 0.81 of the marrow (brighter than disc), STIR 1.6x it
# "hazy": a focal tumour fainter on T1 than "faint" (0.86 of the marrow, over the faint bar's 0.8)
#   but 2x the marrow on STIR
_NAMES = ("marrow", "disc", "csf", "fat", "cortex", "tumour", "band", "fluid", "hot", "wet", "cord", "faint",
          "pale", "dim", "hazy")
_VALUES: dict[Sequence, tuple[float, ...]] = {
    Sequence.T1: (420, 260, 90, 600, 60, 170, 150, 80, 170, 110, 380, 300, 125, 340, 360),
    Sequence.T1C: (440, 280, 95, 600, 60, 400, 330, 80, 400, 300, 380, 400, 130, 460, 430),
    Sequence.STIR: (110, 280, 900, 40, 30, 300, 240, 850, 400, 700, 300, 300, 360, 180, 220),
    Sequence.T2: (330, 480, 1000, 520, 50, 560, 470, 950, 760, 760, 300, 560, 1000, 410, 430),
}
TISSUE: dict[Sequence, dict[str, float]] = {
    seq: dict(zip(_NAMES, values, strict=True)) for seq, values in _VALUES.items()
}


def body_rows(level: str) -> tuple[int, int]:
    n = LEVELS.index(level)
    top = BODY_TOP + n * (BODY_H + DISC_H)
    return top, top + BODY_H


@dataclass
class Spine:
    """Tissue names per voxel plus the label map; render() makes the images."""

    tissue: npt.NDArray[np.object_]
    labels: npt.NDArray[np.int16]
    heights: dict[str, tuple[float, float, float]] = field(default_factory=dict)

    def render(self, sequences: Iterable[Sequence], rng_seed: int = 0, noise: float = 0.03,
               enhancing: bool = True) -> dict[Sequence, Volume]:
        rng = np.random.default_rng(rng_seed)
        out: dict[Sequence, Volume] = {}
        for seq in sequences:
            lut = dict(TISSUE[seq])
            if seq == Sequence.T1C and not enhancing:
                lut["tumour"] = TISSUE[Sequence.T1]["tumour"] * 1.05
            img = np.vectorize(lut.__getitem__, otypes=[float])(self.tissue)
            img *= 1.0 + noise * rng.standard_normal(img.shape)
            arr = np.clip(img, 0, None).astype(np.float32)
            out[seq] = Volume(arr, SPACING_IJK, (0.0, 0.0, 0.0), DIRECTION)
        return out

    def segmentation(self, grades: dict[str, int] | None = None,
                     levels: Iterable[str] = LEVELS) -> SpineSegmentation:
        grades = grades or {}
        bodies = []
        for level in levels:
            if not (self.labels == LEVEL_LABELS[level]).any():
                continue
            g = grades.get(level, 0)
            bodies.append(BodyMeasurement(level, LEVEL_LABELS[level], (0.0, 0.0, 0.0), 24.0, 24.0, 24.0, 24.0,
                                          [0.0, 22.0, 30.0, 45.0][g], g, 30.0))
        vol = Volume(self.labels, SPACING_IJK, (0.0, 0.0, 0.0), DIRECTION)
        return SpineSegmentation(vol, tuple(bodies), 1.0, False)


def normal_spine() -> Spine:
    tissue = np.full(SHAPE, "fat", dtype=object)
    labels = np.zeros(SHAPE, dtype=np.int16)
    tissue[CANAL_K[0]:CANAL_K[1], :, CANAL[0]:CANAL[1]] = "csf"
    tissue[:, :, LAMINA[0]:LAMINA[1]] = "cortex"
    for n, level in enumerate(LEVELS):
        top, bot = body_rows(level)
        tissue[K0:K1, top:bot, AP0:AP1] = "cortex"
        tissue[K0 + 1:K1 - 1, top + 1:bot - 1, AP0 + 1:AP1 - 1] = "marrow"
        labels[K0:K1, top:bot, AP0:AP1] = LEVEL_LABELS[level]
        if n + 1 < len(LEVELS):
            tissue[K0:K1, bot:bot + DISC_H, AP0:AP1] = "disc"
    top, _ = body_rows("L1")
    tissue[K0:K1, top - DISC_H:top, AP0:AP1] = "disc"  # T12-L1 disc above the top body
    tissue[K0:K1, body_rows("L5")[1]:body_rows("L5")[1] + DISC_H, AP0:AP1] = "disc"
    return Spine(tissue, labels)


def _grid() -> tuple[npt.NDArray[np.float64], ...]:
    k, j, i = np.meshgrid(*(np.arange(n, dtype=float) for n in SHAPE), indexing="ij")
    return k * 3.0, j, i


def paint_ball(spine: Spine, centre_kji: tuple[float, float, float], radius_mm: float, what: str = "tumour",
               inside_body_only: bool = True) -> npt.NDArray[np.bool_]:
    k, j, i = _grid()
    d2 = (k - centre_kji[0] * 3.0) ** 2 + (j - centre_kji[1]) ** 2 + (i - centre_kji[2]) ** 2
    ball = d2 <= radius_mm**2
    if inside_body_only:
        ball &= spine.labels > 0
    spine.tissue[ball] = what
    return ball


def focal_lesion(spine: Spine, level: str, radius_mm: float = 7.0, si_offset: float = 0.0,
                 ap_offset: float = 0.0, what: str = "tumour") -> npt.NDArray[np.bool_]:
    top, bot = body_rows(level)
    centre = ((K0 + K1 - 1) / 2.0, (top + bot) / 2.0 + si_offset, (AP0 + AP1) / 2.0 + ap_offset)
    return paint_ball(spine, centre, radius_mm, what)


def diffuse_lesion(spine: Spine, level: str, what: str = "tumour") -> None:
    spine.tissue[spine.labels == LEVEL_LABELS[level]] = what


def epidural_extension(spine: Spine, level: str, depth_mm: int = 7, what: str = "tumour") -> None:
    """A lesion through the posterior cortex, filling the front of the canal."""
    top, bot = body_rows(level)
    mid = (top + bot) // 2
    focal_lesion(spine, level, radius_mm=8.0, ap_offset=10.0, what=what)
    spine.tissue[CANAL_K[0]:CANAL_K[1], mid - 7:mid + 7, AP1 - 3:AP1] = what
    spine.tissue[CANAL_K[0]:CANAL_K[1], mid - 7:mid + 7, AP1:AP1 + depth_mm] = what


def canal_strand(spine: Spine, ap: tuple[int, int], what: str = "cord") -> None:
    """Paint the canal between AP indices ``ap`` (the cord, or a dark wall) from top to bottom."""
    if not CANAL[0] <= ap[0] < ap[1] <= CANAL[1]:
        raise ValueError(f"ap must lie inside the canal {CANAL}, got {ap}")
    spine.tissue[CANAL_K[0]:CANAL_K[1], :, ap[0]:ap[1]] = what


def paravertebral_extension(spine: Spine, level: str, depth_mm: int = 7) -> None:
    top, bot = body_rows(level)
    mid = (top + bot) // 2
    focal_lesion(spine, level, radius_mm=8.0, ap_offset=-10.0)
    spine.tissue[K0 + 2:K1 - 2, mid - 7:mid + 7, AP0:AP0 + 3] = "tumour"
    spine.tissue[K0 + 2:K1 - 2, mid - 7:mid + 7, AP0 - depth_mm:AP0] = "tumour"


def side_wall_extension(spine: Spine, level: str) -> None:
    """A lesion in the back of the body's side, through its side wall, with a mass beside it
    in the sagittal slices past the body (level with the pedicles' roots, but outside the body)."""
    top, bot = body_rows(level)
    spine.tissue[K1 - 4:K1, top + 5:bot - 5, AP1 - 12:AP1 - 2] = "tumour"
    spine.tissue[K1:SHAPE[0], top + 5:bot - 5, AP1 - 12:AP1 - 2] = "tumour"


def pedicle_lesion(spine: Spine, level: str) -> None:
    """Tumour in both pedicle roots, behind the upper posterior body, either side of the canal."""
    top, _ = body_rows(level)
    for ks in (slice(K0, CANAL_K[0]), slice(CANAL_K[1], K1)):
        spine.tissue[ks, top + 3:top + 13, AP1 - 4:AP1 + 10] = "tumour"


def collapse(spine: Spine, level: str, loss_mm: int) -> None:
    """Crush the body from above: its top rows become disc (a compression fracture)."""
    top, _ = body_rows(level)
    lab = LEVEL_LABELS[level]
    rows = slice(top, top + loss_mm)
    spine.labels[:, rows][spine.labels[:, rows] == lab] = 0
    spine.tissue[K0:K1, rows, AP0:AP1] = "disc"
    spine.tissue[K0:K1, top + loss_mm, AP0:AP1] = "cortex"


def convex_posterior(spine: Spine, level: str, bulge_mm: int = 4) -> None:
    top, bot = body_rows(level)
    lab = LEVEL_LABELS[level]
    h = bot - top
    for r in range(top + 2, bot - 2):
        u = (r - top) / h
        extra = round(bulge_mm * max(0.0, 1.0 - ((u - 0.5) / 0.45) ** 2))
        if extra:
            spine.labels[K0:K1, r, AP1:AP1 + extra] = lab
            spine.tissue[K0:K1, r, AP1:AP1 + extra] = spine.tissue[K0 + 6, r, AP1 - 3]


def endplate_band(spine: Spine, level: str, depth: tuple[int, int] = (2, 6), what: str = "band") -> None:
    top, _ = next((r, r) for r in range(SHAPE[1]) if (spine.labels[:, r] == LEVEL_LABELS[level]).any())
    spine.tissue[K0 + 1:K1 - 1, top + depth[0]:top + depth[1], AP0 + 1:AP1 - 1] = what


def test_normal_spine_is_five_bodies_with_discs() -> None:
    spine = normal_spine()
    assert sorted(int(v) for v in np.unique(spine.labels) if v) == [20, 21, 22, 23, 24]
    vols = spine.render([Sequence.T1])
    t1 = vols[Sequence.T1].array
    assert t1[8, 30, 45] > t1[8, body_rows("L1")[1] + 4, 45]  # marrow brighter than disc on T1
