"""Marrow infiltration: T1 against disc/muscle, T2/STIR against normal marrow.

Only ratios are used, so any scanner's arbitrary units (and any positive
rescaling) give the same answer. A lesion is seeded in the body's core (away
from the partial-volume rim) and grown by hysteresis to the whole body; with
both T1 and a fluid-sensitive sequence a voxel must be dark on T1 *and* bright
on T2/STIR, which is what tumour replacing fat looks like.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage

from analysis.results import SignState
from analysis.signs.context import BodyCrop, StudyContext
from analysis.signs.geometry import BoolArray, FloatArray, components
from analysis.thresholds import SignThresholds
from analysis.volume import Sequence

_NO_T1 = "the T1 marrow criterion (Carroll) cannot be assessed"


@dataclass(frozen=True, eq=False)
class MarrowResult:
    state: SignState
    t1_state: SignState
    fluid_state: SignState
    enhancement: SignState
    pattern: str | None
    fraction_pct: float | None
    lesion_count: int
    t1_disc_ratio: float | None
    t1_muscle_ratio: float | None
    lesion: BoolArray  # in the crop
    seeds: BoolArray
    grow_thresholds: dict[Sequence, tuple[str, float]]  # seq -> ("<"|">", value)
    normal_ref: dict[Sequence, float]
    reasons: tuple[str, ...]
    # the lower of the body's two halves' STIR/T1 quotient when that found the body replaced
    stir_t1_quotient: float | None = None
    # ... or, when True, the STIR/T1 quotient of a focus against the body's own marrow
    quotient_focal: bool = False
    # a faint focus found by the STIR/T1 quotient that counts only with a mass beside it
    # (thresholds.stir_t1_mass_quotient); the caller decides, after following its spread
    mass_candidate: MassCandidate | None = None


def _median(img: FloatArray, mask: BoolArray) -> float | None:
    if not mask.any():
        return None
    return float(np.median(img[mask]))


def _ratio(num: float | None, den: float | None) -> float | None:
    if num is None or den is None or den <= 0:
        return None
    return num / den


def carroll_replaced(t1_disc_ratio: float | None, t1_muscle_ratio: float | None, th: SignThresholds) -> bool:
    """The whole body's marrow iso- or hypointense to disc on T1 (to muscle where no disc was found).

    Carroll: the disc rule was the more specific (hyperintense to disc 12/12 normal,
    to muscle 17/20), so muscle decides only where no disc was found."""
    if t1_disc_ratio is not None:
        return t1_disc_ratio <= th.t1_marrow_disc_max
    return t1_muscle_ratio is not None and t1_muscle_ratio <= th.t1_marrow_muscle_max


def assess_marrow(ctx: StudyContext, crop: BodyCrop) -> MarrowResult:
    th = ctx.thresholds
    reasons: list[str] = []
    body, core = crop.body, crop.core
    seed = np.ones_like(body)
    grow = np.ones_like(body)
    grow_thr: dict[Sequence, tuple[str, float]] = {}
    normal_ref: dict[Sequence, float] = {}
    used_any = False

    t1_ratio = t1_muscle = None
    diffuse_t1 = False
    faint: _FaintBar | None = None
    fluid_grow: BoolArray | None = None
    t1_seed: BoolArray | None = None
    if Sequence.T1 in crop.images:
        t1 = crop.images[Sequence.T1]
        own = _median(t1, core)
        disc_ref = _median(t1, crop.discs)
        muscle_ref = _median(t1, crop.muscle) if crop.muscle is not None else None
        if disc_ref is None and muscle_ref is None and Sequence.T1 in ctx.disc_ref:
            # no disc next to the body (a collapsed S1 leaves too wide a gap to derive one):
            # disc signal differs little from level to level, so the study's discs stand in,
            # rather than leave the fluid-sensitive image to decide alone
            disc_ref = ctx.disc_ref[Sequence.T1]
            reasons.append(f"{crop.level}: no disc next to the body: T1 compared with the study's "
                           "other discs")
        t1_ratio, t1_muscle = _ratio(own, disc_ref), _ratio(own, muscle_ref)
        ref = disc_ref if disc_ref is not None else muscle_ref
        if ref is None or own is None:
            reasons.append(f"{crop.level}: no disc or muscle next to the body to compare T1 with")
        else:
            diffuse_t1 = carroll_replaced(t1_ratio, t1_muscle, th)
            normal = max(own, ctx.marrow_ref.get(Sequence.T1, own))
            normal_ref[Sequence.T1] = normal
            s_thr = th.t1_focal_disc_max * ref
            if ctx.fluid is None:  # nothing to confirm it: clearly darker than disc and own marrow
                s_thr = th.t1_alone_max * min(ref, own)
            elif th.t1_focal_marrow_max * normal > s_thr:
                faint = _FaintBar(t1, own, th.t1_focal_marrow_max * normal, normal,
                                  crop.inner_mm > th.t1_faint_depth_mm, th)
            g_thr = s_thr + th.grow_fraction * max(normal - s_thr, 0.0)
            t1_seed = core & (t1 < s_thr)
            seed &= t1_seed
            grow &= t1 < g_thr
            grow_thr[Sequence.T1] = ("<", g_thr)
            used_any = True

    fluid_seed: BoolArray | None = None
    diffuse_fluid = False
    diffuse_fluid_thr = 0.0
    if ctx.fluid is not None:
        fl = crop.images[ctx.fluid]
        own_f = _median(fl, core)
        if own_f is not None and own_f > 0:
            # focal lesions against the body's own marrow; a whole body replaced
            # shows against the other bodies of the study instead
            study_f = ctx.marrow_ref.get(ctx.fluid, own_f)
            stir = ctx.fluid == Sequence.STIR
            d_ratio = th.stir_diffuse_ratio if stir else th.t2_diffuse_ratio
            diffuse_fluid = own_f >= d_ratio * study_f
            diffuse_fluid_thr = study_f * (1.0 + th.grow_fraction * (d_ratio - 1.0))
            normal = study_f if diffuse_fluid else own_f
            normal_ref[ctx.fluid] = normal
            if Sequence.T1 in grow_thr:  # confirmed by dark T1: a lower bar
                ratio = th.stir_focal_ratio if stir else th.t2_focal_ratio
            else:
                ratio = th.stir_alone_focal_ratio if stir else th.t2_alone_focal_ratio
            s_thr = ratio * normal
            g_thr = normal + th.grow_fraction * (s_thr - normal)
            fluid_seed = core & (fl > s_thr)
            seed &= fluid_seed
            fluid_grow = fl > g_thr
            grow &= fluid_grow
            grow_thr[ctx.fluid] = (">", g_thr)
            used_any = True

    if not used_any:
        empty = np.zeros_like(body)
        reasons.append(f"{crop.level}: no usable T1, T2 or STIR signal in the body")
        ind = SignState.INDETERMINATE
        return MarrowResult(ind, ind, ind, ind, None, None, 0, t1_ratio, t1_muscle, empty, empty,
                            grow_thr, normal_ref, tuple(reasons))

    seed &= body
    voxel = ctx.frame.voxel_mm3
    min_vox = max(1, int(np.ceil(th.min_lesion_mm3 / voxel)))
    # The cortex is dark on every sequence: without a fluid-sensitive image to
    # tell it from tumour, a T1 lesion may not grow into the body's rim.
    room = body if fluid_seed is not None else core
    grown, kept = _grow(seed, grow & room, min_vox)
    candidate: MassCandidate | None = None
    if faint is not None and fluid_seed is not None and fluid_grow is not None and t1_seed is not None:
        free = body & ~grown
        stir_ref = normal_ref.get(Sequence.STIR, 0.0)
        stir_rel = crop.images[Sequence.STIR] / stir_ref if ctx.fluid == Sequence.STIR and stir_ref > 0 \
            else None
        faint_kept, faint_seed = faint.regions(fluid_seed & free, fluid_grow & free, min_vox,
                                               stir_rel, th.stir_t1_focal_quotient)
        kept += faint_kept
        seed |= faint_seed
        t1_seed = t1_seed | faint_seed
        if stir_rel is not None and th.stir_t1_mass_quotient > 0:
            for region in faint_kept:
                free &= ~region
            more, more_seed = faint.regions(fluid_seed & free, fluid_grow & free, min_vox,
                                            stir_rel, th.stir_t1_mass_quotient)
            if more:
                candidate = _mass_candidate(crop, np.logical_or.reduce(more), more_seed)
    lesion = np.logical_or.reduce(kept) if kept else np.zeros_like(body)
    pair = _replaced_by_quotient(ctx, crop, lesion)
    diffuse_pair = pair is not None
    if diffuse_pair:
        lesion = lesion | body
    if diffuse_t1 and t1_seed is not None:
        lesion = lesion | (body & (crop.images[Sequence.T1] < grow_thr[Sequence.T1][1]))
    # the fluid criterion decides "diffuse" only where no T1 can
    diffuse_fluid = diffuse_fluid and t1_seed is None
    if diffuse_fluid and ctx.fluid is not None:
        lesion = lesion | (body & (crop.images[ctx.fluid] > diffuse_fluid_thr))
    if pair is not None:
        # after the T1 lesion above, which grows by the T1 bar of the other criteria:
        # tissue outside the body is lesion-like by the same token: past half-way from the
        # study's marrow to this body's signal (the body's own marrow is the lesion)
        grow_thr.update(pair.bars)
    fraction = 100.0 * float(lesion.sum()) / float(body.sum())
    present = bool(kept) or diffuse_t1 or diffuse_fluid or diffuse_pair
    pattern = None
    if present:
        diffuse = diffuse_t1 or diffuse_fluid or diffuse_pair or fraction >= th.diffuse_fraction_pct
        pattern = "diffuse" if diffuse else "focal"

    def criterion(single_seed: BoolArray | None, extra: bool) -> SignState:
        if single_seed is None:
            return SignState.INDETERMINATE
        if extra or any(_seeded(c, single_seed, min_vox) for c in kept):
            return SignState.PRESENT
        return SignState.ABSENT

    t1_state = criterion(t1_seed, diffuse_t1 or diffuse_pair)
    fluid_state = criterion(fluid_seed, diffuse_fluid or diffuse_pair)
    if Sequence.T1 not in crop.images:
        reasons.append(f"{crop.level}: {ctx.lacking(Sequence.T1)}: {_NO_T1}")
    if fluid_seed is None:
        reasons.append(f"{crop.level}: {ctx.lacking(Sequence.STIR, Sequence.T2)}: marrow hyperintensity "
                       "cannot be assessed, and T1 alone cannot exclude a focal lesion")
    if present:
        state = SignState.PRESENT
    elif t1_state == SignState.ABSENT and fluid_state == SignState.ABSENT:
        # absent only when both contrasts were looked at: calibration showed
        # neither alone separates small lesions from real normal marrow
        state = SignState.ABSENT
    else:
        state = SignState.INDETERMINATE
    enhancement = _enhancement(ctx, crop, lesion, reasons)
    return MarrowResult(state, t1_state, fluid_state, enhancement, pattern,
                        fraction if present else 0.0, len(kept) or int(present), t1_ratio, t1_muscle,
                        lesion if present else np.zeros_like(body), seed, grow_thr, normal_ref,
                        tuple(reasons), None if pair is None else pair.quotient,
                        mass_candidate=candidate if not present else None)


@dataclass(frozen=True, eq=False)
class MassCandidate:
    """A faint focus (crop mask and its seeds) and the bars its spread is followed by: half-way
    from the body's marrow to the focus's own signal, since its T1 is over the strong bar's."""

    lesion: BoolArray
    seeds: BoolArray
    grow_thresholds: dict[Sequence, tuple[str, float]]
    quotient: float  # the focus's STIR/T1 quotient against the body's marrow


def with_candidate(crop: BodyCrop, marrow: MarrowResult, th: SignThresholds) -> MarrowResult:
    """``marrow`` with its faint focus taken as the lesion (once a mass beside it was found)."""
    cand = marrow.mass_candidate
    if cand is None:
        raise ValueError("marrow has no mass_candidate")
    fraction = 100.0 * float(cand.lesion.sum()) / float(crop.body.sum())
    reason = (f"{crop.level}: a faint focus darker on T1 and brighter on STIR than the body's marrow, "
              "counted for the soft-tissue mass beside it")
    present = SignState.PRESENT
    return replace(marrow, state=present, t1_state=present, fluid_state=present,
                   pattern="diffuse" if fraction >= th.diffuse_fraction_pct else "focal",
                   fraction_pct=fraction, lesion_count=1, lesion=cand.lesion, seeds=cand.seeds,
                   grow_thresholds={**marrow.grow_thresholds, **cand.grow_thresholds},
                   reasons=(*marrow.reasons, reason), stir_t1_quotient=cand.quotient, quotient_focal=True,
                   mass_candidate=None)


def _mass_candidate(crop: BodyCrop, region: BoolArray, seeds: BoolArray) -> MassCandidate | None:
    t1, stir = crop.images[Sequence.T1], crop.images[Sequence.STIR]
    rest = crop.core & ~region
    own_t1, own_stir = _median(t1, rest), _median(stir, rest)
    if own_t1 is None or own_stir is None:
        return None
    sig_t1, sig_stir = float(np.median(t1[region])), float(np.median(stir[region]))
    if own_t1 <= 0 or own_stir <= 0 or sig_t1 <= 0:
        return None
    return MassCandidate(region, seeds & region, _halfway_bars((own_t1, sig_t1), (own_stir, sig_stir)),
                         _stir_t1_quotient(sig_t1, sig_stir, own_t1, own_stir))


def _stir_t1_quotient(t1: float, stir: float, ref_t1: float, ref_stir: float) -> float:
    """STIR against its reference divided by T1 against its reference: tumour replacing fat
    raises the first and lowers the second, while a coil's fall-off scales both alike."""
    return (stir / ref_stir) / (t1 / ref_t1)


def _halfway_bars(t1: tuple[float, float], stir: tuple[float, float]) -> dict[Sequence, tuple[str, float]]:
    """Growth bars half-way between two T1 and two STIR signals (marrow and lesion)."""
    return {Sequence.T1: ("<", (t1[0] + t1[1]) / 2.0), Sequence.STIR: (">", (stir[0] + stir[1]) / 2.0)}


@dataclass(frozen=True)
class _PairReplaced:
    """A body found replaced by its STIR/T1 quotient: the lower of its halves' quotients, and the
    bars half-way between the study's marrow and the body's signal."""

    quotient: float
    bars: dict[Sequence, tuple[str, float]]


def _replaced_by_quotient(ctx: StudyContext, crop: BodyCrop, found: BoolArray) -> _PairReplaced | None:
    """A whole body replaced, read from T1 and STIR together: its STIR signal against the study's
    marrow, divided by its T1 signal against the study's marrow, reaches the quotient bar in its
    upper and in its lower half.

    Tumour replacing fat darkens T1 and brightens STIR at once, while a receive coil's fall-off
    along the spine scales both the same way and cancels in the quotient; a faint diffuse lesion
    stays under Carroll's disc rule and under the STIR-alone diffuse bar, and has no brighter
    focus in its own body to seed from. STIR only: T2 without fat suppression keeps fat bright.

    Each half is read outside the lesions ``found`` by the other criteria. Marrow kept beside a
    lesion is what a fracture's edema band leaves and diffuse replacement does not (Cuénod): a
    band under one endplate of a crushed body can fill most of it, never both halves."""
    bar = ctx.thresholds.stir_t1_diffuse_quotient
    if bar <= 0 or ctx.fluid != Sequence.STIR or Sequence.T1 not in crop.images:
        return None
    ref_t1, ref_stir = ctx.marrow_ref.get(Sequence.T1), ctx.marrow_ref.get(Sequence.STIR)
    if ref_t1 is None or ref_stir is None or ref_t1 <= 0 or ref_stir <= 0:
        return None
    t1_img, stir_img = crop.images[Sequence.T1], crop.images[Sequence.STIR]
    rest = crop.core & ~found
    rows = np.nonzero(crop.body.any(axis=(0, 2)))[0]
    upper = (np.arange(crop.body.shape[1]) < (rows.min() + rows.max() + 1) / 2.0)[None, :, None]
    quotients = []
    for half in (rest & upper, rest & ~upper):
        t1, stir = _median(t1_img, half), _median(stir_img, half)
        if t1 is None or stir is None or t1 <= 0:
            return None
        quotients.append(_stir_t1_quotient(t1, stir, ref_t1, ref_stir))
    if min(quotients) < bar:
        return None
    own_t1, own_stir = _median(t1_img, rest), _median(stir_img, rest)
    assert own_t1 is not None and own_stir is not None  # both halves were read
    return _PairReplaced(min(quotients), _halfway_bars((own_t1, ref_t1), (own_stir, ref_stir)))


def _seeded(region: BoolArray, seed: BoolArray, min_vox: int) -> bool:
    """A region holds enough seed voxels to count (a third of the smallest lesion)."""
    return int((region & seed).sum()) >= max(1, min_vox // 3)


def _grow(seed: BoolArray, room: BoolArray, min_vox: int) -> tuple[BoolArray, list[BoolArray]]:
    """``seed`` grown through ``room`` (26-connected), and its components of at least ``min_vox``
    voxels that are seeded enough to count."""
    grown = ndimage.binary_propagation(seed, mask=room | seed, structure=np.ones((3, 3, 3), bool))
    return grown, [c for c in components(grown, min_vox) if _seeded(c, seed, min_vox)]


@dataclass(frozen=True, eq=False)
class _FaintBar:
    """A T1 lesion not darker than disc but darker than a share of normal marrow, confirmed
    by the fluid-sensitive seed. It seeds only deep in the body, since a segmentation drawn
    wider than the body puts cortex and paravertebral tissue of that T1 signal in its rim,
    and a region counts only when it is darker than the body's own marrow as a whole."""

    t1: FloatArray
    own: float
    seed_below: float
    normal: float
    deep: BoolArray
    th: SignThresholds

    def regions(self, fluid_seed: BoolArray, fluid_grow: BoolArray, min_vox: int,
                stir_rel: FloatArray | None = None,
                quotient: float = 0.0) -> tuple[list[BoolArray], BoolArray]:
        """The faint regions kept, and their seeds, outside what the strong bar found.

        With STIR (``stir_rel``: STIR against the body's marrow) and a ``quotient`` over 0, a
        voxel also seeds where its STIR excess over its T1 excess reaches it: the T1 bar then
        rises with the STIR signal, since tumour faint on T1 is faint on STIR by the same share
        and a brighter STIR focus needs less T1 darkening to be told from marrow."""
        dark = self.t1 < self.seed_below
        if stir_rel is not None and quotient > 0:
            dark = dark | (stir_rel * self.own >= quotient * self.t1)
        seed = self.deep & dark & fluid_seed
        grow_below = self.seed_below + self.th.grow_fraction * max(self.normal - self.seed_below, 0.0)
        _, regions = _grow(seed, fluid_grow & (self.t1 < grow_below), min_vox)
        kept = [c for c in regions if float(np.median(self.t1[c])) <= self.th.t1_faint_region_max * self.own]
        return kept, (seed & np.logical_or.reduce(kept)) if kept else np.zeros_like(seed)


def _enhancement(ctx: StudyContext, crop: BodyCrop, lesion: BoolArray, reasons: list[str]) -> SignState:
    if Sequence.T1C not in crop.images or Sequence.T1 not in crop.images:
        if Sequence.T1 in ctx.outside or Sequence.T1C in ctx.outside:
            missing = [seq for seq in (Sequence.T1, Sequence.T1C) if seq in ctx.outside]
            reasons.append(f"{crop.level}: {ctx.lacking(*missing)}: enhancement not assessed")
        elif Sequence.T1C in crop.images:
            reasons.append(f"{crop.level}: post-contrast T1 without a pre-contrast T1: "
                           "enhancement not assessed")
        return SignState.INDETERMINATE
    if not lesion.any():
        return SignState.ABSENT
    pre, post = crop.images[Sequence.T1], crop.images[Sequence.T1C]
    normal = crop.core & ~lesion
    ok = pre > 0
    if not (normal & ok).any() or not (lesion & ok).any():
        reasons.append(f"{crop.level}: no normal marrow left to compare enhancement with")
        return SignState.INDETERMINATE
    rise_lesion = float(np.median(post[lesion & ok] / pre[lesion & ok]))
    rise_normal = float(np.median(post[normal & ok] / pre[normal & ok]))
    if rise_normal <= 0:
        return SignState.INDETERMINATE
    return SignState.PRESENT if rise_lesion / rise_normal >= ctx.thresholds.enhancement_min_rise \
        else SignState.ABSENT
