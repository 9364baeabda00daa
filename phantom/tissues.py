"""Tissue classes of the synthetic anatomy, and the soft tissue around the spine.

``anterior`` paints vessels and bowel in front of the spine, ``neural`` the
cord, conus and cauda equina inside the thecal sac (both in the curve
coordinates of ``anatomy``).
"""

from __future__ import annotations

from enum import IntEnum
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from phantom.spine import Spine


class Tissue(IntEnum):
    AIR = 0
    FAT = 1
    MUSCLE = 2
    MARROW = 3
    CORTEX = 4
    NUCLEUS = 5
    ANNULUS = 6
    CSF = 7
    CORD = 8
    ROOT = 9
    LIGAMENT = 10
    VESSEL = 11  # flow void
    BOWEL = 12
    SKIN = 13
    VEIN = 14  # basivertebral vein, epidural plexus
    FACET_FLUID = 15
    DEGENERATED_NUCLEUS = 16


FloatArray = npt.NDArray[np.float64]


def anterior(
    tissue: npt.NDArray[np.uint8],
    x: FloatArray,
    a: FloatArray,
    t: FloatArray,
    spine: Spine,
    depth: FloatArray,
    half_w: FloatArray,
) -> None:
    segs = spine.segments
    front = -depth / 2
    tissue[t < front - 26] = Tissue.BOWEL
    sel = (t > front - 25) & (t < front) & (np.abs(x) < 45) & (a < segs[8].a1)
    xs, as_, ts, fr = x[sel], a[sel], t[sel], front[sel]
    tis = tissue[sel]
    # Aorta left of the midline down to L4, then the iliac arteries; IVC on the right.
    bif = 0.5 * (segs[5].a0 + segs[5].a1)
    spread = np.clip(as_ - bif, 0, None) * 0.45
    r = np.where(as_ < bif, 10.0, 6.0)
    for cx in (14.0 + spread, 14.0 - spread):
        tis[((xs - cx) / r) ** 2 + ((ts - (fr - 11)) / r) ** 2 <= 1.0] = Tissue.VESSEL
    ivc = ((xs + 20.0) / 12.0) ** 2 + ((ts - (fr - 10)) / 8.0) ** 2 <= 1.0
    tis[ivc & (as_ < segs[6].a1)] = Tissue.VESSEL
    tissue[sel] = tis


def neural(
    tissue: npt.NDArray[np.uint8],
    x: FloatArray,
    a: FloatArray,
    t: FloatArray,
    spine: Spine,
    sac: npt.NDArray[np.bool_],
    sac_c: FloatArray,
) -> None:
    xs, as_, ts = x[sac], a[sac], t[sac] - sac_c[sac]
    tis = tissue[sac]
    tip = spine.conus_a
    taper = np.clip((tip - as_) / 18.0, 0.0, 1.0) ** 0.6
    cord = ((xs / (5.5 * taper + 1e-6)) ** 2 + ((ts + 0.5) / (4.5 * taper + 1e-6)) ** 2 <= 1.0) & (as_ < tip)
    tis[cord] = Tissue.CORD
    # Cauda equina: roots lying in the dependent (posterior) half of the sac.
    end = spine.segments[8].a0
    spread = np.clip((as_ - tip) / 30.0, 0.2, 1.0)
    roots = (
        (-6, 3.0),
        (-3.5, 4.5),
        (-0.8, 5.0),
        (0.9, 4.4),
        (4, 4.2),
        (6.5, 3),
        (-5, 1),
        (5, 1),
        (-1.6, 2.6),
        (1.8, 2.0),
        (-0.3, 3.4),
        (0.4, 1.2),
    )
    for n, (rx, rt) in enumerate(roots):
        stop = tip + (end - tip) * (0.4 + 0.05 * n)
        root = ((xs - rx * spread) ** 2 + (ts - rt) ** 2 <= 0.85) & (as_ > tip - 4) & (as_ < stop)
        tis[root] = Tissue.ROOT
    tissue[sac] = tis
