"""What one fluid-sensitive sequence (T2 or STIR without a T1) may call present (issue 19).

Without a T1, a region brighter than the body's marrow can be fat (bright on
T2 without fat suppression), a haemangioma or patchy red marrow as well as
tumour: on the independent evaluation of issue 19 every false level (8, up to
5 in one normal spine) came from T2-only real studies. So with T2 or STIR
alone:

- marrow infiltration is never ``present``: a bright region is reported
  ``indeterminate`` with the reason;
- on T2 alone the tissue beyond the body that matches the region's signal may
  be the epidural or paravertebral fat around it, so cortex and soft-tissue
  extension are ``indeterminate`` too;
- on STIR alone fat is suppressed: bright tissue contiguous with the marrow
  region through a broken wall is what one sequence can carry, and the level
  is ``present`` only on that (cortex and soft tissue both present);
- a compression fracture's malignant pattern read from marrow signal (diffuse
  replacement, pedicles) is ``indeterminate``; an epidural mass or a convex
  posterior wall still count.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from analysis.results import SignState
from analysis.signs.context import StudyContext
from analysis.signs.extent import ExtentResult
from analysis.signs.fracture import FractureResult
from analysis.volume import Sequence

IND = SignState.INDETERMINATE
T1_NEEDED = "a sagittal T1 is needed to exclude (or confirm) marrow infiltration"
_GEOMETRIC = ("malignant: epidural mass", "malignant: convex posterior border")


def fluid_alone(ctx: StudyContext) -> Sequence | None:
    """The fluid-sensitive sequence when it is the only marrow contrast (no T1), else None."""
    return ctx.fluid if ctx.fluid is not None and not ctx.has(Sequence.T1) else None


def limit_extent(ctx: StudyContext, level: str, extent: ExtentResult) -> ExtentResult:
    """On T2 alone the spread of a bright region cannot be told from the fat around the body; on
    STIR alone a broken wall counts only with the mass beyond it, and the mass only through the wall."""
    seq = fluid_alone(ctx)
    if seq is None or SignState.PRESENT not in (extent.cortex, extent.soft_tissue):
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
    ctx: StudyContext, level: str, marrow_state: SignState, extent: ExtentResult, fracture: FractureResult
) -> tuple[SignState, SignState, list[str]]:
    """(marrow state, fracture pattern, reasons) as one fluid-sensitive sequence can carry them."""
    seq = fluid_alone(ctx)
    if seq is None:
        return marrow_state, fracture.pathologic, []
    reasons: list[str] = []
    if marrow_state == SignState.PRESENT:
        marrow_state = IND
        mimics = "fat, a haemangioma or red marrow" if seq == Sequence.T2 else "a haemangioma or red marrow"
        reasons.append(f"{level}: {seq.value} alone: a marrow region brighter than the body's marrow may be "
                       f"{mimics}; {T1_NEEDED}")
    pathologic = fracture.pathologic
    if pathologic == SignState.PRESENT and not any(f in fracture.features for f in _GEOMETRIC):
        pathologic = IND
        reasons.append(f"{level}: {seq.value} alone: the fracture's malignant features come from marrow "
                       f"signal only; {T1_NEEDED}")
    return marrow_state, pathologic, reasons
