"""Invariants of the sign assessment (hypothesis)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analysis.results import SignState
from analysis.signs import LevelSigns, assess_signs
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
