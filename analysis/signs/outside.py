"""Outside in: a mass beyond a broken wall when the marrow search found no lesion (issue 19).

The marrow search seeds a lesion in the body's core, darker than disc on T1.
A lesion lying along the wall, or about as dark as disc on T1, leaves no seed
there, and its extra-osseous mass went unreported however large (issue 19's
independent evaluation: cortex and soft tissue 0 of 6). Here the mass is
looked for from what the images show outside the body:

- tissue beyond the body's outline that is darker than the body's normal
  marrow on T1 (not fat) and brighter than it on every fluid-sensitive
  sequence (not muscle on T2; on STIR without T2, at the bar that kept real
  normal STIR marrow unflagged), contiguous with the wall;
- the wall under it broken: body voxels within a few mm of the contact with
  that signal on the fluid-sensitive sequences, where a whole cortex is dark
  on every sequence;
- not a fluid column: tissue followed far above or below the body is CSF.

Only with T1 and T2 or STIR: one sequence cannot tell fat or muscle from
tumour. The found lesion is handed to the usual spread measure
(:mod:`analysis.signs.extent`), which decides cortex, soft tissue and where.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from scipy import ndimage

from analysis.results import SignState
from analysis.signs.context import BodyCrop, StudyContext
from analysis.signs.geometry import outer_distance_mm
from analysis.signs.marrow import MarrowResult
from analysis.volume import Sequence

# T1 beyond the wall: darker than this share of the body's normal marrow (fat is brighter
# than marrow, tumour darker; design)
T1_OUT_MAX = 0.85
# Body voxels this close to the contact are searched for the broken wall (cortex 1-2 mm,
# the thick slices' partial volume one more pixel; design)
BREACH_REACH_MM = 4.0
# Tissue within this share of a fluid column's own signal on every fluid-sensitive sequence is
# that column (CSF; the signature's own tolerance, thresholds.signature_tolerance_fluid, is 0.2)
CSF_TOLERANCE = 0.25
# A mass lies mostly beside the body's middle, not level with an endplate (outside the top and
# bottom 15 % of its height): on the development phantoms' T1+STIR studies (no T2 to tell disc
# from tumour) the L5-S1 disc beside L5's lower endplate was read as a mass (seeds 5000, 5002, 5003)
ENDPLATE_SHARE = 0.15
MIDDLE_SHARE = 0.5


def _fluid_bars(ctx: StudyContext, crop: BodyCrop) -> dict[Sequence, float]:
    """Per fluid-sensitive sequence, the bar tissue must clear against the body's normal marrow."""
    th = ctx.thresholds
    bars: dict[Sequence, float] = {}
    for seq in (Sequence.STIR, Sequence.T2):
        if seq not in crop.images or not crop.core.any():
            continue
        normal = float(np.median(crop.images[seq][crop.core]))
        if normal <= 0:
            continue
        if seq == Sequence.STIR:
            ratio = th.stir_focal_ratio if Sequence.T2 in crop.images else th.stir_alone_focal_ratio
        else:
            ratio = th.t2_focal_ratio
        bars[seq] = ratio * normal
    return bars


def mass_lesion(ctx: StudyContext, crop: BodyCrop, marrow: MarrowResult) -> MarrowResult | None:
    """``marrow`` with the lesion a mass beyond a broken wall shows, or None when there is none."""
    th = ctx.thresholds
    if Sequence.T1 not in crop.images or ctx.fluid is None or marrow.lesion.any() or not crop.core.any():
        return None
    t1 = crop.images[Sequence.T1]
    t1_normal = float(np.median(t1[crop.core]))
    bars = _fluid_bars(ctx, crop)
    if t1_normal <= 0 or not bars:
        return None
    bright = np.ones_like(crop.body)
    half = np.ones_like(crop.body)
    for seq, bar in bars.items():
        normal = float(np.median(crop.images[seq][crop.core]))
        bright &= crop.images[seq] > bar
        half &= crop.images[seq] > normal + th.grow_fraction * (bar - normal)
    sp = ctx.frame.spacing
    out_mm = outer_distance_mm(crop.body, sp)
    allowed = (out_mm > 0) & (out_mm <= th.ste_search_mm) & ~crop.other_bodies & ~crop.all_discs
    tissue = allowed & bright & (t1 < T1_OUT_MAX * t1_normal)
    labels, n = ndimage.label(tissue, structure=np.ones((3, 3, 3), dtype=bool))
    if n == 0:
        return None
    touching = ndimage.binary_dilation(crop.body, structure=np.ones((1, 3, 3), dtype=bool)) & ~crop.body
    si_rows = np.nonzero(crop.body.any(axis=(0, 2)))[0]
    reach = round(th.ste_si_beyond_mm / sp[1])
    si = np.arange(crop.body.shape[1])[None, :, None]
    far = (si < si_rows.min() - reach) | (si > si_rows.max() + reach)
    rim = ENDPLATE_SHARE * (si_rows.max() - si_rows.min())
    middle = (si >= si_rows.min() + rim) & (si <= si_rows.max() - rim)
    voxel = ctx.frame.voxel_mm3
    column = np.zeros_like(crop.body)
    for k in np.unique(labels[labels > 0]):
        comp = labels == k
        if float((comp & far).sum()) * voxel >= th.ste_min_mm3:
            # a fluid column (CSF) runs through it: what has the column's own signal is CSF, what
            # is left beside the wall may be a mass lying against the sac
            csf = {seq: float(np.median(crop.images[seq][comp & far])) for seq in bars}
            like = np.ones_like(crop.body)
            for seq, level in csf.items():
                like &= np.abs(crop.images[seq] - level) <= CSF_TOLERANCE * abs(level)
            column |= comp & like
    if column.any():
        tissue &= ~ndimage.binary_dilation(column, structure=np.ones((1, 3, 3), dtype=bool))
        labels, n = ndimage.label(tissue, structure=np.ones((3, 3, 3), dtype=bool))
    mass = np.zeros_like(crop.body)
    for k in np.unique(labels[touching & (labels > 0)]):
        comp = labels == k
        if float((comp & far).sum()) * voxel >= th.ste_min_mm3:
            continue  # still a column, not a mass
        if float(comp.sum()) * voxel < th.ste_min_mm3 or out_mm[comp].max() < th.ste_min_depth_mm:
            continue
        if (comp & middle).sum() < MIDDLE_SHARE * comp.sum():
            continue  # at an endplate's level: a disc bulging or the disc's reaction, not a mass
        mass |= comp
    if not mass.any():
        return None
    to_mass = np.asarray(ndimage.distance_transform_edt(~mass, sampling=sp))
    near = crop.body & (to_mass <= BREACH_REACH_MM)
    breach = near & half & (t1 < t1_normal * (1.0 - th.grow_fraction * (1.0 - T1_OUT_MAX)))
    if float(breach.sum()) * voxel < th.cortex_break_mm3:
        return None  # the wall under it is whole: tissue lying against the body, not coming out of it
    lesion = breach
    fraction = 100.0 * float(lesion.sum()) / float(crop.body.sum())
    grow = dict(marrow.grow_thresholds)
    grow[Sequence.T1] = ("<", t1_normal * (1.0 - th.grow_fraction * (1.0 - T1_OUT_MAX)))
    fl_normal = float(np.median(crop.images[ctx.fluid][crop.core]))
    grow[ctx.fluid] = (">", fl_normal + th.grow_fraction * (bars[ctx.fluid] - fl_normal))
    return replace(marrow, state=SignState.PRESENT, fluid_state=SignState.PRESENT, pattern="focal",
                   fraction_pct=fraction, lesion_count=1, lesion=lesion, seeds=lesion, grow_thresholds=grow)
