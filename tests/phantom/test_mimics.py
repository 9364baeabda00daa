"""Benign mimics: signal against the body's own marrow and disc, confined to their body."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from analysis.volume import Sequence
from phantom.mimics import MimicKind, MimicSpec, paint_mimics
from tests.phantom.spine_blocks import BODY_LABELS, I0, I1, K0, K1, SPACING, TISSUE, block_spine

L3 = BODY_LABELS[2]


def _paint(*specs: MimicSpec, seed: int = 1, t1_disc: float | None = None
           ) -> tuple[dict[Sequence, np.ndarray], dict[Sequence, np.ndarray], np.ndarray]:
    images, labels = block_spine()
    if t1_disc is not None:
        disc = np.zeros_like(labels, dtype=bool)
        disc[K0:K1, 10:195, I0:I1] = True
        disc &= labels == 0
        images[Sequence.T1][disc] = t1_disc
    return images, paint_mimics(images, labels, SPACING, specs, np.random.default_rng(seed)), labels


def _top(diff: np.ndarray, n: int) -> np.ndarray:
    """The ``n`` voxels of largest ``diff``: the mimic's centre."""
    return diff >= np.sort(diff, axis=None)[-n]


def _ratio(before: np.ndarray, after: np.ndarray, where: np.ndarray) -> float:
    return float(np.median(after[where].astype(float)) / np.median(before[where].astype(float)))


def test_haemangioma_is_bright_on_t1_t2_and_stir() -> None:
    before, after, _ = _paint(MimicSpec(L3, MimicKind.HAEMANGIOMA, radius_mm=6.0))
    centre = _top(after[Sequence.STIR].astype(float) - before[Sequence.STIR], 50)
    assert 1.1 <= _ratio(before[Sequence.T1], after[Sequence.T1], centre) <= 1.45
    assert _ratio(before[Sequence.T2], after[Sequence.T2], centre) >= 1.25
    assert _ratio(before[Sequence.STIR], after[Sequence.STIR], centre) >= 1.5


def test_fat_island_is_bright_on_t1_and_dark_on_stir() -> None:
    before, after, _ = _paint(MimicSpec(L3, MimicKind.FAT_ISLAND, radius_mm=5.0))
    centre = _top(before[Sequence.STIR].astype(float) - after[Sequence.STIR], 20)
    assert _ratio(before[Sequence.T1], after[Sequence.T1], centre) >= 1.15
    assert _ratio(before[Sequence.STIR], after[Sequence.STIR], centre) <= 0.65


def test_red_marrow_stays_brighter_than_disc_on_t1() -> None:
    # a disc nearly as bright as marrow on T1: the drawn red marrow signal would fall under it
    disc = 0.8 * TISSUE[Sequence.T1][0]
    before, after, labels = _paint(MimicSpec(L3, MimicKind.RED_MARROW), seed=3, t1_disc=disc)
    # the body's dark rim (cortex) takes the same shift; the islands are read in the marrow
    core = ndimage.binary_erosion(labels == L3, iterations=2)
    patch = _top(np.where(core, after[Sequence.STIR].astype(float) - before[Sequence.STIR], -np.inf), 100)
    t1 = after[Sequence.T1][patch].astype(float)
    # the islands' cores: darker than fatty marrow, not darker than the bar over disc (3 % noise)
    assert 1.07 * disc <= np.median(t1) < 0.95 * TISSUE[Sequence.T1][0]


@settings(max_examples=12, deadline=None)
@given(kind=st.sampled_from(list(MimicKind)), seed=st.integers(0, 2**16))
def test_mimics_stay_in_their_body_keep_dtype_and_repeat_by_seed(kind: MimicKind, seed: int) -> None:
    before, after, labels = _paint(MimicSpec(L3, kind), seed=seed)
    _, again, _ = _paint(MimicSpec(L3, kind), seed=seed)
    for q in before:
        assert after[q].dtype == before[q].dtype
        assert not (after[q] != before[q])[labels != L3].any()
        np.testing.assert_array_equal(after[q], again[q])
    # T1C carries no mimic signal of its own
    np.testing.assert_array_equal(after[Sequence.T1C], before[Sequence.T1C])


def test_bad_arguments_are_named() -> None:
    images, labels = block_spine()
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="radius_mm"):
        MimicSpec(L3, MimicKind.RED_MARROW, radius_mm=4.0)
    with pytest.raises(ValueError, match="label"):
        MimicSpec(0, MimicKind.HAEMANGIOMA)
    with pytest.raises(TypeError, match="kind"):
        MimicSpec(L3, "haemangioma")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no body labelled 99"):
        paint_mimics(images, labels, SPACING, [MimicSpec(99, MimicKind.FAT_ISLAND)], rng)
    with pytest.raises(ValueError, match="one grid"):
        paint_mimics(images, labels[:, :10], SPACING, [MimicSpec(L3, MimicKind.FAT_ISLAND)], rng)
