"""What one marrow contrast alone (T1, T2 or STIR) may call present (issue 19).

Tumour replacing fat is dark on T1 *and* bright on T2/STIR; each half alone
has look-alikes. On the independent evaluation of issue 19 every false level
(8, up to 5 in one normal spine) came from T2-only real studies, and on T1
alone a normal real spine had a level called present. So with one sequence:

- T2 or STIR alone: marrow infiltration is never ``present``; a region
  brighter than the body's marrow may be fat (on T2), a haemangioma or patchy
  red marrow, and is reported ``indeterminate`` with the reason;
- T1 alone: the whole body's marrow as dark as disc or darker (Carroll's
  rule: 40 of 41 such bodies were infiltrated) is evidence T1 carries alone
  and stays ``present``; a focal dark region may be degenerative (Modic)
  change, sclerosis, an atypical haemangioma or the partial volume of the
  cortex and is ``indeterminate``: a STIR or T2 is needed to characterise it;
- on T2 alone the tissue beyond the body that matches the region's signal
  may be the epidural or paravertebral fat around it, so cortex and
  soft-tissue extension are ``indeterminate`` (on T1 alone ``assess_extent``
  already leaves them so: lesion tissue looks like disc, muscle and CSF);
- on STIR alone fat is suppressed: bright tissue contiguous with the marrow
  region through a broken wall is what one sequence can carry, and the level
  is ``present`` only on that (cortex and soft tissue both present);
- a compression fracture's malignant pattern read from marrow signal (diffuse
  replacement, pedicles) is ``indeterminate``; an epidural mass or a convex
  posterior wall still count;
- the pedicles hold the marrow region's own tissue: they are never called
  ``present`` where the body's marrow is not.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from analysis.results import SignState
from analysis.signs.context import StudyContext
from analysis.signs.extent import ExtentResult
from analysis.signs.fracture import FractureResult
from analysis.signs.marrow import MarrowResult, carroll_replaced
from analysis.volume import Sequence

IND = SignState.INDETERMINATE
T1_NEEDED = "a sagittal T1 is needed to exclude (or confirm) marrow infiltration"
FLUID_NEEDED = "a sagittal STIR or T2 is needed to characterise it"
_GEOMETRIC = ("malignant: epidural mass", "malignant: convex posterior border")


def only_contrast(ctx: StudyContext) -> Sequence | None:
    """T1, T2 or STIR when it is the study's only marrow contrast, else None."""
    if ctx.has(Sequence.T1):
        return Sequence.T1 if ctx.fluid is None else None
    return ctx.fluid


def limit_extent(ctx: StudyContext, level: str, extent: ExtentResult) -> ExtentResult:
    """On T2 alone the spread of a bright region cannot be told from the fat around the body; on STIR
    alone a broken wall counts only with the mass beyond it, and the mass only through the wall."""
    seq = only_contrast(ctx)
    if seq in (None, Sequence.T1) or SignState.PRESENT not in (extent.cortex, extent.soft_tissue):
        return extent
    if seq == Sequence.T2:
        reason = (f"{level}: T2 alone: tissue beyond the body as bright as the marrow region may be "
                  "epidural or paravertebral fat, so cortex and soft-tissue extension cannot be told")
    elif extent.cortex == SignState.PRESENT and extent.soft_tissue == SignState.PRESENT:
        return extent
    else:
        reason = (f"{level}: {seq.value} alone: a broken wall without a mass beyond it (or a mass without "
                  f"a broken wall) is not called on one sequence; {T1_NEEDED}")
    return replace(extent, cortex=IND, soft_tissue=IND, locations=(), ste_volume_ml=None, ste_extent_mm=None,
                   epidural_mask=np.zeros_like(extent.epidural_mask),
                   reasons=(*extent.reasons, reason))


def limit_level(
    ctx: StudyContext, level: str, marrow_state: SignState, marrow: MarrowResult, fracture: FractureResult
) -> tuple[SignState, SignState, list[str]]:
    """(marrow state, fracture pattern, reasons) as one marrow contrast can carry them."""
    seq = only_contrast(ctx)
    if seq is None:
        return marrow_state, fracture.pathologic, []
    reasons: list[str] = []
    if marrow_state == SignState.PRESENT:
        if seq != Sequence.T1:
            marrow_state = IND
            fat = "" if seq == Sequence.STIR else "fat, "
            mimics = f"{fat}a haemangioma or red marrow"
            reasons.append(f"{level}: {seq.value} alone: a marrow region brighter than the body's marrow may "
                           f"be {mimics}; {T1_NEEDED}")
        elif not carroll_replaced(marrow.t1_disc_ratio, marrow.t1_muscle_ratio, ctx.thresholds):
            marrow_state = IND
            reasons.append(f"{level}: T1 alone: a focal region darker than disc may be degenerative (Modic) "
                           f"change, sclerosis or a haemangioma as well as tumour; {FLUID_NEEDED}")
    pathologic = fracture.pathologic
    if pathologic == SignState.PRESENT and not any(f in fracture.features for f in _GEOMETRIC):
        pathologic = IND
        needed = FLUID_NEEDED if seq == Sequence.T1 else T1_NEEDED
        reasons.append(f"{level}: {seq.value} alone: the fracture's malignant features come from marrow "
                       f"signal only; {needed}")
    return marrow_state, pathologic, reasons


def limit_pedicle(ctx: StudyContext, marrow_state: SignState, pedicle: SignState) -> SignState:
    """Pedicle involvement as one marrow contrast can carry it: no surer than the marrow's state."""
    if only_contrast(ctx) is None or pedicle != SignState.PRESENT or marrow_state == SignState.PRESENT:
        return pedicle
    return IND
