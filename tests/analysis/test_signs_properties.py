"""Invariants of the sign assessment (hypothesis)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from analysis.results import SignState
from analysis.signs import LevelSigns, assess_signs
from analysis.sitk_adapter import footprint_like, resample_like
from analysis.thresholds import DEFAULT_THRESHOLDS, SignThresholds
from analysis.volume import LEVEL_LABELS, Sequence, Volume
from phantom.mimics import MimicKind, MimicSpec, paint_mimics
from tests.analysis.test_signs_phantom import epidural_extension, focal_lesion, normal_spine

SEQS = (Sequence.T1, Sequence.STIR, Sequence.T2)
_SPINE = normal_spine()
focal_lesion(_SPINE, "L4", radius_mm=7.0)
focal_lesion(_SPINE, "L3", radius_mm=7.0, what="faint")  # the faint T1 bar's seed and guard
epidural_extension(_SPINE, "L2")
_VOLS = _SPINE.render(SEQS, rng_seed=3)
_SEG = _SPINE.segmentation()
_BASE = {ls.level: ls for ls in assess_signs(_VOLS, _SEG)}

STATES = ("marrow_infiltration", "marrow_t1", "marrow_fluid", "cortical_destruction", "soft_tissue_extension",
          "pedicle_involvement", "canal_compromise", "suspicious_for_malignancy")


def _states(ls: LevelSigns) -> tuple[SignState, ...]:
    return tuple(getattr(ls, s) for s in STATES)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scales=st.tuples(*(st.floats(0.01, 500.0) for _ in SEQS)))
def test_signs_do_not_depend_on_intensity_units(scales: tuple[float, ...]) -> None:
    """Scanners report arbitrary units: scaling any sequence changes nothing."""
    vols = {q: v.with_array(v.array.astype(np.float64) * s) for (q, v), s in zip(_VOLS.items(), scales,
                                                                                   strict=True)}
    out = {ls.level: ls for ls in assess_signs(vols, _SEG)}
    for level, base in _BASE.items():
        assert _states(out[level]) == _states(base)
        assert out[level].lesion_fraction_pct == pytest.approx(base.lesion_fraction_pct)
        if base.t1_marrow_disc_ratio is not None:
            assert out[level].t1_marrow_disc_ratio == pytest.approx(base.t1_marrow_disc_ratio)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(subset=st.sets(st.sampled_from(SEQS), min_size=1))
def test_missing_sequences_only_ever_make_signs_indeterminate_or_keep_them(subset: set[Sequence]) -> None:
    """Dropping a sequence never turns a found sign into its opposite on this spine."""
    vols = {q: _VOLS[q] for q in subset}
    out = {ls.level: ls for ls in assess_signs(vols, _SEG)}
    for level, base in _BASE.items():
        now = out[level]
        if Sequence.T1 not in subset:
            assert now.marrow_t1 == SignState.INDETERMINATE and now.t1_marrow_disc_ratio is None
        if not subset & {Sequence.T2, Sequence.STIR}:
            assert now.marrow_fluid == SignState.INDETERMINATE
        for name in ("suspicious_for_malignancy", "marrow_infiltration"):
            b, n = getattr(base, name), getattr(now, name)
            assert n == b or n == SignState.INDETERMINATE or (
                b == SignState.PRESENT and n == SignState.PRESENT), (level, name, subset)


def _smaller_field(vol: Volume, top: float, bottom: float) -> tuple[Volume, Volume]:
    """``vol`` acquired with ``top``/``bottom`` of its rows (head-foot) left out, as the node puts
    it on the bodies' grid: resampled (padded) and its footprint."""
    rows = vol.array.shape[1]
    small = vol.crop((slice(None), slice(int(top * rows), rows - int(bottom * rows)), slice(None)))
    return resample_like(small, vol), footprint_like(small, vol)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seq=st.sampled_from(SEQS), top=st.floats(0.0, 0.35), bottom=st.floats(0.0, 0.35))
@example(seq=Sequence.T1, top=0.2, bottom=0.2)  # its padding, read as dark T1 marrow: L1, L5 suspicious
@example(seq=Sequence.STIR, top=0.2, bottom=0.2)  # L1 and L5 indeterminate with a T2 to read them on
def test_a_sequence_with_a_smaller_field_of_view_never_reverses_a_sign(
        seq: Sequence, top: float, bottom: float) -> None:
    """Outside its field of view a series is padding, not dark marrow: a level it misses is read
    on the others (a sign found stays found or becomes indeterminate, and none is invented)."""
    padded, footprint = _smaller_field(_VOLS[seq], top, bottom)
    vols = {**_VOLS, seq: padded}
    out = {ls.level: ls for ls in assess_signs(vols, _SEG, footprints={seq: footprint})}
    for level, base in _BASE.items():
        for name in ("suspicious_for_malignancy", "marrow_infiltration", "cortical_destruction",
                     "soft_tissue_extension"):
            b, n = getattr(base, name), getattr(out[level], name)
            assert n in (b, SignState.INDETERMINATE), (level, name, seq, top, bottom)
        if seq == Sequence.STIR:  # the T2 reads the marrow where the STIR does not reach
            assert out[level].marrow_fluid == base.marrow_fluid, (level, top, bottom)


def test_a_level_a_series_misses_says_so() -> None:
    padded, footprint = _smaller_field(_VOLS[Sequence.T1], 0.3, 0.3)
    out = assess_signs({**_VOLS, Sequence.T1: padded}, _SEG, footprints={Sequence.T1: footprint})
    missed = [ls for ls in out if ls.marrow_t1 == SignState.INDETERMINATE]
    assert missed and len(missed) < len(out)
    for ls in missed:
        assert any("the sagittal T1 does not cover the body" in r for r in ls.reasons), ls.reasons


def test_enhancement_on_a_body_the_pre_contrast_t1_misses_says_so() -> None:
    vols = _SPINE.render((Sequence.T1, Sequence.T1C, Sequence.T2), rng_seed=3)
    padded, footprint = _smaller_field(vols[Sequence.T1], 0.3, 0.3)
    out = assess_signs({**vols, Sequence.T1: padded}, _SEG, footprints={Sequence.T1: footprint})
    missed = [ls for ls in out if ls.marrow_t1 == SignState.INDETERMINATE]
    assert missed
    for ls in missed:
        assert ls.enhancement == SignState.INDETERMINATE
        said = "the sagittal T1 does not cover the body: enhancement not assessed"
        assert any(said in r for r in ls.reasons), ls.reasons
        assert not any("without a pre-contrast T1" in r for r in ls.reasons), ls.reasons


_NORMAL = normal_spine()
_NORMAL_VOLS = _NORMAL.render(SEQS, rng_seed=5)
_NORMAL_SEG = _NORMAL.segmentation()


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(slope=st.floats(-0.35, 0.35), curve=st.floats(-0.2, 0.2))
def test_a_coil_fall_off_along_the_spine_flags_no_normal_body(slope: float, curve: float) -> None:
    """A receive coil's sensitivity changes from level to level and scales every sequence alike
    (on the real T1+STIR pair bodies range 0.74-1.23 of the study's marrow on T1 and 0.72-1.28
    on STIR): a normal spine stays normal."""
    rows = _NORMAL_VOLS[Sequence.T1].array.shape[1]
    x = np.linspace(-1.0, 1.0, rows)
    gain = np.exp(slope * x + curve * x**2)[None, :, None]
    vols = {q: v.with_array((v.array * gain).astype(np.float32)) for q, v in _NORMAL_VOLS.items()}
    for subset in (SEQS, (Sequence.T1, Sequence.STIR)):
        out = assess_signs({q: vols[q] for q in subset}, _NORMAL_SEG)
        assert all(ls.suspicious_for_malignancy == SignState.ABSENT for ls in out), (subset, slope, curve)
        assert all(ls.marrow_infiltration == SignState.ABSENT for ls in out)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kinds=st.lists(st.sampled_from(list(MimicKind)), min_size=1, max_size=3),
       seed=st.integers(0, 2**16))
def test_benign_mimics_are_not_called_infiltration(kinds: list[MimicKind], seed: int) -> None:
    """A haemangioma, a fat island or patchy red marrow (``phantom.mimics``) in a normal spine:
    with T1 no level has infiltration, and with one fluid-sensitive sequence alone no level is
    more than indeterminate."""
    labels = _NORMAL_SEG.labels.array
    spacing = _NORMAL_SEG.labels.spacing_kji
    specs = [MimicSpec(LEVEL_LABELS[lv], kind) for lv, kind in zip(("L2", "L3", "L4"), kinds, strict=False)]
    painted = paint_mimics({q: v.array for q, v in _NORMAL_VOLS.items()}, labels, spacing, specs,
                           np.random.default_rng(seed))
    vols = {q: _NORMAL_VOLS[q].with_array(a) for q, a in painted.items()}
    for subset in (SEQS, (Sequence.T1, Sequence.STIR), (Sequence.T1, Sequence.T2), (Sequence.STIR,),
                   (Sequence.T2,)):
        out = assess_signs({q: vols[q] for q in subset}, _NORMAL_SEG)
        assert not any(ls.marrow_infiltration == SignState.PRESENT for ls in out), (subset, specs)
        assert not any(ls.suspicious_for_malignancy == SignState.PRESENT for ls in out), (subset, specs)


def test_flipping_left_right_changes_nothing() -> None:
    """The left/right sense of the slices is unknown in the shared data; it must not matter."""
    # the direction tuple is row-major: the k axis (slices) is its third column
    flip = tuple(-v if i in (2, 5, 8) else v for i, v in enumerate(_SEG.labels.direction))
    def flipped(v: Volume) -> Volume:
        return Volume(v.array[::-1].copy(), v.spacing, v.origin, flip)
    vols = {q: flipped(v) for q, v in _VOLS.items()}
    seg = dataclasses.replace(_SEG, labels=flipped(_SEG.labels))
    out = {ls.level: ls for ls in assess_signs(vols, seg)}
    for level, base in _BASE.items():
        assert _states(out[level]) == _states(base)


def test_thresholds_are_frozen_versioned_and_checked() -> None:
    assert DEFAULT_THRESHOLDS.version
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEFAULT_THRESHOLDS.min_lesion_mm3 = 1.0  # type: ignore[misc]
    with pytest.raises(ValueError, match="min_lesion_mm3"):
        SignThresholds(min_lesion_mm3=-1.0)
    with pytest.raises(ValueError, match="version"):
        SignThresholds(version="")
    assert DEFAULT_THRESHOLDS.canal_limit("L1") == pytest.approx(14.5)
    assert DEFAULT_THRESHOLDS.canal_limit("S1") == pytest.approx(10.0)
    assert DEFAULT_THRESHOLDS.canal_limit("C5") is None
