"""The vertebra analysis on real shared MRI (skipped when ../shared or the weights are absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from analysis.results import SpineSegmentation
from analysis.vertebrae.model import BodyModel
from analysis.vertebrae.pipeline import segment_spine
from analysis.vertebrae.regions import canal_centreline, reference_regions
from analysis.volume import Sequence, Volume
from node.pipeline.model import fold_models, shipped_model

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
REAL = SHARED / "data" / "real-lumbar-mri"
SCT = SHARED / "data" / "sct-t2-lumbar" / "t2_lumbar.nii.gz"

pytestmark = pytest.mark.slow


def _read(path: Path) -> Volume:
    sitk = pytest.importorskip("SimpleITK")
    from analysis.sitk_adapter import volume_from_image

    return volume_from_image(sitk.ReadImage(str(path)))


def _fold_model_without(case: str) -> BodyModel:
    """A cross-validation model that never saw ``case``."""
    models = fold_models()
    assert case in models, f"no shipped fold model holds out {case}"
    return models[case]


@pytest.fixture(scope="module")
def vb3_case() -> tuple[Volume, Volume, SpineSegmentation]:
    if not (REAL / "VB3_01_image.nii.gz").exists():
        pytest.skip("shared real lumbar MRI not present")
    from analysis.sitk_adapter import take_every_nth_slice

    image = take_every_nth_slice(_read(REAL / "VB3_01_image.nii.gz"), 3)
    truth = take_every_nth_slice(_read(REAL / "VB3_01_labels.nii.gz"), 3)
    seg = segment_spine({Sequence.DIXON: image}, _fold_model_without("VB3_01"))
    return image, truth, seg


def test_real_case_finds_and_names_the_lumbar_bodies(
    vb3_case: tuple[Volume, Volume, SpineSegmentation],
) -> None:
    image, truth, seg = vb3_case
    assert seg.labels.array.shape == image.array.shape
    assert seg.labels.spacing == image.spacing
    pred = np.asarray(seg.labels.array)
    true = np.asarray(truth.array)
    dices = []
    for label in (20, 21, 22, 23, 24):  # L1..L5
        t, p = true == label, pred == label
        dices.append(2 * (t & p).sum() / (t.sum() + p.sum()))
    assert min(dices) > 0.6, dices
    assert float(np.mean(dices)) > 0.75, dices
    for level in ("L1", "L2", "L3", "L4", "L5"):
        body = seg.body(level)
        assert body is not None and body.hm_mm is not None
        assert 15.0 < body.hm_mm < 40.0
        assert 10.0 < body.volume_ml < 80.0


def test_real_case_reference_regions(vb3_case: tuple[Volume, Volume, SpineSegmentation]) -> None:
    image, _, seg = vb3_case
    regions = reference_regions(seg, image)
    assert set(regions) == {b.level for b in seg.bodies}
    l3 = regions["L3"]
    assert l3.disc_above is not None and l3.disc_below is not None
    for mask in (l3.body, l3.disc_above, l3.disc_below, l3.muscle, l3.canal):
        assert mask.shape == image.array.shape and mask.any()
    assert not (l3.disc_above & l3.body).any() and not (l3.canal & l3.body).any()
    line = canal_centreline(seg)
    assert line.shape[1] == 3 and len(line) == len(seg.bodies)


def test_flipped_series_gives_the_same_bodies_and_heights(
    vb3_case: tuple[Volume, Volume, SpineSegmentation],
) -> None:
    image, _, seg = vb3_case
    # the same patient stored with the rows in reverse order (inferior first)
    d = image.direction_matrix.copy()
    n = image.array.shape[1]
    origin = image.index_to_lps([0, n - 1, 0])
    d[:, 1] *= -1
    flipped = Volume(np.flip(image.array, axis=1).copy(), image.spacing,
                     (float(origin[0]), float(origin[1]), float(origin[2])), tuple(d.ravel()))
    seg2 = segment_spine({Sequence.DIXON: flipped}, _fold_model_without("VB3_01"))
    assert [b.level for b in seg2.bodies] == [b.level for b in seg.bodies]
    for a, b in zip(seg.bodies, seg2.bodies, strict=True):
        assert a.hm_mm == pytest.approx(b.hm_mm, abs=1.0)
        assert a.volume_ml == pytest.approx(b.volume_ml, rel=0.05)
        np.testing.assert_allclose(a.centroid_lps, b.centroid_lps, atol=1.5)


@pytest.mark.parametrize("step", [1, 3])
def test_normal_sct_t2_has_no_fracture(step: int) -> None:
    if not SCT.exists():
        pytest.skip("SCT volume not present")
    from analysis.sitk_adapter import take_every_nth_sagittal

    seg = segment_spine({Sequence.T2: take_every_nth_sagittal(_read(SCT), step)}, shipped_model())
    assert len(seg.bodies) >= 4
    assert all(b.genant_grade in (0, None) for b in seg.bodies), [
        (b.level, b.height_loss_pct) for b in seg.bodies
    ]


def test_normal_sct_t2_canal_is_measured_across_the_cord() -> None:
    """At T12 and L1 the cord and conus split the CSF in two: the sac is both halves (12-13 mm, not 2-3)."""
    if not SCT.exists():
        pytest.skip("SCT volume not present")
    from analysis.signs import assess_signs
    from analysis.sitk_adapter import take_every_nth_sagittal

    volumes = {Sequence.T2: take_every_nth_sagittal(_read(SCT), 3)}
    signs = {ls.level: ls for ls in assess_signs(volumes, segment_spine(volumes, shipped_model()))}
    for level in ("T12", "L1", "L2"):
        diameter = signs[level].canal_diameter_mm
        assert diameter is not None and diameter >= 11.0, (level, diameter)


def _real_pair(agreed: bool = False) -> tuple[Volume, Volume, np.ndarray]:
    """The real T1 + STIR pair as 3 mm slices, with VB1_02's bodies named T12..S1.

    ``agreed``: only the voxels both series' masks label alike, as the signs evaluation takes
    them (``scripts/evaluate_signs.py``); they are a slice or two narrower than VB1_02's own.
    """
    if not (REAL / "VB1_02_image.nii.gz").exists():
        pytest.skip("shared real lumbar MRI not present")
    from analysis.sitk_adapter import take_every_nth_slice
    from phantom.wrap import vb1_levels

    t1 = take_every_nth_slice(_read(REAL / "VB1_02_image.nii.gz"), 3)
    stir = take_every_nth_slice(_read(REAL / "VB1_03_image.nii.gz"), 3)
    raw = np.asarray(take_every_nth_slice(_read(REAL / "VB1_02_labels.nii.gz"), 3).array)
    if agreed:
        other = np.asarray(take_every_nth_slice(_read(REAL / "VB1_03_labels.nii.gz"), 3).array)
        raw = np.where(raw == other, raw, 0)
    return t1, stir, vb1_levels(raw)


def _implanted_pair(
    spec: object, seed: int, agreed: bool = False
) -> tuple[dict[Sequence, Volume], np.ndarray, np.ndarray]:
    """The real pair with ``spec`` implanted: volumes, body labels and lesion mask."""
    from phantom.implants import ImplantSpec, implant

    assert isinstance(spec, ImplantSpec)
    t1, stir, labels = _real_pair(agreed)
    result = implant({Sequence.T1: t1.array, Sequence.STIR: stir.array}, labels,
                     t1.spacing_kji, spec, np.random.default_rng(seed))
    volumes = {q: t1.with_array(np.asarray(a)) for q, a in result.images.items()}
    return volumes, np.asarray(result.labels), np.asarray(result.lesion_mask)


def test_a_lesion_replacing_the_side_of_a_body_with_a_mass_beside_it_is_found() -> None:
    """On the real pair the network leaves the sagittal slices a lateral lesion replaced out of
    the body's mask (its probability there is about 0.5); the outline takes them back, so the
    signs see the lesion (before, every sign of L2 was absent)."""
    from analysis.signs import assess_signs
    from analysis.volume import LEVEL_LABELS
    from phantom.specs import Extension, ImplantSpec, LesionKind, LesionSpec

    l2 = LEVEL_LABELS["L2"]
    spec = ImplantSpec(lesions=(LesionSpec(l2, LesionKind.FOCAL, Extension.PARAVERTEBRAL, extension_mm=12.0,
                                           lateral=True),))
    volumes, labels, lesion = _implanted_pair(spec, 312, agreed=True)
    outside = (lesion > 0) & (labels == 0)
    assert outside.sum() * float(np.prod(volumes[Sequence.T1].spacing)) > 1000.0  # a mass beside L2
    seg = segment_spine(volumes, _fold_model_without("VB1_02"))
    assert not (np.asarray(seg.labels.array)[(lesion > 0) & (labels == l2)] == l2).mean() > 0.5
    signs = {ls.level: ls for ls in assess_signs(volumes, seg)}
    assert signs["L2"].suspicious_for_malignancy == "present", signs["L2"].reasons
    assert signs["L2"].marrow_infiltration == "present"
    assert [lv for lv, ls in signs.items() if lv != "L2" and ls.suspicious_for_malignancy == "present"] == []


def test_s1_with_replaced_marrow_is_found_on_a_second_look_and_flagged() -> None:
    """A malignant S1 fracture implanted in the real T1 + STIR pair: found, named S1, suspicious."""
    from analysis.signs import assess_signs
    from analysis.volume import LEVEL_LABELS
    from phantom.specs import FracturePattern, FractureShape, FractureSpec, ImplantSpec

    s1 = LEVEL_LABELS["S1"]
    spec = ImplantSpec(fractures=(FractureSpec(s1, 2, FractureShape.CRUSH, FracturePattern.MALIGNANT),))
    volumes, result_labels, _ = _implanted_pair(spec, 3)
    seg = segment_spine(volumes, _fold_model_without("VB1_02"))
    assert [b.level for b in seg.bodies][-2:] == ["L5", "S1"]
    found = np.asarray(seg.labels.array) == s1
    truth = result_labels == s1
    assert 2.0 * (found & truth).sum() / (found.sum() + truth.sum()) >= 0.5
    signs = {ls.level: ls for ls in assess_signs(volumes, seg)}
    assert signs["S1"].suspicious_for_malignancy == "present"
    assert signs["L5"].suspicious_for_malignancy == "absent"
