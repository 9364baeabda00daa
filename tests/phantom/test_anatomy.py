"""The synthetic anatomy looks like a lumbar spine on T1, T2 and STIR."""

from __future__ import annotations

import numpy as np

from analysis.vertebrae.geometry import canonical_of
from analysis.vertebrae.measure import deformities, label_map_heights
from analysis.volume import LEVEL_LABELS, Plane, Sequence
from phantom import render
from phantom.anatomy import Tissue
from phantom.implants import ImplantSpec
from phantom.spine import build_spine
from phantom.study import ImageSeries, PhantomStudy, build_phantom
from tests.phantom.conftest import SMALL_GRID


def _series(study: PhantomStudy, seq: Sequence) -> ImageSeries:
    return next(s for s in study.series if s.sequence == seq and s.plane == Plane.SAGITTAL)


def test_levels_t12_to_s1_with_lordosis(normal_study: PhantomStudy) -> None:
    labels = normal_study.labels.array
    present = set(np.unique(labels)) - {0}
    assert {LEVEL_LABELS[n] for n in ("T12", "L1", "L2", "L3", "L4", "L5", "S1")} <= present
    centroid = {lb: np.argwhere(labels == lb).mean(axis=0) for lb in present}
    order = sorted(present, key=lambda lb: centroid[lb][1])
    assert order[-1] == LEVEL_LABELS["S1"], "bodies stack top to bottom along j"
    ap = {lb: centroid[lb][2] for lb in present}
    # Lordosis: L3 lies anterior (smaller i) of both T12 and S1.
    assert ap[LEVEL_LABELS["L3"]] < ap[LEVEL_LABELS["T12"]] - 3
    assert ap[LEVEL_LABELS["L3"]] < ap[LEVEL_LABELS["S1"]] - 3
    heights = [np.ptp(np.argwhere(labels == lb)[:, 1]) * SMALL_GRID.pixel_mm for lb in range(20, 25)]
    assert all(20 < h < 40 for h in heights)


def test_normal_bodies_have_the_shape_their_neighbours_predict() -> None:
    # The analysis expects each level's typical wedge and posterior height (measured on the real
    # cases); a phantom shaped otherwise would read height loss on normal bodies and shift every
    # implanted fracture's grade. On the default (clinical) grid, so pixels do not dominate.
    study = build_phantom(ImplantSpec(), np.random.default_rng(3), sequences=(Sequence.T1,))
    can = canonical_of(study.labels)
    heights = label_map_heights(np.asarray(can.to_canonical(study.labels.array), dtype=np.int16), can.spacing)
    levels = ["T12", "L1", "L2", "L3", "L4", "L5"]
    losses = [d.height_loss_pct for d in deformities(levels, [heights[LEVEL_LABELS[lv]] for lv in levels])]
    assert all(loss is not None and loss < 4.5 for loss in losses), dict(zip(levels, losses, strict=True))


def test_tissue_contrast_is_that_of_lumbar_mri() -> None:
    spine = build_spine(0.0, 100.0)
    l3 = spine.segment("L3")
    for seq in (Sequence.T1, Sequence.T2, Sequence.STIR):
        lut = render.lut(seq)
        marrow, disc, muscle, csf, fat = (
            lut[t] for t in (Tissue.MARROW, Tissue.NUCLEUS, Tissue.MUSCLE, Tissue.CSF, Tissue.FAT)
        )
        if seq == Sequence.T1:
            assert marrow > disc and marrow > muscle and csf < muscle
        if seq == Sequence.T2:
            assert csf > disc > marrow
        if seq == Sequence.STIR:
            assert fat < marrow < disc < csf
        assert lut[Tissue.CORTEX] < 0.2 * marrow
    assert 20 < l3.a1 - l3.a0 < 35


def test_images_show_bright_csf_on_t2_dark_rim_and_noise(normal_study: PhantomStudy) -> None:
    t1 = _series(normal_study, Sequence.T1).pixels.astype(float)
    t2 = _series(normal_study, Sequence.T2).pixels.astype(float)
    stir = _series(normal_study, Sequence.STIR).pixels.astype(float)
    labels = normal_study.labels.array
    body = labels == LEVEL_LABELS["L3"]
    mid = t1.shape[0] // 2
    assert np.percentile(t2[mid], 99.5) > 2.0 * np.median(t2[body])
    assert np.median(stir[body]) < 0.2 * np.percentile(stir[mid], 99.5), (
        "fat-suppressed marrow is dark on STIR"
    )
    assert _series(normal_study, Sequence.T1).pixels.dtype == np.uint16
    assert t1.max() <= render.MAX_VALUE
    air = t1[:, :, -4:]
    assert 0 < air.mean() < 60, "Rician noise floor in the air behind the back"
    from scipy import ndimage

    rim = body & ~ndimage.binary_erosion(body, np.ones((1, 3, 3), bool), iterations=2)
    core = ndimage.binary_erosion(body, np.ones((1, 3, 3), bool), iterations=3)
    assert np.median(t1[rim]) < 0.8 * np.median(t1[core]), "dark cortical rim"
