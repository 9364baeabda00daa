"""The shipped vertebral-body model on a synthetic phantom study (built in-process, no DICOM)."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.results import SpineSegmentation
from analysis.vertebrae.pipeline import segment_spine
from analysis.volume import Sequence, Volume
from node.pipeline.model import shipped_model
from phantom.render import SagittalGrid
from phantom.specs import FracturePattern, FractureShape, FractureSpec, ImplantSpec, LesionSpec
from phantom.study import PhantomStudy, build_phantom

L1, L3 = 20, 22

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def phantom() -> tuple[PhantomStudy, SpineSegmentation]:
    model = shipped_model()
    spec = ImplantSpec(
        lesions=(LesionSpec(label=L3),),
        fractures=(
            FractureSpec(label=L1, grade=3, shape=FractureShape.WEDGE, pattern=FracturePattern.BENIGN),
        ),
    )
    # a small study: T2 only, 11 slices (the analysis of a full phantom takes longer)
    study = build_phantom(
        spec, np.random.default_rng(7), sequences=(Sequence.T2,), grid=SagittalGrid(n_slices=11)
    )
    g = study.labels
    (series,) = study.series
    seg = segment_spine({Sequence.T2: Volume(series.pixels, g.spacing, g.origin, g.direction)}, model)
    return study, seg


def test_phantom_bodies_are_found_and_named(phantom: tuple[PhantomStudy, SpineSegmentation]) -> None:
    study, seg = phantom
    truth = np.asarray(study.labels.array)
    pred = np.asarray(seg.labels.array)
    named_right = []
    for label in (18, 19, 20, 21, 22, 23, 24):  # T11..L5
        t, p = truth == label, pred == label
        if t.any() and 2 * (t & p).sum() / (t.sum() + p.sum()) >= 0.5:
            named_right.append(label)
    assert len(named_right) >= 6, ([(b.level, b.volume_ml) for b in seg.bodies], named_right)
    assert seg.sacrum_in_view


def test_phantom_normal_bodies_are_grade_0(phantom: tuple[PhantomStudy, SpineSegmentation]) -> None:
    _, seg = phantom
    for level in ("L2", "L3", "L4"):
        body = seg.body(level)
        assert body is not None and body.genant_grade == 0, body


def test_phantom_fracture_is_graded(phantom: tuple[PhantomStudy, SpineSegmentation]) -> None:
    _, seg = phantom
    l1 = seg.body("L1")
    # implanted grade 3; reported as a fracture of at least grade 2 (the exact grade is the
    # open part of issue 4: 21 of 25 evaluation fractures are graded exactly)
    assert l1 is not None and l1.genant_grade is not None and l1.genant_grade >= 2, l1


def test_adjacent_crush_fractures_are_both_reported() -> None:
    # two grade-2 crushes side by side (L2, L3): against the plain neighbours, each lowering the
    # other's expected height, they were graded 1 and 0
    spec = ImplantSpec(
        fractures=tuple(FractureSpec(lab, 2, FractureShape.CRUSH, retropulsion_mm=0) for lab in (21, L3))
    )
    study = build_phantom(
        spec, np.random.default_rng(7), sequences=(Sequence.T2,), grid=SagittalGrid(n_slices=11)
    )
    g = study.labels
    (series,) = study.series
    volume = Volume(series.pixels, g.spacing, g.origin, g.direction)
    seg = segment_spine({Sequence.T2: volume}, shipped_model())
    grades = {b.level: b.genant_grade for b in seg.bodies}
    assert grades["L2"] == 2 and grades["L3"] in (1, 2), grades
    assert grades["L1"] == 0 and grades["L4"] == 0, grades


def test_a_constant_border_around_the_image_changes_nothing(
    phantom: tuple[PhantomStudy, SpineSegmentation],
) -> None:
    # The same images in a larger matrix filled with zeros (an export's padding): the network
    # took the border for bone and a body cut by the image no longer looked cut.
    study, seg = phantom
    g = study.labels
    (series,) = study.series
    whole = Volume(series.pixels, g.spacing, g.origin, g.direction)
    pad = 40
    padded = Volume(np.pad(series.pixels, ((0, 0), (pad, pad), (pad, pad))), g.spacing,
                    tuple(whole.index_to_lps((-pad, -pad, 0))), g.direction)
    again = segment_spine({Sequence.T2: padded}, shipped_model())
    assert again.bodies == seg.bodies
    assert (again.notes, again.sacrum_in_view) == (seg.notes, seg.sacrum_in_view)
    inner = (slice(None), slice(pad, -pad), slice(pad, -pad))
    np.testing.assert_array_equal(np.asarray(again.labels.array)[inner], np.asarray(seg.labels.array))
    assert not np.asarray(again.labels.array)[:, :pad].any()


def test_a_second_series_with_a_smaller_field_of_view_does_not_hide_bodies() -> None:
    # A T1 that stops short of the T2's top and bottom: padded onto the T2's grid, its
    # padding was averaged in as if it were image; T11 was lost and T12 half-found.
    study = build_phantom(ImplantSpec(), np.random.default_rng(7), sequences=(Sequence.T2, Sequence.T1),
                          grid=SagittalGrid(n_slices=11))
    g = study.labels
    volumes = {s.sequence: Volume(s.pixels, g.spacing, g.origin, g.direction) for s in study.series}
    whole = segment_spine(volumes, shipped_model())
    t1 = volumes[Sequence.T1]
    rows = t1.array.shape[1]
    shorter = t1.crop((slice(None), slice(rows // 5, rows - rows // 5), slice(None)))
    again = segment_spine({**volumes, Sequence.T1: shorter}, shipped_model())
    assert [b.level for b in again.bodies] == [b.level for b in whole.bodies]
    # and the sections are redrawn on the series that cover them (S1's middle height was 18 mm for 26)
    for before, after in zip(whole.bodies, again.bodies, strict=True):
        for name in ("ha_mm", "hm_mm", "hp_mm"):
            was, now = getattr(before, name), getattr(after, name)
            assert (was is None) == (now is None), (before.level, name)
            if was is not None:
                assert abs(now - was) <= 0.4, (before.level, name, was, now)
