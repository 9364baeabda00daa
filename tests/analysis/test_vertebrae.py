"""Pure functions of the vertebra analysis on small constructed volumes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis.results import BodyMeasurement, SpineSegmentation
from analysis.vertebrae.geometry import canonical_of, canonical_to_lps
from analysis.vertebrae.levels import VERSE_LABELS, column_gaps, name_chain
from analysis.vertebrae.measure import (
    NORMAL_HA_HP,
    NORMAL_HM_HP,
    NORMAL_HP,
    Heights,
    body_heights,
    deformities,
    genant_grade,
    heights_2d,
)
from analysis.vertebrae.regions import canal_centreline, reference_regions
from analysis.vertebrae.segment import split_bodies
from analysis.volume import LEVEL_LABELS, Volume

# the shared data's layout: array (k, j, i) = (right-left, superior->inferior, anterior->posterior)
SHARED_DIRECTION = (0.0, 0.0, -1.0, 1.0, 0.0, 0.0, 0.0, -1.0, 0.0)


def spine_probabilities(
    n_bodies: int = 5, height: int = 26, gap: int = 9, depth: int = 34, width_slices: int = 13
) -> tuple[np.ndarray, np.ndarray]:
    """Body and L5 probability maps (LR, SI, AP) of a straight column of box-shaped bodies."""
    lr, si, ap = width_slices + 6, 20 + n_bodies * (height + gap) + 40, depth + 60
    body = np.zeros((lr, si, ap), np.float32)
    l5 = np.zeros_like(body)
    for b in range(n_bodies):
        top = 20 + b * (height + gap)
        body[3 : 3 + width_slices, top : top + height, 30 : 30 + depth] = 0.95
        if b == n_bodies - 1:
            l5[3 : 3 + width_slices, top : top + height, 30 : 30 + depth] = 0.9
    return body, l5


def test_canonical_of_shared_layout_is_a_permutation_only() -> None:
    arr = np.arange(4 * 5 * 6).reshape(4, 5, 6)
    vol = Volume(arr, (1.0, 1.0, 3.0), (0.0, 0.0, 0.0), SHARED_DIRECTION)
    can = canonical_of(vol)
    out = can.to_canonical(arr)
    assert out.shape == (4, 5, 6)
    assert can.spacing == (3.0, 1.0, 1.0)
    np.testing.assert_array_equal(can.from_canonical(out), arr)


def test_canonical_rejects_non_volume() -> None:
    with pytest.raises(TypeError, match="volume"):
        canonical_of(np.zeros((3, 3, 3)))  # type: ignore[arg-type]


def _flipped(vol: Volume, axis: int) -> Volume:
    """The same physical image with array ``axis`` stored in reverse order."""
    index_axis = 2 - axis
    n = vol.array.shape[axis]
    d = vol.direction_matrix.copy()
    origin = vol.index_to_lps([(n - 1) if a == index_axis else 0 for a in range(3)])
    d[:, index_axis] *= -1
    return Volume(np.flip(vol.array, axis=axis).copy(), vol.spacing,
                  (float(origin[0]), float(origin[1]), float(origin[2])), tuple(d.ravel()))


@settings(max_examples=12, deadline=None)
@given(axis=st.integers(0, 2), ox=st.floats(-200, 200), oy=st.floats(-200, 200), oz=st.floats(-200, 200))
def test_flipped_or_translated_volume_has_the_same_canonical_array(
    axis: int, ox: float, oy: float, oz: float
) -> None:
    rng = np.random.default_rng(0)
    vol = Volume(rng.random((5, 7, 9)), (0.7, 0.7, 3.5), (ox, oy, oz), SHARED_DIRECTION)
    ref = canonical_of(vol)
    flipped = _flipped(vol, axis)
    can = canonical_of(flipped)
    np.testing.assert_array_equal(can.to_canonical(flipped.array), ref.to_canonical(vol.array))
    np.testing.assert_allclose(
        canonical_to_lps(flipped, can, [1.0, 2.0, 3.0]),
        canonical_to_lps(vol, ref, [1.0, 2.0, 3.0]),
        atol=1e-6,
    )


def test_heights_of_a_box_and_a_wedge() -> None:
    box = np.zeros((60, 60), bool)
    box[10:40, 10:50] = True  # 30 mm tall, 40 mm deep
    ha, hm, hp = heights_2d(box, (1.0, 1.0))
    assert ha == pytest.approx(30.0, abs=1.0)
    assert hm == pytest.approx(30.0, abs=1.0)
    assert hp == pytest.approx(30.0, abs=1.0)
    wedge = box.copy()
    for c in range(10, 50):
        wedge[10 : 10 + int(12 + 18 * (c - 10) / 40), c] = True
        wedge[10 + int(12 + 18 * (c - 10) / 40) : 40, c] = False
    ha, hm, hp = heights_2d(wedge, (1.0, 1.0))
    assert ha < 20.0 < hp


@settings(max_examples=15, deadline=None)
@given(dy=st.integers(-8, 8), dx=st.integers(-8, 8), flip_lr=st.booleans())
def test_translated_or_flipped_bodies_give_the_same_heights_and_count(
    dy: int, dx: int, flip_lr: bool
) -> None:
    body, l5 = spine_probabilities()
    ref = split_bodies(body, l5, (3.0, 1.0, 1.0))
    moved_body = np.roll(body, (dy, dx), axis=(1, 2))
    moved_l5 = np.roll(l5, (dy, dx), axis=(1, 2))
    if flip_lr:
        moved_body, moved_l5 = moved_body[::-1].copy(), moved_l5[::-1].copy()
    got = split_bodies(moved_body, moved_l5, (3.0, 1.0, 1.0))
    assert len(got) == len(ref) == 5
    for a, b in zip(ref, got, strict=True):
        ha = body_heights(a.mask, (3.0, 1.0, 1.0))
        hb = body_heights(b.mask, (3.0, 1.0, 1.0))
        assert (ha.ha_mm, ha.hm_mm, ha.hp_mm) == pytest.approx((hb.ha_mm, hb.hm_mm, hb.hp_mm), abs=0.3)
        assert a.volume_ml == pytest.approx(b.volume_ml, rel=1e-6)


def test_split_bodies_separates_the_column_and_scores_l5() -> None:
    body, l5 = spine_probabilities()
    # a thin false bridge across every disc must not merge bodies
    body[8:10, :, 45:47] = np.maximum(body[8:10, :, 45:47], 0.6)
    chain = split_bodies(body, l5, (3.0, 1.0, 1.0))
    assert len(chain) == 5
    assert [c.centroid_mm[1] for c in chain] == sorted(c.centroid_mm[1] for c in chain)
    assert max(range(5), key=lambda i: chain[i].l5_score) == 4
    for c in chain:
        h = body_heights(c.mask, (3.0, 1.0, 1.0))
        assert h.hm_mm == pytest.approx(26.0, abs=2.0)


def test_split_bodies_empty_and_bad_input() -> None:
    z = np.zeros((5, 40, 40), np.float32)
    assert split_bodies(z, z, (3.0, 1.0, 1.0)) == []
    with pytest.raises(ValueError, match="same shape"):
        split_bodies(z, z[:, :10], (3.0, 1.0, 1.0))


@pytest.mark.parametrize(
    ("loss", "grade"), [(0.0, 0), (19.9, 0), (20.0, 1), (24.9, 1), (25.0, 2), (40.0, 2), (40.1, 3), (80.0, 3)]
)
def test_genant_grade_bands(loss: float, grade: int) -> None:
    assert genant_grade(loss) == grade


def test_genant_grade_rejects_nan() -> None:
    with pytest.raises(ValueError, match="loss_pct"):
        genant_grade(float("nan"))


def test_normal_l5_wedge_is_not_a_fracture_but_a_crush_is() -> None:
    levels = ["L1", "L2", "L3", "L4", "L5"]
    normal = [Heights(27, 26, 28, 0), Heights(28.5, 27, 29, 0), Heights(29, 27.5, 29, 0),
              Heights(30, 28, 29, 0), Heights(30.3, 27, 26.3, 0)]  # fmt: skip
    assert all(d.genant_grade == 0 for d in deformities(levels, normal))
    crushed = list(normal)
    crushed[2] = Heights(17, 16, 18, 0)  # about 40 % lower than its neighbours
    d = deformities(levels, crushed)
    assert d[2].genant_grade is not None and d[2].genant_grade >= 2
    assert d[0].genant_grade == 0 and d[4].genant_grade == 0
    wedge = list(normal)
    wedge[1] = Heights(19, 24, 29, 0)  # anterior 35 % lower than posterior
    assert deformities(levels, wedge)[1].genant_grade == 2


@settings(max_examples=30, deadline=None)
@given(st.floats(18.0, 34.0), st.floats(0.85, 1.0))
def test_a_spine_of_typical_shape_reads_no_height_loss(l3_hp: float, hm_hp: float) -> None:
    # every level at its typical posterior height and wedge, L5's shorter posterior wall included
    # a body above the table (T10) is the size of the one under it: compared as it is
    levels = ["T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5"]
    hp = [l3_hp * NORMAL_HP.get(lv, NORMAL_HP["T11"]) for lv in levels]
    ratio = [NORMAL_HA_HP.get(lv, NORMAL_HA_HP["T11"]) for lv in levels]
    # hm_hp is L3's middle-to-posterior ratio; L5's wedge makes its own larger
    middle = [hm_hp * NORMAL_HM_HP.get(lv, NORMAL_HM_HP["T11"]) / NORMAL_HM_HP["L3"] for lv in levels]
    spine = [Heights(h * r, h * m, h, 0) for h, r, m in zip(hp, ratio, middle, strict=True)]
    losses = [d.height_loss_pct for d in deformities(levels, spine)]
    assert all(loss is not None and loss < 0.5 for loss in losses), losses


def test_a_biconcave_l5_is_judged_against_l5s_own_middle_height() -> None:
    # a typical L4 and L5 (L5 wedged: its middle 1.0 of its back wall, L4's 0.955), then L5's
    # middle sinks 27 %: grade 2. Against L4's ratio it read 23.6 %, grade 1.
    levels = ["L3", "L4", "L5"]
    normal = [Heights(29.0, 26.6, 28.0, 0), Heights(27.9, 25.6, 26.8, 0), Heights(30.1, 26.2, 26.2, 0)]
    assert all(d.genant_grade == 0 for d in deformities(levels, normal))
    sunk = [*normal[:2], Heights(30.1, 0.73 * 26.2, 26.2, 0)]
    d = deformities(levels, sunk)[2]
    assert d.genant_grade == 2 and d.height_loss_pct == pytest.approx(27.0, abs=0.6)


def test_heights_place_the_endplates_between_pixels_on_an_edge_field() -> None:
    # a 30.6 mm tall, 40 mm deep body on 1 mm pixels: its top and bottom rows are 30 % inside
    field = np.zeros((60, 60))
    field[10:40, 10:50] = 1.0
    field[9, 10:50] = field[40, 10:50] = 0.3
    mask = field >= 0.5
    on_mask = heights_2d(mask, (1.0, 1.0))
    on_field = heights_2d(mask, (1.0, 1.0), edge_field=field)
    assert on_mask == pytest.approx((30.0, 30.0, 30.0), abs=0.01)  # whole pixels
    # linear between pixel centres, 0.5 falls 0.71 px out from the last full row's centre (the
    # edge itself: 0.8 px), at most 0.09 px from it for any covered fraction
    assert on_field == pytest.approx((30.43, 30.43, 30.43), abs=0.01)
    with pytest.raises(ValueError, match="edge_field"):
        heights_2d(mask, (1.0, 1.0), edge_field=field[1:])


@settings(max_examples=40, deadline=None)
@given(top=st.floats(5.0, 15.0), height=st.floats(15.0, 35.0), step=st.sampled_from([0.5, 0.8, 1.0]))
def test_heights_on_an_edge_field_follow_the_edges_not_the_grid(
    top: float, height: float, step: float
) -> None:
    # a box whose edges fall anywhere between pixels, drawn as each row's covered fraction
    rows = (np.arange(round(70 / step)) + 0.5) * step
    cover = np.clip(np.minimum(rows + step / 2 - top, top + height - (rows - step / 2)) / step, 0.0, 1.0)
    field = np.repeat(cover[:, None], 60, axis=1)
    field[:, :10] = field[:, 50:] = 0.0
    ha, hm, hp = heights_2d(field >= 0.5, (step, step), edge_field=field)
    # interpolated between pixel centres, each edge lands within 0.09 px of where it is
    assert abs(hm - height) <= 0.18 * step + 0.04 and ha == pytest.approx(hm) == hp


def test_adjacent_fractures_are_each_judged_against_the_nearest_normal_body() -> None:
    levels = ["L1", "L2", "L3", "L4", "L5"]
    normal = [Heights(27, 26, 28, 0), Heights(28.5, 27, 29, 0), Heights(29, 27.5, 29, 0),
              Heights(30, 28, 29, 0), Heights(30.3, 27, 26.3, 0)]  # fmt: skip
    crushed = list(normal)
    # L2 and L3 both lost about a third of their height: against each other they would look
    # only mildly deformed (expected height the mean of a normal and a crushed neighbour)
    crushed[1] = Heights(19.5, 18.5, 19.5, 0)
    crushed[2] = Heights(19.5, 18.5, 19.5, 0)
    d = deformities(levels, crushed)
    assert [x.genant_grade for x in d] == [0, 2, 2, 0, 0]
    assert d[1].expected_height_mm is not None and d[1].expected_height_mm > 27.0


def test_deformities_length_mismatch() -> None:
    with pytest.raises(ValueError, match="same length"):
        deformities(["L1"], [])


def test_name_chain_counts_up_from_l5() -> None:
    naming = name_chain([0.0, 0.0, 0.01, 0.0, 0.02, 0.0, 0.9], bottom_gap_mm=60.0)
    assert naming.names == ("T11", "T12", "L1", "L2", "L3", "L4", "L5")
    assert naming.sacrum_in_view and naming.certainty > 0.8
    assert VERSE_LABELS["L5"] == LEVEL_LABELS["L5"] and all(
        VERSE_LABELS[k] == v for k, v in LEVEL_LABELS.items()
    )


def test_name_chain_without_sacrum_is_uncertain_and_says_so() -> None:
    naming = name_chain([0.0, 0.0, 0.05, 0.1], bottom_gap_mm=5.0)
    assert not naming.sacrum_in_view
    assert naming.certainty <= 0.3
    assert any("sacrum not identified" in n for n in naming.notes)


def test_name_chain_with_s1_cut_by_the_image_edge_still_anchors_on_l5() -> None:
    # a small field of view: S1 is found but the image ends right under it
    naming = name_chain([0.0, 0.0, 0.0, 0.0, 0.9, 0.08], bottom_gap_mm=2.0)
    assert naming.names == ("L1", "L2", "L3", "L4", "L5", "S1")
    assert naming.sacrum_in_view and naming.certainty > 0.8


def test_name_chain_does_not_anchor_on_a_body_cut_by_the_lower_edge() -> None:
    # the network scores a cut S1 as L5-like; the whole body above it scores well too
    naming = name_chain([0.0, 0.0, 0.0, 0.0, 0.0, 0.15, 0.85], bottom_gap_mm=0.0)
    assert naming.names[-2:] == ("L5", "S1")
    assert naming.sacrum_in_view and naming.certainty < 0.5  # a weak anchor is reported as such
    assert any("cut by the lower edge" in n for n in naming.notes)
    # VB3_10 (cross-validated): L5 scores 0.094 above a cut S1 at 0.37
    weak = name_chain([0.0, 0.0, 0.0, 0.0, 0.001, 0.094, 0.367], bottom_gap_mm=0.0)
    assert weak.names[-2:] == ("L5", "S1")
    # a cut lowest body with nothing L5-like above it stays the (unverified) L5
    alone = name_chain([0.0, 0.0, 0.0, 0.0, 0.01, 0.7], bottom_gap_mm=0.0)
    assert alone.names[-1] == "L5" and not alone.sacrum_in_view


def test_name_chain_takes_a_weak_l5_above_a_whole_s1_before_counting_up_from_the_lowest_body() -> None:
    # no body clears the bar, but the one above the lowest outscores every other: the lowest
    # is S1, not L5 (counting up from it named a spine one level off throughout)
    naming = name_chain([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.2, 0.03], bottom_gap_mm=5.0)
    assert naming.names == ("T11", "T12", "L1", "L2", "L3", "L4", "L5", "S1")
    assert naming.sacrum_in_view and naming.certainty <= 0.2
    assert any("L5 recognised only weakly" in n for n in naming.notes)
    assert not any("sacrum not identified" in n for n in naming.notes)
    # below the level bodies above L5 reach it is no evidence: counted up from the lowest body
    faint = name_chain([0.0, 0.0, 0.0, 0.0, 0.0, 0.02, 0.0], bottom_gap_mm=5.0)
    assert faint.names[-1] == "L5" and not faint.sacrum_in_view
    # the lowest body the most L5-like: counted up from it, as before
    lowest = name_chain([0.0, 0.0, 0.0, 0.0, 0.08, 0.2], bottom_gap_mm=5.0)
    assert lowest.names[-1] == "L5" and not lowest.sacrum_in_view


def test_name_chain_flags_transitional_anatomy_without_renaming_the_spine() -> None:
    # issue 19: the body under L5 scoring more L5-like is a guess, not a reason to shift every name
    naming = name_chain([0.0, 0.0, 0.0, 0.0, 0.7, 0.8], bottom_gap_mm=60.0)
    assert naming.names == ("L1", "L2", "L3", "L4", "L5", "S1")
    assert any("transitional" in n for n in naming.notes)
    assert naming.certainty < 0.7


def _box_segmentation() -> tuple[SpineSegmentation, Volume]:
    """Five box bodies L1-L5 on a canonical-layout grid (3 mm slices, 1 mm pixels)."""
    body, _ = spine_probabilities(width_slices=15)
    body = np.pad(body, ((10, 10), (0, 0), (0, 60)))
    labels = np.zeros(body.shape, np.int16)
    chain = split_bodies(body, np.zeros_like(body), (3.0, 1.0, 1.0))
    bodies = []
    for c, level in zip(chain, ("L1", "L2", "L3", "L4", "L5"), strict=True):
        labels[c.mask] = VERSE_LABELS[level]
        bodies.append(
            BodyMeasurement(
                level, VERSE_LABELS[level], (0.0, 0.0, 0.0), 26.0, 26.0, 26.0, 26.0, 0.0, 0, c.volume_ml
            )
        )
    # canonical layout stored as-is: array (LR, SI, AP) = (k, j, i) with i posterior, j inferior, k left
    direction = (0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, -1.0, 0.0)
    lab_vol = Volume(labels, (1.0, 1.0, 3.0), (0.0, 0.0, 0.0), direction)
    rng = np.random.default_rng(1)
    image = lab_vol.with_array(rng.normal(100.0, 10.0, labels.shape).astype(np.float32))
    return SpineSegmentation(lab_vol, tuple(bodies), 0.9, True), image


def test_reference_regions_on_constructed_spine() -> None:
    seg, image = _box_segmentation()
    regions = reference_regions(seg, image)
    assert list(regions) == ["L1", "L2", "L3", "L4", "L5"]
    labels = np.asarray(seg.labels.array)
    l3 = regions["L3"]
    assert l3.disc_above is not None and l3.disc_below is not None
    assert regions["L1"].disc_above is None and regions["L5"].disc_below is None
    np.testing.assert_array_equal(l3.body, labels == VERSE_LABELS["L3"])
    assert not (l3.disc_above & (labels > 0)).any()
    # the disc lies between L2 and L3 along the spine (rows = axis 1 of this layout)
    disc_rows = np.nonzero(l3.disc_above.any(axis=(0, 2)))[0]
    l2_rows = np.nonzero((labels == VERSE_LABELS["L2"]).any(axis=(0, 2)))[0]
    l3_rows = np.nonzero((labels == VERSE_LABELS["L3"]).any(axis=(0, 2)))[0]
    assert l2_rows.max() < disc_rows.min() and disc_rows.max() < l3_rows.min()
    # canal behind the body (larger i = posterior), muscle further behind and lateral
    body_cols = np.nonzero(l3.body.any(axis=(0, 1)))[0]
    canal_cols = np.nonzero(l3.canal.any(axis=(0, 1)))[0]
    muscle_cols = np.nonzero(l3.muscle.any(axis=(0, 1)))[0]
    assert canal_cols.min() > body_cols.max() and muscle_cols.min() > canal_cols.max()
    muscle_slices = np.nonzero(l3.muscle.any(axis=(1, 2)))[0]
    body_slices = np.nonzero(l3.body.any(axis=(1, 2)))[0]
    assert muscle_slices.min() < body_slices.min() or muscle_slices.max() > body_slices.max()
    line = canal_centreline(seg)
    assert line.shape == (5, 3)
    assert np.all(np.diff(line[:, 2]) < 0)  # top to bottom: LPS z (superior) decreases


def test_reference_regions_rejects_wrong_grid() -> None:
    seg, _ = _box_segmentation()
    with pytest.raises(ValueError, match="image"):
        reference_regions(seg, Volume(np.zeros((2, 2, 2)), (1.0, 1.0, 1.0)))


def test_a_body_off_the_edge_of_a_narrow_series_counts_as_cut() -> None:
    from analysis.vertebrae.pipeline import touches_fov_edge

    def body(lr_slices: slice) -> np.ndarray:
        mask = np.zeros((9, 60, 60), bool)
        mask[lr_slices, 20:40, 20:45] = True
        mask[lr_slices.start, 25:35, 25:40] = False  # the first slice holds less of the body
        return mask

    assert not touches_fov_edge(body(slice(2, 7)))  # largest sections inside the series
    assert touches_fov_edge(body(slice(0, 3)))  # largest section on the series' second slice


def test_two_body_cores_in_one_segment_get_their_own_seeds() -> None:
    from analysis.vertebrae.segment import split_seeds_by_cores

    mask = np.zeros((5, 80, 40), bool)
    mask[:, 5:30, 5:35] = True  # one body
    mask[:, 34:60, 5:35] = True  # the next, 4 mm of disc between them
    mask[:, 30:34, 15:18] = True  # a thin bridge over the disc
    seeds = np.where(mask, 1, 0).astype(np.int32)  # the disc cut between them was missed
    out = split_seeds_by_cores(seeds, mask, (3.0, 1.0, 1.0))
    top, bottom = set(np.unique(out[:, 10:25])) - {0}, set(np.unique(out[:, 40:55])) - {0}
    assert len(top) == 1 and len(bottom) == 1 and top != bottom
    # a single body keeps its one seed
    one = mask[:, :30]
    assert set(np.unique(split_seeds_by_cores(one.astype(np.int32), one, (3.0, 1.0, 1.0)))) == {0, 1}


def test_column_gaps_find_the_room_of_a_missing_body() -> None:
    column = [(30.0 * i, 2.0 * i) for i in range(7)]
    assert column_gaps(column) == []
    assert column_gaps(column[:3] + column[4:]) == [2]  # the fourth body is missing
    # a collapsed body brings its neighbours' centroids a little closer: not a gap
    squeezed = [*column[:3], (column[3][0] + 4.0, column[3][1]), *column[4:]]
    assert column_gaps(squeezed) == []
    assert column_gaps(column[:3]) == []  # too short a chain to tell
    scores = [0.0] * 5 + [0.9]
    whole = name_chain(scores, 60.0, column[:6])
    gapped = name_chain(scores, 60.0, column[:3] + column[4:])
    assert whole.certainty > 0.8 and not any("gap" in n for n in whole.notes)
    assert gapped.names == whole.names  # still counted up, but with the doubt said
    assert gapped.certainty <= 0.3
    assert any("gap the size of a vertebral body between L2 and L3" in n for n in gapped.notes)
    with pytest.raises(ValueError, match="centroids_si_ap"):
        name_chain(scores, 60.0, column[:5])


def test_chain_keeps_s1_behind_the_axis_below_the_lordosis_but_not_a_blob_in_front() -> None:
    from analysis.vertebrae.axis import SpineAxis
    from analysis.vertebrae.segment import BodyCandidate, chain_filter

    # lordosis: the axis is most anterior (smallest AP) at SI 150 mm
    axis = SpineAxis(coef=(0.004, -1.2, 250.0), lr_centre_mm=20.0, si_range_mm=(20.0, 260.0))

    def body(si: float, off: float, ml: float = 30.0) -> BodyCandidate:
        ap = float(axis.ap(np.array([si]))[0]) + off
        return BodyCandidate(np.zeros((1, 1, 1), bool), (20.0, si, ap), ml, 0.0, 0.9)

    lumbar = [body(30.0 + 35.0 * i, 1.0) for i in range(6)]  # T12..L5, on the axis

    def kept(extra: BodyCandidate) -> bool:
        return any(c is extra for c in chain_filter([*lumbar, extra], axis))

    assert kept(body(240.0, 15.0, ml=12.0))  # the sacrum bends backward: S1 15 mm behind the axis
    assert not kept(body(240.0, -18.0, ml=12.0))  # in front of it (bowel)
    assert not kept(body(47.0, 18.0))  # behind it, above the lordosis
    assert not kept(body(240.0, 30.0, ml=12.0))  # too far behind for the sacrum's bend
    assert kept(body(240.0, 8.0, ml=12.0))


def test_name_chain_anchors_on_l5_not_on_an_l5_like_sacral_segment_below_s1() -> None:
    # VB1_02 with a lesion in S1: the network's L5 class fires on S2 more than on L5
    naming = name_chain([0.0, 0.0, 0.0, 0.0, 0.0, 0.86, 0.03, 0.95], bottom_gap_mm=30.0)
    assert naming.names == ("T12", "L1", "L2", "L3", "L4", "L5", "S1", None)
    assert not any("transitional" in n for n in naming.notes)


def test_a_lesion_bitten_out_of_a_body_is_given_back_but_not_the_disc_in_a_concave_endplate() -> None:
    from analysis.vertebrae.segment import fill_notches

    prob = np.zeros((3, 60, 60), np.float32)
    prob[:, 10:40, 10:45] = 0.95
    prob[:, 20:32, 36:45] = 0.45  # a lesion in the posterior wall: the network is unsure
    prob[:, 10:14, 20:35] = 0.1  # a concave upper endplate: disc, not body
    body = prob >= 0.65
    filled = fill_notches(body, prob, np.zeros_like(body))
    assert filled[:, 20:32, 36:45].all()
    assert not filled[:, 10:14, 20:35].any()
    # another body's voxels are never taken
    taken = np.zeros_like(body)
    taken[:, 26:32, 36:45] = True
    assert not fill_notches(body, prob, taken)[:, 26:32, 36:45].any()



def test_sagittal_slices_a_lesion_replaced_beyond_the_mask_are_given_back_within_the_footprint() -> None:
    from analysis.vertebrae.segment import fill_notches

    prob = np.zeros((12, 60, 60), np.float32)
    prob[2:7, 10:40, 10:45] = 0.95
    # the body's side replaced by tumour: two slices the network is unsure of, then a third
    # where the body is only a sliver (partial volume), then soft tissue beside the spine
    prob[7:9, 10:40, 10:45] = 0.5
    prob[9, 20:26, 20:30] = 0.5
    prob[10:, 10:40, 10:45] = 0.1
    prob[7:9, 10:40, 50:58] = 0.5  # tissue behind the body's footprint is not the body
    body = prob >= 0.65
    filled = fill_notches(body, prob, np.zeros_like(body))
    assert filled[7:9, 10:40, 10:45].all()
    assert not filled[9:].any()
    assert not filled[7:9, :, 50:].any()
    assert not filled[:2].any()  # nothing on the other side
    # another body's voxels are never taken
    taken = np.zeros_like(body)
    taken[8] = True
    assert not fill_notches(body, prob, taken)[8:].any()


Box = tuple[slice, ...]


def _column_with_sacrum(s1_prob: float) -> tuple[np.ndarray, np.ndarray, Box, Box]:
    """Five lumbar boxes, S1 at ``s1_prob`` and an S2 the L5 class fires on, as the network's maps."""
    body, l5 = spine_probabilities(n_bodies=7)
    l5[:] = 0.0
    step, lr, ap = 26 + 9, slice(3, 16), slice(30, 64)
    box = [(lr, slice(20 + b * step, 20 + b * step + 26), ap) for b in range(7)]
    l5[box[4]] = 0.9
    l5[box[6]] = 0.9
    body[box[5]] = s1_prob
    return body, l5, box[5], box[6]


def test_second_look_finds_an_s1_whose_replaced_marrow_the_threshold_lost() -> None:
    from analysis.vertebrae.second_look import sacral_second_look

    spacing = (3.0, 1.0, 1.0)
    body, l5, s1_box, s2_box = _column_with_sacrum(0.5)
    chain = split_bodies(body, l5, spacing)
    assert len(chain) == 5  # S1 under the threshold, S2 too far below to be kept
    s1 = sacral_second_look(body, l5, chain, spacing)
    assert s1 is not None
    truth = np.zeros(body.shape, dtype=bool)
    truth[s1_box] = True
    dice = 2.0 * (s1.mask & truth).sum() / (s1.mask.sum() + truth.sum())
    assert dice > 0.8
    assert not s1.mask[s2_box].any()
    assert s1.centroid_mm[1] > chain[-1].centroid_mm[1]


def test_second_look_finds_nothing_under_l5_when_there_is_no_body_there() -> None:
    from analysis.vertebrae.second_look import sacral_second_look

    spacing = (3.0, 1.0, 1.0)
    body, l5, _, s2_box = _column_with_sacrum(0.05)
    body[s2_box] = 0.0
    chain = split_bodies(body, l5, spacing)
    assert sacral_second_look(body, l5, chain, spacing) is None
    with pytest.raises(ValueError, match="chain"):
        sacral_second_look(body, l5, chain[-1:], spacing)


def test_second_look_finds_a_collapsed_body_above_the_chain_that_the_threshold_lost() -> None:
    from analysis.vertebrae.second_look import second_look

    spacing = (3.0, 1.0, 1.0)
    body, l5 = spine_probabilities(n_bodies=6)
    lr, ap = slice(3, 16), slice(30, 64)
    body[lr, 20:46, ap] = 0.0
    collapsed = (lr, slice(30, 46), ap)  # 16 of 26 mm left, at a probability under the threshold
    body[collapsed] = 0.5
    chain = split_bodies(body, l5, spacing)
    assert len(chain) == 5
    found = second_look(body, l5, chain, spacing, below=False)
    assert found is not None
    truth = np.zeros(body.shape, dtype=bool)
    truth[collapsed] = True
    assert 2.0 * (found.mask & truth).sum() / (found.mask.sum() + truth.sum()) > 0.8
    assert not (found.mask & chain[0].mask).any()
    body[collapsed] = 0.05
    assert second_look(body, l5, split_bodies(body, l5, spacing), spacing, below=False) is None
