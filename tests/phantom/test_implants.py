"""Implanted abnormalities: signal relative to the image's own tissue, shapes, truth."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis.vertebrae.measure import ANTERIOR, MIDDLE, POSTERIOR
from analysis.volume import LEVEL_LABELS, Sequence
from phantom._bodyframe import HEIGHT_FRACTIONS
from phantom.implants import (
    Extension,
    FracturePattern,
    FractureShape,
    FractureSpec,
    ImplantResult,
    ImplantSpec,
    LesionKind,
    LesionSpec,
    genant_grade,
    implant,
)
from tests.conftest import SHARED
from tests.phantom.spine_blocks import BODY_LABELS, SPACING, TISSUE, block_spine, mid_heights

REAL = SHARED / "data" / "real-lumbar-mri"
needs_real_data = pytest.mark.skipif(not REAL.is_dir(), reason=f"shared test data not found at {REAL}")


def _run(
    spec: ImplantSpec, seed: int = 1, dtype: type = np.uint16
) -> tuple[dict[Sequence, np.ndarray], np.ndarray, ImplantResult]:
    images, labels = block_spine(dtype)
    return images, labels, implant(images, labels, SPACING, spec, np.random.default_rng(seed))


def test_focal_lesion_is_dark_on_t1_bright_on_stir_and_enhances() -> None:
    images, labels, res = _run(ImplantSpec(lesions=(LesionSpec(22, LesionKind.FOCAL),)))
    lesion = res.lesion_mask == 1
    assert lesion.sum() > 50
    assert np.all(labels[lesion] == 22), "a focal lesion without extension stays in its body"
    t1 = res.images[Sequence.T1].astype(float)
    stir = res.images[Sequence.STIR].astype(float)
    t1c = res.images[Sequence.T1C].astype(float)
    disc, muscle = TISSUE[Sequence.T1][1:3]
    assert np.median(t1[lesion]) < min(disc, muscle)
    assert np.median(stir[lesion]) > 2.0 * TISSUE[Sequence.STIR][0]
    assert np.median(t1c[lesion]) > 1.5 * np.median(t1[lesion])
    lv = res.level("L3")
    assert lv.marrow_infiltration == "present"
    assert lv.cortical_destruction == lv.soft_tissue_extension == lv.compression_fracture == "absent"
    assert lv.suspicious_for_malignancy == "present"
    assert 2.0 < lv.lesion_fraction_pct < 60.0
    assert res.study.suspicious_level_count == 1
    assert res.study.multiple_lesions == "absent"
    for other in ("L1", "L2", "L4", "L5"):
        assert res.level(other).suspicious_for_malignancy == "absent"
    assert res.images[Sequence.T1].dtype == images[Sequence.T1].dtype


def test_a_faint_lesion_lies_between_the_marrow_and_the_full_tumour_signal() -> None:
    _, _, full = _run(ImplantSpec(lesions=(LesionSpec(22, LesionKind.FOCAL),)))
    _, _, faint = _run(ImplantSpec(lesions=(LesionSpec(22, LesionKind.FOCAL, conspicuity=0.4),)))
    lesion = full.lesion_mask == 1
    np.testing.assert_array_equal(lesion, faint.lesion_mask == 1)  # same seed, same shape
    for seq, darker in ((Sequence.T1, True), (Sequence.STIR, False), (Sequence.T2, False)):
        marrow = TISSUE[seq][0]
        got_full = float(np.median(full.images[seq].astype(float)[lesion]))
        got_faint = float(np.median(faint.images[seq].astype(float)[lesion]))
        # 0.4 of the way from the marrow to the full signal (within the texture's noise)
        assert got_faint - marrow == pytest.approx(0.4 * (got_full - marrow), rel=0.15), seq
        assert (got_faint < marrow) == darker
    with pytest.raises(ValueError, match="conspicuity"):
        LesionSpec(22, conspicuity=0.0)


def test_diffuse_lesion_gives_bright_disc_sign() -> None:
    _, labels, res = _run(ImplantSpec(lesions=(LesionSpec(21, LesionKind.DIFFUSE),)))
    t1 = res.images[Sequence.T1].astype(float)
    body = labels == 21
    assert np.median(t1[body]) < TISSUE[Sequence.T1][1]
    assert res.level("L2").lesion_fraction_pct > 95.0


@pytest.mark.parametrize("extension", [Extension.EPIDURAL, Extension.PARAVERTEBRAL])
def test_extension_breaks_the_cortex_and_leaves_the_body(extension: Extension) -> None:
    _, labels, res = _run(ImplantSpec(lesions=(LesionSpec(23, extension=extension),)))
    lesion = res.lesion_mask == 1
    outside = lesion & (labels == 0)
    assert outside.sum() > 30
    i_out = np.argwhere(outside)[:, 2]
    if extension == Extension.EPIDURAL:
        assert i_out.min() >= 64, "epidural tissue lies behind the posterior wall"
    else:
        assert i_out.max() <= 31, "paravertebral tissue lies in front of the anterior wall"
    lv = res.level("L4")
    assert lv.cortical_destruction == lv.soft_tissue_extension == "present"
    expected_canal = "present" if extension == Extension.EPIDURAL else "absent"
    assert lv.canal_compromise == res.study.canal_compromise == expected_canal
    # The dark rim is gone where the lesion crosses it.
    t1 = res.images[Sequence.T1].astype(float)
    crossing = lesion & (labels == 23) & ~np.roll(labels == 23, 1, axis=2) | lesion & (
        labels == 23
    ) & ~np.roll(labels == 23, -1, axis=2)
    assert np.median(t1[crossing]) > 0.3 * TISSUE[Sequence.T1][0] * 1.05


def test_a_lateral_extension_breaks_the_side_wall_and_lies_beside_the_body() -> None:
    spec = ImplantSpec(lesions=(LesionSpec(23, extension=Extension.PARAVERTEBRAL, lateral=True),))
    _, labels, res = _run(spec)
    lesion = res.lesion_mask == 1
    outside = lesion & (labels == 0)
    assert outside.sum() > 30
    body_k = np.nonzero((labels == 23).any(axis=(1, 2)))[0]
    k_out = np.argwhere(outside)[:, 0]
    assert (k_out < body_k.min()).all() or (k_out > body_k.max()).all(), "beside the body, on one side"
    inside_k = np.argwhere(lesion & (labels == 23))[:, 0]
    assert body_k.min() in inside_k or body_k.max() in inside_k, "the lesion reaches the side wall"
    lv = res.level("L4")
    assert lv.cortical_destruction == lv.soft_tissue_extension == "present"
    assert lv.canal_compromise == "absent"
    with pytest.raises(ValueError, match="lateral needs a paravertebral extension"):
        LesionSpec(23, extension=Extension.EPIDURAL, lateral=True)


def test_implants_are_graded_where_the_analysis_measures() -> None:
    # the phantom keeps its own copy (it does not load the analysis's networks); an implanted
    # grade means the grade the analysis's measurement of the truth gives only while they agree
    assert HEIGHT_FRACTIONS == (ANTERIOR, MIDDLE, POSTERIOR)


@pytest.mark.parametrize("grade", [1, 2, 3])
@pytest.mark.parametrize("shape", list(FractureShape))
def test_fracture_height_loss_matches_genant_grade(grade: int, shape: FractureShape) -> None:
    _, labels, res = _run(
        ImplantSpec(fractures=(FractureSpec(22, grade, shape, retropulsion_mm=0),)), seed=grade
    )
    before = mid_heights(labels, 22)
    after = mid_heights(res.labels, 22)
    loss = 100.0 * max(1 - a / b for a, b in zip(after, before, strict=True))
    assert genant_grade(loss) == grade, (before, after)
    lv = res.level("L3")
    assert lv.genant_grade == grade
    assert lv.compression_fracture == "present"
    assert lv.pathologic_fracture_pattern == lv.suspicious_for_malignancy == "absent"
    assert abs(lv.height_loss_pct - loss) < 5.0
    # the collapse is searched toward the loss drawn inside the grade, not stopped on its boundary
    assert lv.height_loss_pct >= {1: 20.0, 2: 25.0, 3: 40.0}[grade] + 1.0
    if shape == FractureShape.WEDGE:
        assert after[0] < after[2]
    if shape == FractureShape.BICONCAVE:
        assert after[1] < min(after[0], after[2])
    # Neighbours keep their shape.
    assert mid_heights(res.labels, 21) == mid_heights(labels, 21)


def test_benign_fracture_keeps_marrow_and_retropulses() -> None:
    spec = ImplantSpec(
        fractures=(FractureSpec(22, 2, FractureShape.WEDGE, FracturePattern.BENIGN, fluid_sign=True),)
    )
    _, labels, res = _run(spec)
    body = res.labels == 22
    t1 = res.images[Sequence.T1].astype(float)
    assert np.median(t1[body]) > 0.85 * TISSUE[Sequence.T1][0], "normal fatty marrow preserved"
    stir = res.images[Sequence.STIR].astype(float)
    assert np.percentile(stir[body], 99) > 3.0 * TISSUE[Sequence.STIR][0], "edema band / fluid sign"
    assert np.argwhere(body)[:, 2].max() > np.argwhere(labels == 22)[:, 2].max(), "posterior fragment"
    assert res.level("L3").suspicious_for_malignancy == "absent"
    assert res.study.suspicious_for_malignancy == "absent"
    assert res.lesion_mask.max() == 0


def test_malignant_fracture_replaces_marrow_bulges_and_involves_pedicles() -> None:
    spec = ImplantSpec(fractures=(FractureSpec(21, 2, FractureShape.CRUSH, FracturePattern.MALIGNANT),))
    _, labels, res = _run(spec)
    lv = res.level("L2")
    assert (
        lv.pathologic_fracture_pattern == lv.marrow_infiltration == lv.suspicious_for_malignancy == "present"
    )
    assert lv.pedicle_involvement == "present"
    assert lv.lesion_fraction_pct > 90.0
    body = res.labels == 21
    assert np.median(res.images[Sequence.T1][body].astype(float)) < TISSUE[Sequence.T1][1]
    assert np.argwhere(body)[:, 2].max() > np.argwhere(labels == 21)[:, 2].max(), "convex posterior border"


def test_several_levels_make_multiple_lesions() -> None:
    spec = ImplantSpec(
        lesions=(LesionSpec(20), LesionSpec(22), LesionSpec(22), LesionSpec(24, LesionKind.DIFFUSE)),
    )
    _, _, res = _run(spec)
    assert set(np.unique(res.lesion_mask)) == {0, 1, 2, 3, 4}
    assert res.study.suspicious_level_count == 3
    assert res.study.multiple_lesions == "present"
    truth = res.truth_dict()
    assert [lv["level"] for lv in truth["levels"]] == ["L1", "L2", "L3", "L4", "L5"]
    assert len(truth["lesions"]) == 4


@settings(max_examples=8, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    label=st.sampled_from(BODY_LABELS[1:-1]),
    kind=st.sampled_from(list(LesionKind)),
)
def test_implant_is_local_deterministic_and_keeps_dtype(seed: int, label: int, kind: LesionKind) -> None:
    images, labels = block_spine(np.uint8 if seed % 2 else np.uint16)
    spec = ImplantSpec(lesions=(LesionSpec(label, kind),))
    a = implant(images, labels, SPACING, spec, np.random.default_rng(seed))
    b = implant(images, labels, SPACING, spec, np.random.default_rng(seed))
    for seq in images:
        assert a.images[seq].dtype == images[seq].dtype
        assert np.array_equal(a.images[seq], b.images[seq])
        changed = np.argwhere(a.images[seq] != images[seq])
        if len(changed):
            j_body = np.argwhere(labels == label)[:, 1]
            assert changed[:, 1].min() >= j_body.min() - 3 and changed[:, 1].max() <= j_body.max() + 3
    assert np.array_equal(a.labels, labels)
    assert set(np.unique(a.lesion_mask)) == {0, 1}


def test_bad_arguments_fail_fast() -> None:
    images, labels = block_spine()
    with pytest.raises(ValueError, match="absent from labels"):
        implant(images, labels, SPACING, ImplantSpec(lesions=(LesionSpec(19),)), np.random.default_rng(0))
    with pytest.raises(ValueError, match="spacing_kji"):
        implant(images, labels, (1, 1), ImplantSpec(), np.random.default_rng(0))
    with pytest.raises(TypeError, match="rng"):
        implant(images, labels, SPACING, ImplantSpec(), 0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="grade"):
        FractureSpec(22, 4)


@needs_real_data
def test_real_uint8_volume_lesion_relative_to_its_own_marrow() -> None:
    image = sitk.GetArrayFromImage(sitk.ReadImage(str(REAL / "VB2_02_image.nii.gz")))[::3]
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(REAL / "VB2_02_labels.nii.gz")))[::3].astype(np.int16)
    l3 = LEVEL_LABELS["L3"]
    spec = ImplantSpec(
        lesions=(LesionSpec(l3), LesionSpec(LEVEL_LABELS["L1"], extension=Extension.EPIDURAL)),
        fractures=(FractureSpec(LEVEL_LABELS["L4"], 3, FractureShape.CRUSH, FracturePattern.MALIGNANT),),
    )
    res = implant({Sequence.T2: image}, labels, (3.0, 1.0, 1.0), spec, np.random.default_rng(3))
    out = res.images[Sequence.T2]
    assert out.dtype == np.uint8
    lesion = (res.lesion_mask > 0) & (res.labels == l3)
    normal = (labels == l3) & ~lesion
    assert np.median(out[lesion].astype(float)) > 1.3 * np.median(image[normal].astype(float))
    assert res.level("L4").genant_grade == 3
    assert res.study.suspicious_level_count == 3
    assert res.study.canal_compromise == "present"
