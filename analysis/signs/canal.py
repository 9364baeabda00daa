"""Spinal canal sagittal diameter behind each body, on T2 (or STIR).

CSF is the brightest tissue behind the body on fluid-sensitive images; the
canal diameter is the length of the bright run that starts just behind the
posterior wall, measured on the body's mid-sagittal slice over the middle
third of its height. Epidural tumour is intermediate signal and shortens the
run, so the measure drops where tissue narrows the canal.

The thecal sac holds the cord down to L1-L2 and the cauda equina below: both
are intermediate signal inside the CSF. A run is therefore carried across an
intermediate stretch when CSF resumes behind it (the sac goes on), but never
across a dark one (dura, ligamentum flavum, lamina), which closes the sac.
Without that, the real T2 of ``sct-t2-lumbar`` measured its canal at 2-7 mm
from T12 to L3, where the cord and conus split the CSF in two.

The same runs give the study's CSF signal on every sequence (median over the
levels), which the spread of a lesion is told from (``analysis.signs.extent``).
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence as Seq
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from analysis.results import SignState
from analysis.signs.context import BodyCrop, FloatArray, StudyContext
from analysis.signs.geometry import mid_sagittal_index
from analysis.thresholds import SignThresholds
from analysis.volume import Sequence

# The bright run may begin this far behind the wall (dark PLL, dura, tumour).
_START_WINDOW_MM = 15.0
# CSF-bright: above this share of the profile's bright level (tumour on T2 is
# about 1.5x marrow, CSF 3x or more, so tumour stays below).
_BRIGHT_SHARE = 0.7


def canal_sequence(ctx: StudyContext) -> Sequence | None:
    for seq in (Sequence.T2, Sequence.STIR):
        if seq in ctx.images:
            return seq
    return None


@dataclass(frozen=True)
class CanalReading:
    """The canal behind one body: its diameter and the signal of the CSF measured in it."""

    diameter_mm: float | None
    csf: Mapping[Sequence, float]  # median per sequence over the sac's bright voxels; empty if none


def read_canal(ctx: StudyContext, crop: BodyCrop) -> CanalReading:
    """The sac behind the body on its mid-sagittal slice: its length and its CSF's signal.

    The diameter is the median over the middle third of the body's height; the
    CSF signal is read on every sequence at the bright voxels of those runs, so
    the cord and roots bridged between them are left out.
    """
    seq = canal_sequence(ctx)
    if seq is None:
        return CanalReading(None, {})
    img = crop.images[seq]
    lr = mid_sagittal_index(crop.body)
    sl_body = crop.body[lr]
    sl_img = img[lr]
    rows = np.nonzero(sl_body.any(axis=1))[0]
    if rows.size < 3:
        return CanalReading(None, {})
    n = rows.size
    mid_rows = rows[n // 3: max(n // 3 + 1, 2 * n // 3)]
    ap_mm = ctx.frame.spacing[2]
    search = round(ctx.thresholds.canal_search_mm / ap_mm)
    window = round(_START_WINDOW_MM / ap_mm)
    lengths: list[float] = []
    csf = np.zeros_like(sl_body)
    for r in mid_rows:
        wall = int(np.nonzero(sl_body[r])[0].max())
        prof = sl_img[r, wall + 1: wall + 1 + search]
        if prof.size < search // 2:
            continue  # field of view ends behind the body
        bright_level = float(np.percentile(prof, 90))
        if bright_level <= 0:
            continue
        bright = prof >= _BRIGHT_SHARE * bright_level
        starts = np.nonzero(bright[:window])[0]
        if starts.size == 0:
            lengths.append(0.0)
            continue
        i = int(starts[0])
        end = sac_end(prof, bright, i, bright_level, ap_mm, ctx.thresholds)
        lengths.append((end - i + 1) * ap_mm)
        csf[r, wall + 1 + i: wall + 2 + end] = bright[i: end + 1]
    if not lengths:
        return CanalReading(None, {})
    signal = {q: float(np.median(im[lr][csf])) for q, im in crop.images.items()} if csf.any() else {}
    return CanalReading(float(np.median(lengths)), signal)


def csf_reference(readings: Seq[CanalReading]) -> dict[Sequence, float]:
    """The study's CSF signal per sequence: the median over the levels where the sac was measured.

    A median over levels, so epidural tissue or a narrowed sac at one or two
    levels does not move it.
    """
    out: dict[Sequence, float] = {}
    for seq in {q for r in readings for q in r.csf}:
        values = [r.csf[seq] for r in readings if seq in r.csf]
        out[seq] = float(np.median(values))
    return out


def _run_end(bright: npt.NDArray[np.bool_], j: int) -> int:
    """Last index of the bright run through ``j``, bridging single-pixel gaps (noise)."""
    while j + 1 < bright.size and (bright[j + 1] or (j + 2 < bright.size and bright[j + 2])):
        j += 1
    return j


def sac_end(prof: FloatArray, bright: npt.NDArray[np.bool_], start: int, bright_level: float,
            ap_mm: float, thresholds: SignThresholds) -> int:
    """Last index of the thecal sac on a profile whose CSF begins at ``start``.

    The bright run is extended across intermediate contents (cord, roots) as
    long as CSF resumes behind them, within ``canal_max_contents_mm``, for at
    least ``canal_min_resumed_mm``, and nothing between is as dark as a wall.
    """
    j = _run_end(bright, start)
    reach = max(1, round(thresholds.canal_max_contents_mm / ap_mm))
    least = max(1, round(thresholds.canal_min_resumed_mm / ap_mm))
    while True:
        ahead = np.nonzero(bright[j + 1: j + 2 + reach])[0]
        if ahead.size == 0:
            return j
        k = j + 1 + int(ahead[0])
        if prof[j + 1: k].min(initial=np.inf) < thresholds.canal_wall_share * bright_level:
            return j
        end = _run_end(bright, k)
        if end - k + 1 < least:
            return j
        j = end


def canal_compromise(
    levels: Seq[str],
    diameters: Seq[float | None],
    epidural: Seq[SignState],
    has_sequence: bool,
    thresholds: SignThresholds,
) -> list[tuple[SignState, bool]]:
    """Per level: (compromise, narrowed) -- epidural lesion tissue in the canal.

    Any epidural tumour is a compromise of the canal (Bilsky grade 1a or more);
    ``narrowed`` says whether the measured diameter is also below the level's
    lower normal limit, below absolute stenosis, or below
    ``canal_neighbour_ratio`` of the unaffected neighbours' median. ``epidural``
    is indeterminate where the lesion's spread could not be told.
    """
    out: list[tuple[SignState, bool]] = []
    for i, (level, diam, epi) in enumerate(zip(levels, diameters, epidural, strict=True)):
        if not has_sequence:
            out.append((SignState.INDETERMINATE, False))
            continue
        if epi != SignState.PRESENT or diam is None:
            out.append((epi, False))
            continue
        neighbours = [d for j, d in enumerate(diameters) if abs(j - i) in (1, 2) and d is not None
                      and epidural[j] == SignState.ABSENT]
        limit = thresholds.canal_limit(level)
        narrow = diam < thresholds.canal_absolute_stenosis_mm or (limit is not None and diam < limit)
        if neighbours:
            narrow = narrow or diam < thresholds.canal_neighbour_ratio * float(np.median(neighbours))
        out.append((SignState.PRESENT, narrow))
    return out
