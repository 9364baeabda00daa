"""Compression fracture (Genant grade) and its malignant or benign pattern.

Malignant features (Cuénod 1996): marrow of the whole body replaced, convex
posterior wall, pedicle involvement, epidural mass. Benign features: normal
fatty marrow kept, a band-like signal change under one endplate, a retropulsed
posterosuperior fragment, the fluid sign (Baur 2002).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analysis.results import BodyMeasurement, SignState
from analysis.signs.context import BodyCrop, StudyContext
from analysis.signs.extent import ExtentResult
from analysis.signs.geometry import BoolArray, components, mid_sagittal_index
from analysis.signs.marrow import MarrowResult

# Preserved fatty marrow: less than this share of the body changed (design).
PRESERVED_MARROW_MAX_PCT = 30.0
# Fracture edema bands are a few mm thick whatever the body's remaining height
# (design: 6 pixels, about 5-6 mm on clinical grids).
BAND_FLOOR_VOXELS = 6.0


@dataclass(frozen=True, eq=False)
class FractureResult:
    compression: SignState
    pathologic: SignState
    features: tuple[str, ...]
    benign_band: bool  # the marrow change is a benign subendplate band (edema, Modic 1)
    reasons: tuple[str, ...]


def posterior_wall_shape(body: BoolArray, ap_mm: float) -> tuple[float, float]:
    """(bulge mm, retropulsion mm) of the posterior wall on the mid-sagittal slice.

    Bulge: how far the middle of the wall lies behind the line joining its upper
    and lower corners (normal lumbar walls are straight or concave, <= 0).
    Retropulsion: how far the upper quarter of the wall lies behind that line.
    """
    sl = body[mid_sagittal_index(body)]
    rows = np.nonzero(sl.any(axis=1))[0]
    if rows.size < 6:
        return (0.0, 0.0)
    post = np.array([np.nonzero(sl[r])[0].max() for r in rows], dtype=float)
    n = rows.size
    a, b = round(0.12 * (n - 1)), round(0.88 * (n - 1))
    t = (np.arange(n) - a) / max(b - a, 1)
    line = post[a] + t * (post[b] - post[a])
    excess = (post - line) * ap_mm
    middle = excess[int(0.3 * n): int(0.7 * n) + 1]
    top = excess[: max(1, int(0.25 * n))]
    bulge = float(middle.max()) if middle.size else 0.0
    retro = float(top.max()) if top.size else 0.0
    return (bulge, retro)


def band_like(lesion: BoolArray, body: BoolArray, max_thickness_frac: float, min_ap_frac: float) -> bool:
    """A lesion lying as a thin band under an endplate and across most of the body.

    That is the shape of fracture edema and of Modic type 1 change, not of a
    metastasis: 90th percentile of its thickness (voxels per SI column) at most
    ``max_thickness_frac`` of the body height, touching the top or bottom fifth
    of the body, spanning at least ``min_ap_frac`` of its AP depth.
    """
    if not lesion.any():
        return False
    parts = components(lesion, 1)
    if len(parts) > 1:
        return all(band_like(p, body, max_thickness_frac, min_ap_frac) for p in parts)
    b_rows = np.nonzero(body.any(axis=(0, 2)))[0]
    height = float(b_rows.max() - b_rows.min() + 1)
    per_column = lesion.sum(axis=1)
    # the thick end of the column thicknesses: a tumour merged with a band is no band
    thickness = float(np.percentile(per_column[per_column > 0], 90))
    # a collapsed body is short: its band is judged against a floor in voxels
    if thickness > max(max_thickness_frac * height, BAND_FLOOR_VOXELS):
        return False
    # distance to the endplate column by column: a wedged endplate is oblique
    n_si = body.shape[1]
    si = np.arange(n_si)[None, :, None]
    cols = lesion.any(axis=1)
    gap_top = (np.where(lesion, si, n_si).min(axis=1) - np.where(body, si, n_si).min(axis=1))[cols]
    gap_bottom = (np.where(body, si, -1).max(axis=1) - np.where(lesion, si, -1).max(axis=1))[cols]
    near = max(0.2 * height, BAND_FLOOR_VOXELS)
    if not (np.median(gap_top) <= near or np.median(gap_bottom) <= near):
        return False
    b_ap = np.nonzero(body.any(axis=(0, 1)))[0]
    l_ap = np.nonzero(lesion.any(axis=(0, 1)))[0]
    return bool((l_ap.max() - l_ap.min() + 1) >= min_ap_frac * (b_ap.max() - b_ap.min() + 1))


def assess_fracture(
    ctx: StudyContext,
    crop: BodyCrop,
    measurement: BodyMeasurement | None,
    marrow: MarrowResult,
    extent: ExtentResult,
    band: bool,
) -> FractureResult:
    """``band``: the marrow lesion is a thin band under an endplate (see :func:`band_like`)."""
    th = ctx.thresholds
    reasons: list[str] = []
    grade = None if measurement is None else measurement.genant_grade
    if grade is None:
        reasons.append(f"{crop.level}: body heights could not be measured: fracture not assessed")
        ind = SignState.INDETERMINATE
        return FractureResult(ind, ind, (), band, tuple(reasons))
    if grade < th.compression_min_genant:
        return FractureResult(SignState.ABSENT, SignState.ABSENT, (), band, ())

    malignant: list[str] = []
    benign: list[str] = []
    bulge, retro = posterior_wall_shape(crop.body, ctx.frame.spacing[2])
    if marrow.pattern == "diffuse":
        malignant.append("diffuse marrow replacement")
    if extent.pedicle == SignState.PRESENT:
        malignant.append("pedicle involvement")
    if "epidural" in extent.locations:
        malignant.append("epidural mass")
    if bulge >= th.convex_posterior_mm and retro < th.retropulsion_mm:
        malignant.append("convex posterior border")
    if marrow.state == SignState.ABSENT or (
        marrow.fraction_pct is not None and marrow.fraction_pct < PRESERVED_MARROW_MAX_PCT
    ):
        benign.append("normal marrow preserved")
    if band:
        benign.append("band-like subendplate signal")
    if retro >= th.retropulsion_mm:
        benign.append("retropulsed posterior fragment")
    if ctx.fluid is not None and ctx.fluid in marrow.normal_ref and marrow.lesion.any():
        fl = crop.images[ctx.fluid]
        bright = marrow.lesion & (fl >= th.fluid_sign_ratio * marrow.normal_ref[ctx.fluid])
        if band and bright.sum() * ctx.frame.voxel_mm3 >= 0.2 * th.min_lesion_mm3:
            benign.append("fluid sign")
    strong = {"pedicle involvement", "epidural mass", "diffuse marrow replacement"}
    if any(f in strong for f in malignant) or len(malignant) > len(benign):
        pathologic = SignState.PRESENT
    elif marrow.state == SignState.INDETERMINATE and not benign:
        pathologic = SignState.INDETERMINATE
        reasons.append(f"{crop.level}: fracture pattern needs the marrow assessment, which was indeterminate")
    else:
        pathologic = SignState.ABSENT
    features = tuple(f"malignant: {f}" for f in malignant) + tuple(f"benign: {f}" for f in benign)
    return FractureResult(SignState.PRESENT, pathologic, features,
                          band and pathologic == SignState.ABSENT, tuple(reasons))
