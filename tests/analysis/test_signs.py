"""Each sign on small constructed spines whose answer is known."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from analysis.results import SignState
from analysis.signs import LevelSigns, assess_signs, derive_reference_regions, regions_from_levels
from analysis.signs.canal import csf_reference, read_canal
from analysis.signs.context import build_context, crop_body
from analysis.thresholds import DEFAULT_THRESHOLDS
from analysis.volume import LEVEL_LABELS, Sequence, Volume
from tests.analysis.test_signs_phantom import (
    AP1,
    CANAL,
    CANAL_K,
    DISC_H,
    K0,
    K1,
    LEVELS,
    TISSUE,
    Spine,
    body_rows,
    canal_strand,
    collapse,
    convex_posterior,
    diffuse_lesion,
    endplate_band,
    epidural_extension,
    focal_lesion,
    normal_spine,
    paravertebral_extension,
    pedicle_lesion,
    side_wall_extension,
)

P, A, IND = SignState.PRESENT, SignState.ABSENT, SignState.INDETERMINATE
ALL = (Sequence.T1, Sequence.T2, Sequence.STIR)


def run(spine: Spine, sequences: tuple[Sequence, ...] = ALL, grades: dict[str, int] | None = None,
        **render: object) -> dict[str, LevelSigns]:
    vols = spine.render(sequences, **render)  # type: ignore[arg-type]
    return {ls.level: ls for ls in assess_signs(vols, spine.segmentation(grades))}


def test_normal_spine_has_no_sign_anywhere() -> None:
    out = run(normal_spine())
    for ls in out.values():
        assert ls.suspicious_for_malignancy == A, ls
        assert ls.marrow_infiltration == A
        assert ls.cortical_destruction == A and ls.soft_tissue_extension == A
        assert ls.t1_marrow_disc_ratio is not None and ls.t1_marrow_disc_ratio > 1.3
        assert ls.lesion_mask is None
        assert ls.canal_diameter_mm == pytest.approx(16.0, abs=1.5)


def test_focal_lesion_is_found_at_its_level_only() -> None:
    spine = normal_spine()
    ball = focal_lesion(spine, "L3", radius_mm=7.0)
    out = run(spine)
    l3 = out["L3"]
    assert l3.marrow_infiltration == P and l3.marrow_pattern == "focal"
    assert l3.marrow_t1 == P and l3.marrow_fluid == P
    assert l3.suspicious_for_malignancy == P
    assert l3.cortical_destruction == A and l3.soft_tissue_extension == A
    truth_pct = 100.0 * ball.sum() / (spine.labels == LEVEL_LABELS["L3"]).sum()
    assert l3.lesion_fraction_pct == pytest.approx(truth_pct, abs=5.0)
    assert l3.lesion_mask is not None and l3.lesion_mask.array[ball].mean() > 0.8
    assert all(out[lv].suspicious_for_malignancy == A for lv in ("L1", "L2", "L4", "L5"))


def test_lesion_touching_the_endplate_stays_in_its_body() -> None:
    spine = normal_spine()
    focal_lesion(spine, "L2", radius_mm=8.0, si_offset=6.0)  # reaches the inferior endplate
    out = run(spine)
    assert out["L2"].marrow_infiltration == P
    assert out["L2"].soft_tissue_extension == A  # the disc is not soft tissue
    assert out["L3"].marrow_infiltration == A


def test_diffuse_replacement_meets_carroll_rule() -> None:
    spine = normal_spine()
    diffuse_lesion(spine, "L4")
    l4 = run(spine)["L4"]
    assert l4.marrow_infiltration == P and l4.marrow_pattern == "diffuse"
    assert l4.t1_marrow_disc_ratio is not None and l4.t1_marrow_disc_ratio <= 1.0
    assert l4.lesion_fraction_pct is not None and l4.lesion_fraction_pct > 80.0


def test_faint_whole_body_is_read_from_t1_and_stir_together() -> None:
    """A body a third of the way to tumour everywhere: brighter than disc on T1 and no focus
    brighter than its own marrow on STIR, so only T1 and STIR read together against the study's
    other bodies find it."""
    spine = normal_spine()
    diffuse_lesion(spine, "L3", what="dim")
    vols = spine.render((Sequence.T1, Sequence.STIR))
    seg = spine.segmentation()
    l3 = {ls.level: ls for ls in assess_signs(vols, seg)}["L3"]
    assert l3.marrow_infiltration == P and l3.marrow_pattern == "diffuse"
    assert l3.marrow_t1 == P and l3.marrow_fluid == P and l3.suspicious_for_malignancy == P
    assert l3.t1_marrow_disc_ratio is not None and l3.t1_marrow_disc_ratio > 1.2
    assert l3.cortical_destruction == A and l3.soft_tissue_extension == A
    # what found it is kept for the impression; the bodies found otherwise carry none
    assert l3.marrow_stir_t1_quotient is not None and l3.marrow_stir_t1_quotient >= 1.6
    dark = normal_spine()
    diffuse_lesion(dark, "L3")
    assert run(dark, (Sequence.T1, Sequence.STIR))["L3"].marrow_stir_t1_quotient is None
    off = replace(DEFAULT_THRESHOLDS, stir_t1_diffuse_quotient=0.0)
    assert {ls.level: ls for ls in assess_signs(vols, seg, None, off)}["L3"].marrow_infiltration != P
    # the quotient is a STIR criterion: T2 keeps fat bright, so T1 + T2 does not use it
    t2 = {ls.level: ls for ls in assess_signs(spine.render((Sequence.T1, Sequence.T2)), seg)}["L3"]
    assert t2.marrow_infiltration != P


def test_focal_quotient_finds_a_focus_faint_on_t1_but_clear_on_stir() -> None:
    """T1 at 0.86 of the marrow (over the faint bar's 0.8), STIR at twice it: with the focal
    quotient on (it ships off), the STIR excess over the T1 excess seeds it."""
    spine = normal_spine()
    ball = focal_lesion(spine, "L3", radius_mm=7.0, what="hazy")
    vols = spine.render((Sequence.T1, Sequence.STIR))
    seg = spine.segmentation()
    on = replace(DEFAULT_THRESHOLDS, stir_t1_focal_quotient=1.8)
    out = {ls.level: ls for ls in assess_signs(vols, seg, None, on)}
    l3 = out["L3"]
    assert l3.marrow_infiltration == P and l3.marrow_pattern == "focal" and l3.marrow_t1 == P
    assert l3.lesion_mask is not None and l3.lesion_mask.array[ball].mean() > 0.5
    assert all(out[lv].marrow_infiltration == A for lv in ("L1", "L2", "L4", "L5"))
    off = replace(DEFAULT_THRESHOLDS, stir_t1_focal_quotient=0.0)
    assert {ls.level: ls for ls in assess_signs(vols, seg, None, off)}["L3"].marrow_infiltration != P


def test_faint_focus_counts_only_with_a_mass_beside_it() -> None:
    """The focal quotient's focus (T1 0.86 of the marrow, STIR twice it), as shipped: with an
    epidural mass of its signal the level is infiltrated, with cortex, soft tissue and canal;
    the same focus inside the body, like red marrow or a haemangioma, is not called."""
    mass_only = DEFAULT_THRESHOLDS
    assert mass_only.stir_t1_mass_quotient > 0 and mass_only.stir_t1_focal_quotient == 0
    spine = normal_spine()
    epidural_extension(spine, "L3", depth_mm=7, what="hazy")
    vols = spine.render((Sequence.T1, Sequence.STIR))
    seg = spine.segmentation()
    out = {ls.level: ls for ls in assess_signs(vols, seg, None, mass_only)}
    l3 = out["L3"]
    assert l3.marrow_infiltration == P and l3.marrow_t1 == P and l3.marrow_fluid == P
    assert l3.cortical_destruction == P and l3.soft_tissue_extension == P
    assert "epidural" in l3.ste_locations and l3.canal_compromise == P
    assert any("soft-tissue mass beside it" in r for r in l3.reasons)
    assert l3.marrow_quotient_focal and (l3.marrow_stir_t1_quotient or 0.0) >= 1.8
    assert all(out[lv].suspicious_for_malignancy == A for lv in ("L1", "L2", "L4", "L5"))
    off = {ls.level: ls for ls in assess_signs(vols, seg, None,
                                               replace(DEFAULT_THRESHOLDS, stir_t1_mass_quotient=0.0))}["L3"]
    assert off.marrow_infiltration != P and off.soft_tissue_extension != P

    inside = normal_spine()
    focal_lesion(inside, "L3", radius_mm=7.0, what="hazy")
    vols = inside.render((Sequence.T1, Sequence.STIR))
    found = {ls.level: ls for ls in assess_signs(vols, inside.segmentation(), None, mass_only)}
    assert all(ls.marrow_infiltration != P for ls in found.values())
    assert all(ls.suspicious_for_malignancy != P for ls in found.values())


def test_faint_whole_body_with_epidural_mass_of_its_signal() -> None:
    spine = normal_spine()
    diffuse_lesion(spine, "L3", what="dim")
    epidural_extension(spine, "L3", depth_mm=7, what="dim")
    l3 = run(spine, (Sequence.T1, Sequence.STIR))["L3"]
    assert l3.marrow_infiltration == P and l3.marrow_pattern == "diffuse"
    assert l3.cortical_destruction == P and l3.soft_tissue_extension == P
    assert "epidural" in l3.ste_locations and l3.canal_compromise == P


def test_epidural_extension_breaks_cortex_and_narrows_canal() -> None:
    spine = normal_spine()
    epidural_extension(spine, "L2", depth_mm=7)
    out = run(spine)
    l2 = out["L2"]
    assert l2.cortical_destruction == P and l2.soft_tissue_extension == P
    assert "epidural" in l2.ste_locations
    assert l2.ste_extent_mm is not None and l2.ste_extent_mm >= 5.0
    assert l2.canal_compromise == P and l2.canal_narrowed
    assert l2.canal_diameter_mm is not None and l2.canal_diameter_mm < 12.0
    assert l2.pedicle_involvement == A
    assert out["L4"].canal_compromise == A


def test_canal_is_measured_across_the_cord_but_not_across_a_wall() -> None:
    """The cord splits the CSF in two; the sac is both halves. A dark wall ends it."""
    spine = normal_spine()
    canal_strand(spine, (70, 78))  # 8 mm of cord, 4 mm of CSF on either side
    for ls in run(spine).values():
        assert ls.canal_diameter_mm == pytest.approx(16.0, abs=1.5), ls.level
    spine = normal_spine()
    canal_strand(spine, (70, 73), "cortex")  # a wall: what lies behind it is not the sac
    for ls in run(spine).values():
        assert ls.canal_diameter_mm == pytest.approx(4.0, abs=1.5), ls.level


def test_the_csf_signal_is_read_in_the_sac_and_not_moved_by_one_level() -> None:
    """The sac's bright voxels only (not the cord between), and a median over the levels."""
    spine = normal_spine()
    canal_strand(spine, (70, 78))
    epidural_extension(spine, "L2", depth_mm=7)
    vols = spine.render((Sequence.T1, Sequence.STIR))
    ctx = build_context(vols, spine.segmentation(), None, DEFAULT_THRESHOLDS)
    readings = {lv: read_canal(ctx, crop) for lv, lab in ctx.order
                if (crop := crop_body(ctx, lv, lab)) is not None}
    for level in ("L1", "L3", "L4", "L5"):
        assert readings[level].csf[Sequence.STIR] == pytest.approx(TISSUE[Sequence.STIR]["csf"], rel=0.05)
    csf = csf_reference(list(readings.values()))
    for seq in (Sequence.T1, Sequence.STIR):
        assert csf[seq] == pytest.approx(TISSUE[seq]["csf"], rel=0.05), seq
    no_fluid = build_context(spine.render((Sequence.T1,)), spine.segmentation(), None, DEFAULT_THRESHOLDS)
    crop = crop_body(no_fluid, "L3", LEVEL_LABELS["L3"])
    assert crop is not None and read_canal(no_fluid, crop).csf == {}
    assert csf_reference([]) == {}


def test_epidural_tumour_narrows_the_canal_around_the_cord() -> None:
    spine = normal_spine()
    canal_strand(spine, (74, 79))
    epidural_extension(spine, "L2", depth_mm=7)
    out = run(spine)
    assert out["L2"].canal_compromise == P and out["L2"].canal_narrowed
    assert out["L2"].canal_diameter_mm == pytest.approx(11.0, abs=1.5)
    assert out["L4"].canal_diameter_mm == pytest.approx(16.0, abs=1.5)


def test_paravertebral_extension_is_anterior_soft_tissue() -> None:
    spine = normal_spine()
    paravertebral_extension(spine, "L3")
    l3 = run(spine)["L3"]
    assert l3.soft_tissue_extension == P and l3.ste_locations == ("paravertebral",)
    assert l3.cortical_destruction == P
    assert l3.canal_compromise == A


def test_a_mass_beside_the_body_past_its_side_is_soft_tissue_not_a_pedicle() -> None:
    spine = normal_spine()
    side_wall_extension(spine, "L3")
    l3 = run(spine)["L3"]
    assert l3.marrow_infiltration == P
    assert l3.soft_tissue_extension == P and l3.ste_locations == ("paravertebral",)
    assert l3.pedicle_involvement == A
    assert l3.canal_compromise == A


def test_malignant_fracture_pattern() -> None:
    spine = normal_spine()
    collapse(spine, "L3", 8)
    diffuse_lesion(spine, "L3")
    pedicle_lesion(spine, "L3")
    convex_posterior(spine, "L3")
    l3 = run(spine, grades={"L3": 2})["L3"]
    assert l3.compression_fracture == P
    assert l3.pathologic_fracture_pattern == P
    assert l3.pedicle_involvement == P
    assert any("pedicle" in f for f in l3.fracture_features)
    assert l3.suspicious_for_malignancy == P


def test_benign_fracture_with_band_is_not_suspicious() -> None:
    spine = normal_spine()
    collapse(spine, "L1", 7)
    endplate_band(spine, "L1")
    l1 = run(spine, grades={"L1": 2})["L1"]
    assert l1.compression_fracture == P
    assert l1.pathologic_fracture_pattern == A
    assert l1.marrow_infiltration == A
    assert l1.suspicious_for_malignancy == A
    assert any("band" in f for f in l1.fracture_features)


def test_collapsed_body_mostly_edema_band_stays_benign_with_t1_and_stir() -> None:
    """A band filling most of a crushed body's core darkens its T1 and brightens its STIR as a
    whole: the marrow beside it, in the body's other half, decides, and it is normal."""
    spine = normal_spine()
    collapse(spine, "L2", 12)
    endplate_band(spine, "L2", depth=(1, 6))
    l2 = run(spine, (Sequence.T1, Sequence.STIR), grades={"L2": 3})["L2"]
    assert l2.compression_fracture == P
    assert l2.marrow_infiltration == A and l2.pathologic_fracture_pattern == A
    assert l2.suspicious_for_malignancy == A
    assert l2.fracture_features and all(f.startswith("benign") for f in l2.fracture_features)


def test_fracture_plus_focal_lesion_is_suspicious() -> None:
    spine = normal_spine()
    collapse(spine, "L4", 7)
    focal_lesion(spine, "L4", radius_mm=7.0, si_offset=4.0)
    l4 = run(spine, grades={"L4": 2})["L4"]
    assert l4.compression_fracture == P
    assert l4.marrow_infiltration == P
    assert l4.suspicious_for_malignancy == P


def test_level_at_the_edge_of_the_field_of_view() -> None:
    spine = normal_spine()
    focal_lesion(spine, "L3")
    # cut the image through L1's middle: L1 is half in view, with no disc above it
    top = int(np.nonzero((spine.labels == LEVEL_LABELS["L1"]).any(axis=(0, 2)))[0][0]) + 12
    cut = Spine(spine.tissue[:, top:], spine.labels[:, top:].copy())
    out = run(cut)
    assert set(out) == {"L1", "L2", "L3", "L4", "L5"}
    assert out["L1"].suspicious_for_malignancy in (A, IND)
    assert out["L3"].marrow_infiltration == P


def test_t2_only_leaves_the_t1_criterion_indeterminate() -> None:
    out = run(normal_spine(), (Sequence.T2,))
    for ls in out.values():
        assert ls.marrow_t1 == IND and ls.t1_marrow_disc_ratio is None
        assert ls.marrow_infiltration == IND  # T2 alone cannot exclude replacement
        assert ls.suspicious_for_malignancy == IND
        assert any("no sagittal T1" in r for r in ls.reasons)


def test_t2_only_sees_a_bright_lesion_but_calls_it_indeterminate() -> None:
    spine = normal_spine()
    focal_lesion(spine, "L2", radius_mm=8.0, what="hot")  # 2.3x marrow on T2
    focal_lesion(spine, "L4", radius_mm=8.0)  # 1.7x: below what T2 alone can tell from real marrow
    out = run(spine, (Sequence.T2,))
    # issue 19: a bright region on T2 alone may be fat, a haemangioma or red marrow
    assert out["L2"].marrow_fluid == P and out["L2"].marrow_infiltration == IND
    assert out["L2"].suspicious_for_malignancy == IND
    assert any("T2 alone" in r and "T1 is needed" in r for r in out["L2"].reasons)
    assert out["L2"].marrow_t1 == IND
    assert out["L4"].marrow_infiltration == IND
    with_t1 = run(spine, (Sequence.T1, Sequence.T2))
    assert with_t1["L4"].marrow_infiltration == P  # dark T1 confirms the faint T2 signal


def test_t1_only_leaves_fluid_criterion_and_canal_indeterminate() -> None:
    out = run(normal_spine(), (Sequence.T1,))
    for ls in out.values():
        assert ls.marrow_fluid == IND and ls.marrow_t1 == A
        assert ls.marrow_infiltration == IND  # T1 alone cannot exclude a focal lesion
        assert ls.canal_compromise == IND and ls.canal_diameter_mm is None


def test_t1_only_sees_diffuse_replacement_by_carroll_rule() -> None:
    spine = normal_spine()
    diffuse_lesion(spine, "L3")
    l3 = run(spine, (Sequence.T1,))["L3"]
    assert l3.marrow_infiltration == P and l3.marrow_t1 == P and l3.marrow_pattern == "diffuse"


def test_t1_only_sees_a_dark_focus_but_calls_it_indeterminate() -> None:
    spine = normal_spine()
    focal_lesion(spine, "L3", radius_mm=7.0, what="wet")  # 0.4 of disc on T1: dark enough for T1 alone
    l3 = run(spine, (Sequence.T1,))["L3"]
    # issue 19: a focal region darker than disc on T1 alone may be Modic change, sclerosis or a
    # haemangioma; only a whole body as dark as disc (Carroll) is evidence T1 carries alone
    assert l3.marrow_t1 == P and l3.marrow_pattern == "focal"
    assert l3.marrow_infiltration == IND and l3.suspicious_for_malignancy == IND
    assert any("T1 alone" in r and "STIR or T2 is needed" in r for r in l3.reasons)
    assert run(spine, (Sequence.T1, Sequence.STIR))["L3"].marrow_infiltration == P


def test_one_sequence_claims_no_more_for_the_pedicles_than_for_the_marrow() -> None:
    spine = normal_spine()
    focal_lesion(spine, "L3", radius_mm=7.0)
    pedicle_lesion(spine, "L3")
    # the pedicles hold the marrow region's own tissue: where one sequence cannot tell the
    # region from Modic change or fat, it cannot tell the pedicles either
    for alone in (Sequence.T1, Sequence.STIR, Sequence.T2):
        l3 = run(spine, (alone,))["L3"]
        assert l3.marrow_infiltration == IND, alone
        assert l3.pedicle_involvement in (A, IND), alone
    both = run(spine, (Sequence.T1, Sequence.STIR))["L3"]
    assert (both.marrow_infiltration, both.pedicle_involvement) == (P, P)


def test_t1_only_calls_a_lesion_through_the_wall_indeterminate() -> None:
    spine = normal_spine()
    epidural_extension(spine, "L2", depth_mm=7, what="wet")
    l2 = run(spine, (Sequence.T1,))["L2"]
    # lesion tissue beyond the wall looks like disc, muscle and CSF on T1
    assert l2.cortical_destruction == IND and l2.soft_tissue_extension == IND
    assert l2.marrow_infiltration == IND and l2.suspicious_for_malignancy == IND
    both = run(spine, (Sequence.T1, Sequence.STIR))["L2"]
    assert both.cortical_destruction == P and both.soft_tissue_extension == P


def test_a_faint_lesion_brighter_than_disc_on_t1_is_found_by_the_faint_bar() -> None:
    spine = normal_spine()
    focal_lesion(spine, "L3", radius_mm=7.0, what="faint")
    vols = spine.render((Sequence.T1, Sequence.STIR))
    shipped = {ls.level: ls for ls in assess_signs(vols, spine.segmentation())}
    assert shipped["L3"].marrow_infiltration == P and shipped["L3"].marrow_pattern == "focal"
    assert all(shipped[lv].marrow_infiltration == A for lv in ("L1", "L2", "L4", "L5"))
    off = replace(DEFAULT_THRESHOLDS, t1_focal_marrow_max=0.0)
    without = {ls.level: ls for ls in assess_signs(vols, spine.segmentation(), thresholds=off)}
    assert without["L3"].marrow_infiltration != P
    # the region as a whole (0.71 of the marrow on T1) must be darker than the guard's share
    guarded = replace(DEFAULT_THRESHOLDS, t1_faint_region_max=0.6)
    strict = {ls.level: ls for ls in assess_signs(vols, spine.segmentation(), thresholds=guarded)}
    assert strict["L3"].marrow_infiltration != P


def test_the_faint_bar_does_not_seed_in_the_bodys_outer_rim() -> None:
    # a network's mask drawn wider than the body holds cortex and outside tissue of that
    # signal in its outer millimetres; a faint sheet there is left to the strong bar
    spine = normal_spine()
    top, bot = body_rows("L3")
    mid = (top + bot) // 2
    spine.tissue[K0 + 1:K1 - 1, mid - 7:mid + 7, AP1 - 4:AP1 - 1] = "faint"
    vols = spine.render((Sequence.T1, Sequence.STIR))
    shipped = {ls.level: ls for ls in assess_signs(vols, spine.segmentation())}
    assert shipped["L3"].marrow_infiltration == A
    anywhere = replace(DEFAULT_THRESHOLDS, t1_faint_depth_mm=0.0)
    rim = {ls.level: ls for ls in assess_signs(vols, spine.segmentation(), thresholds=anywhere)}
    assert rim["L3"].marrow_infiltration == P


def _l5_without_a_disc() -> Spine:
    """L4 left out of the label map: no disc can be derived next to L5 (none above, none below)."""
    spine = normal_spine()
    spine.labels[spine.labels == LEVEL_LABELS["L4"]] = 0
    return spine


def test_a_body_without_a_disc_beside_it_is_compared_with_the_studys_discs() -> None:
    """T1 keeps its say where no disc lies next to the body (a collapsed S1's gap).

    A focus bright on STIR but near-normal on T1 (oedema, a haemangioma) is
    not tumour. Before the study's discs stood in, such a body's T1 had no
    reference, the STIR alone decided, and the focus was called infiltration.
    """
    spine = _l5_without_a_disc()
    focal_lesion(spine, "L5", radius_mm=7.0, what="cord")  # T1 0.9 of marrow, STIR 2.7 times
    l5 = run(spine, (Sequence.T1, Sequence.STIR))["L5"]
    assert l5.marrow_infiltration == A and l5.suspicious_for_malignancy == A
    assert l5.marrow_t1 == A and l5.t1_marrow_disc_ratio == pytest.approx(420 / 260, rel=0.05)
    assert any("study's other discs" in r for r in l5.reasons)
    assert not any("no sagittal T1" in r for r in l5.reasons)

    spine = _l5_without_a_disc()
    focal_lesion(spine, "L5", radius_mm=7.0)
    l5 = run(spine, (Sequence.T1, Sequence.STIR))["L5"]
    assert l5.marrow_infiltration == P and l5.marrow_t1 == P and l5.suspicious_for_malignancy == P


def test_enhancement_needs_pre_and_post_contrast() -> None:
    spine = normal_spine()
    focal_lesion(spine, "L3", radius_mm=8.0)
    with_c = run(spine, (Sequence.T1, Sequence.STIR, Sequence.T1C))
    assert with_c["L3"].enhancement == P
    assert with_c["L1"].enhancement == A
    no_enh = run(spine, (Sequence.T1, Sequence.STIR, Sequence.T1C), enhancing=False)
    assert no_enh["L3"].enhancement == A
    without = run(spine, (Sequence.T1, Sequence.STIR))
    assert without["L3"].enhancement == IND


def test_missing_heights_make_fracture_indeterminate() -> None:
    spine = normal_spine()
    seg = spine.segmentation(levels=("L1", "L2", "L4", "L5"))  # L3 not measured
    out = {ls.level: ls for ls in assess_signs(spine.render(ALL), seg)}
    assert "L3" not in out  # a body the segmentation did not name is not reported


def test_inputs_are_checked() -> None:
    spine = normal_spine()
    vols = spine.render((Sequence.T1,))
    seg = spine.segmentation()
    with pytest.raises(TypeError, match="segmentation"):
        assess_signs(vols, "seg")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="volumes"):
        assess_signs({}, seg)
    other = {Sequence.T1: Volume(vols[Sequence.T1].array[:, :-1], (1.0, 1.0, 3.0))}
    with pytest.raises(ValueError, match="grid"):
        assess_signs(other, seg)


def test_derived_discs_lie_between_bodies() -> None:
    spine = normal_spine()
    regions = derive_reference_regions(spine.segmentation())
    assert set(regions.discs) == {"L1-L2", "L2-L3", "L3-L4", "L4-L5"}
    for mask in regions.discs.values():
        assert (spine.tissue[mask] == "disc").all()


class _Level:
    def __init__(self, above: np.ndarray | None, below: np.ndarray | None, muscle: np.ndarray) -> None:
        self.disc_above, self.disc_below, self.muscle = above, below, muscle


def test_regions_from_the_vertebrae_engine_give_disc_and_muscle_ratios() -> None:
    spine = normal_spine()
    derived = derive_reference_regions(spine.segmentation())
    muscle = np.zeros(spine.labels.shape, dtype=bool)
    muscle[0, :, 90:100] = True  # fat stands in for muscle: T1 600 against marrow 420
    names = ["L1", "L2", "L3", "L4", "L5"]
    levels = {
        n: _Level(derived.discs.get(f"{names[i - 1]}-{n}") if i else None,
                  derived.discs.get(f"{n}-{names[i + 1]}") if i < 4 else None, muscle)
        for i, n in enumerate(names)
    }
    regions = regions_from_levels(levels)
    assert set(regions.discs) == set(derived.discs)
    vols = spine.render((Sequence.T1, Sequence.STIR))
    out = {ls.level: ls for ls in assess_signs(vols, spine.segmentation(), regions)}
    l3 = out["L3"]
    assert l3.t1_marrow_muscle_ratio == pytest.approx(0.7, abs=0.05)
    # the disc rule decides where a disc exists: a bright "muscle" does not make marrow infiltrated
    assert l3.marrow_infiltration == A
    with pytest.raises(TypeError, match="levels"):
        regions_from_levels([])  # type: ignore[arg-type]


def test_lesion_that_looks_like_csf_leaves_its_spread_indeterminate() -> None:
    """Tumour with CSF's signal, touching the canal: its extent cannot be told from the CSF column."""
    spine = normal_spine()
    focal_lesion(spine, "L3", radius_mm=8.0, ap_offset=10.0, what="csf")
    top, bot = body_rows("L3")
    spine.tissue[CANAL_K[0]:CANAL_K[1], top + 4:bot - 4, AP1 - 3:CANAL[0] + 1] = "csf"  # through the wall
    l3 = run(spine, (Sequence.T1, Sequence.STIR))["L3"]
    assert l3.marrow_infiltration == P and l3.suspicious_for_malignancy == P
    assert l3.soft_tissue_extension == IND and l3.cortical_destruction == IND
    assert l3.canal_compromise == IND
    assert any("CSF" in r for r in l3.reasons)


def test_epidural_tumour_near_csf_signal_is_told_from_the_csf_column() -> None:
    """Within 35 % of CSF on T1 and STIR the column is reached; the narrowed signature (20 %) is not."""
    spine = normal_spine()
    epidural_extension(spine, "L2", depth_mm=7, what="wet")
    l2 = run(spine, (Sequence.T1, Sequence.STIR))["L2"]
    assert l2.soft_tissue_extension == P and "epidural" in l2.ste_locations
    assert l2.cortical_destruction == P and l2.canal_compromise == P
    assert not any("CSF" in r for r in l2.reasons)


def _pinched_pale_sac() -> Spine:
    """A sac of pale CSF against the bodies' backs, closed by a disc bulge at every disc level."""
    spine = normal_spine()
    spine.tissue[CANAL_K[0]:CANAL_K[1], :, AP1:CANAL[1]] = "pale"
    for n in range(len(LEVELS) - 1):
        bot = body_rows(LEVELS[n])[1]
        spine.tissue[CANAL_K[0]:CANAL_K[1], bot:bot + DISC_H, AP1:CANAL[1]] = "disc"
    return spine


def test_a_lesion_through_the_wall_does_not_take_the_csf_behind_it_for_tumour() -> None:
    """The sac behind a replaced body is told from tumour by the study's CSF signal.

    The pale CSF lies within the lesion signature's tolerance on T1 and STIR,
    and the disc bulges keep it from reaching far enough above or below to be
    caught as a fluid column: before the study's CSF signal was read, L4's sac
    was called cortical destruction and epidural soft tissue.
    """
    spine = _pinched_pale_sac()
    diffuse_lesion(spine, "L4")
    l4 = run(spine, (Sequence.T1, Sequence.STIR))["L4"]
    assert l4.marrow_infiltration == P and l4.suspicious_for_malignancy == P
    assert l4.cortical_destruction == A and l4.soft_tissue_extension == A
    assert l4.canal_compromise == A

    # tumour with the lesion's own signal in that sac is still tumour
    spine = _pinched_pale_sac()
    epidural_extension(spine, "L2", depth_mm=7)
    l2 = run(spine, (Sequence.T1, Sequence.STIR))["L2"]
    assert l2.cortical_destruction == P and l2.soft_tissue_extension == P
    assert "epidural" in l2.ste_locations and l2.canal_compromise == P


def test_no_usable_sequence_leaves_every_sign_indeterminate() -> None:
    spine = normal_spine()
    dixon = spine.render((Sequence.T2,))[Sequence.T2]
    out = assess_signs({Sequence.DIXON: dixon}, spine.segmentation())
    for ls in out:
        assert ls.marrow_infiltration == IND and ls.cortical_destruction == IND
        assert ls.soft_tissue_extension == IND and ls.suspicious_for_malignancy == IND
        assert ls.canal_compromise == IND


def test_a_lesion_left_out_of_the_mask_is_found_in_the_body_outline() -> None:
    from dataclasses import replace

    spine = normal_spine()
    ball = focal_lesion(spine, "L3", radius_mm=6.0, ap_offset=8.0)  # in the back of the body
    vols = spine.render(ALL)
    seg = spine.segmentation()
    carved = np.where(ball, 0, spine.labels)  # the network's mask leaves the lesion out
    labels = seg.labels.with_array(carved)
    without = {ls.level: ls for ls in assess_signs(vols, replace(seg, labels=labels))}
    assert without["L3"].marrow_infiltration == A
    outlined = replace(seg, labels=labels, outlines=seg.labels)
    with_outline = {ls.level: ls for ls in assess_signs(vols, outlined)}
    assert with_outline["L3"].marrow_infiltration == P
    with pytest.raises(ValueError, match="outlines"):
        assess_signs(vols, replace(seg, outlines=Volume(np.zeros((2, 2, 2)), (1.0, 1.0, 1.0))))


def test_lesion_signature_is_read_where_the_lesion_was_seeded() -> None:
    """Disc voxels a lesion grew into (mask over an endplate) must not pull its signature."""
    from analysis.signs.extent import lesion_signature

    shape = (4, 20, 20)
    t1 = np.full(shape, 420.0)
    stir = np.full(shape, 110.0)
    seeds = np.zeros(shape, dtype=bool)
    seeds[:, 8:12, 8:12] = True  # tumour in the core
    disc = np.zeros(shape, dtype=bool)
    disc[:, 0:4, :] = True  # three times as many disc voxels at the edge of the mask
    t1[seeds], stir[seeds] = 110.0, 1100.0
    t1[disc], stir[disc] = 260.0, 280.0
    lesion = seeds | disc
    grow = {Sequence.T1: ("<", 350.0), Sequence.STIR: (">", 150.0)}
    images = {Sequence.T1: t1, Sequence.STIR: stir}
    sig = lesion_signature(images, lesion, seeds, grow)
    assert sig == {Sequence.T1: pytest.approx(110.0), Sequence.STIR: pytest.approx(1100.0)}
    # no seed left inside the lesion (a diffuse body): the whole lesion speaks
    assert lesion_signature(images, disc, seeds, grow)[Sequence.STIR] == pytest.approx(280.0)
    # one sequence seeds at a stricter bar, in the tumour's own tail: the whole lesion speaks
    alone = lesion_signature({Sequence.STIR: stir}, lesion, seeds, {Sequence.STIR: (">", 150.0)})
    assert alone == {Sequence.STIR: pytest.approx(280.0)}
