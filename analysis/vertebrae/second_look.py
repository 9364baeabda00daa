"""A second look, at a lower body probability, past either end of the chain of bodies.

Tumour that replaces a body's marrow (or collapses it) looks like no body the
network was trained on: its body probability falls to 0.3-0.6 over most of
the body, the thresholded map keeps a fragment or nothing, and the chain ends
one body short although the image shows the next one.

- Under the chain (S1 under L5): on the evaluation's implanted T1 + STIR
  studies (VB1_02+03, ``scripts/evaluate_signs.py``) S1 was lost so in 4 of 15
  studies, each time with an S1 lesion or malignant fracture: mean body
  probability 0.32-0.50 over the true S1, under 0.35 L5 probability.
- Above the chain: in the same run a benign grade-3 collapse of T10 near the
  top of the image (#24) was lost: mean body probability 0.55, and only 2.8 of
  its 7.2 ml cleared the threshold.

So the segment past the disc cut beyond the chain's end body is searched again
at a lower probability. The body is taken by a watershed from a seed next to
that cut against a seed further out (the next body beyond, still at high
probability), so the two do not merge.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.segmentation import watershed

from analysis.vertebrae.axis import (
    BODY_HALF_DEPTH_MM,
    BODY_THRESHOLD,
    below_cut_mm,
    disc_cuts,
    off_axis_mm,
    plane_grid_mm,
    spine_axis,
)
from analysis.vertebrae.features import FloatArray
from analysis.vertebrae.segment import (
    BodyCandidate,
    disk,
    largest_component,
    make_candidate,
    trim_body,
)

# On the four lost S1s a threshold of 0.4 gave Dice 0.35-0.74 with the true S1 (0.3:
# 0.36-0.72 with more overshoot; 0.5: 0.22-0.76, the smallest pieces)
_LOW_PROB = 0.4
_SEED_FROM_CUT_MM = 2.0
_SEED_HALF_DEPTH_MM = 7.0
_SEED_DEPTH_STEPS = 0.6  # the seed reaches this many body-to-body steps past the cut
_SECOND_SEGMENT_STEPS = 0.9  # the next body's (S2's) seed lies this far past the cut
_ABOVE_CUT_STEPS = 0.25  # a tilted disc (S1's back) crosses the straight cut
_CLEAR_OF_END_MM = 1.5
_MIN_VOLUME_FRACTION = 0.25  # of the median body of the chain
_MIN_MEAN_PROB = 0.45


def sacral_second_look(
    body_prob: FloatArray,
    l5_prob: FloatArray,
    chain: list[BodyCandidate],
    spacing: tuple[float, float, float],
) -> BodyCandidate | None:
    """S1 under the chain's lowest body (taken to be L5), found at a lower body probability.

    ``chain`` is top to bottom and at least two bodies long. Returns None when
    no disc cut lies under the lowest body or nothing body-like lies under it.
    """
    return second_look(body_prob, l5_prob, chain, spacing, below=True)


def second_look(
    body_prob: FloatArray,
    l5_prob: FloatArray,
    chain: list[BodyCandidate],
    spacing: tuple[float, float, float],
    below: bool,
) -> BodyCandidate | None:
    """The body past the chain's lowest (``below``) or top body, at a lower body probability.

    ``chain`` is top to bottom and at least two bodies long. Returns None when
    no disc cut lies past the end body or nothing body-like lies past it.
    """
    if len(chain) < 2:
        raise ValueError(f"chain must hold at least two bodies, got {len(chain)}")
    if body_prob.shape != l5_prob.shape or body_prob.ndim != 3:
        raise ValueError("body_prob and l5_prob must be 3-D arrays of the same shape")
    axis = spine_axis(body_prob, spacing)
    if axis is None:
        return None
    end = chain[-1] if below else chain[0]
    cuts, _, _ = disc_cuts(body_prob, axis, spacing)
    past = sorted(c for c in cuts if (c > end.centroid_mm[1]) == below)
    if not past:
        return None
    centres = np.array([[c.centroid_mm[1], c.centroid_mm[2]] for c in chain])
    step = float(np.median(np.hypot(*np.diff(centres, axis=0).T)))
    si_mm, ap_mm = plane_grid_mm(body_prob.shape, spacing)
    # distance beyond the cut, away from the chain
    beyond = below_cut_mm(axis, past[0] if below else past[-1], si_mm, ap_mm) * (1.0 if below else -1.0)
    off = off_axis_mm(axis, si_mm, ap_mm)
    taken = np.zeros(body_prob.shape, dtype=bool)
    for c in chain:
        taken |= c.mask
    clear = ~ndimage.binary_dilation(
        taken, structure=disk((_CLEAR_OF_END_MM / spacing[1], _CLEAR_OF_END_MM / spacing[2]))
    )
    window = (beyond > -_ABOVE_CUT_STEPS * step) & (off <= BODY_HALF_DEPTH_MM + 10.0)
    region = (body_prob >= _LOW_PROB) & window[None] & clear
    first = (beyond >= _SEED_FROM_CUT_MM) & (beyond <= _SEED_DEPTH_STEPS * step)
    seed = region & (first & (off <= _SEED_HALF_DEPTH_MM))[None]
    if not seed.any():
        return None
    further = region & (body_prob >= BODY_THRESHOLD) & (beyond >= _SECOND_SEGMENT_STEPS * step)[None]
    markers = seed.astype(np.int32) + 2 * (further & ~seed)
    basin = watershed(-body_prob, markers=markers, mask=region) == 1
    basin = np.stack([ndimage.binary_fill_holes(s) for s in basin])
    found = trim_body(largest_component(basin), spacing)
    cand = make_candidate(found, body_prob, l5_prob, taken, spacing)
    if cand is None:
        return None
    typical = float(np.median([c.volume_ml for c in chain]))
    if cand.volume_ml < _MIN_VOLUME_FRACTION * typical or cand.mean_prob < _MIN_MEAN_PROB:
        return None
    return cand
