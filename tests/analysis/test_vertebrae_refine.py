"""The section refiner's inputs and targets, and the shipped refiner on a phantom's fractured body."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import numpy as np
import numpy.typing as npt
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from analysis.vertebrae.geometry import Canonical
from analysis.vertebrae.measure import Heights, heights_2d, mid_sagittal_slice
from analysis.vertebrae.net import UNet
from analysis.vertebrae.pipeline import section_heights
from analysis.vertebrae.refine import (
    SECTION_PX,
    SECTION_SIZE,
    refined_section,
    section_input,
    section_target,
)
from analysis.vertebrae.segment import BodyCandidate

SPACING = (3.0, 1.0, 1.0)


def _labels() -> np.ndarray:
    labels = np.zeros((5, 120, 90), np.int16)
    labels[:, 20:45, 30:65] = 1
    labels[:, 55:80, 30:65] = 2  # the body of interest: 25 mm tall, 35 mm deep
    labels[:, 90:115, 30:65] = 3
    return labels


@settings(max_examples=20, deadline=None)
@given(dy=st.floats(-5, 5), dx=st.floats(-5, 5))
def test_target_classes_sum_to_one_and_hold_the_body_where_it_is(dy: float, dx: float) -> None:
    labels = _labels()
    centre = (67.0 + dy, 47.0 + dx)
    y = section_target(labels, SPACING, 2, centre, 2)
    assert y.shape == (3, SECTION_SIZE, SECTION_SIZE)
    np.testing.assert_allclose(y.sum(axis=0), 1.0, atol=1e-5)
    body = y[1] >= 0.5
    # 25 x 35 mm at SECTION_PX, give or take the soft edge
    assert abs(body.sum() * SECTION_PX**2 - 25 * 35) < 0.1 * 25 * 35
    rows, cols = np.nonzero(body)
    assert abs((rows.mean() - SECTION_SIZE / 2 + 0.5) * SECTION_PX + dy) < 1.0
    assert abs((cols.mean() - SECTION_SIZE / 2 + 0.5) * SECTION_PX + dx) < 1.0
    assert (y[2] >= 0.5).any()  # the neighbours are "other body"


def test_input_is_scaled_on_the_body_whatever_the_scanner_scale() -> None:
    rng = np.random.default_rng(1)
    image = 100.0 + 20.0 * rng.standard_normal((5, 120, 90))
    a = section_input(image, SPACING, 2, (67.0, 47.0))
    b = section_input(7.0 * image + 300.0, SPACING, 2, (67.0, 47.0))
    assert a.shape == (3, SECTION_SIZE, SECTION_SIZE)
    np.testing.assert_allclose(a, b, atol=1e-3)
    with pytest.raises(ValueError, match="slice_index"):
        section_input(image, SPACING, 5, (67.0, 47.0))


def test_refined_section_needs_networks_and_images() -> None:
    torch.manual_seed(0)
    net = UNet((4, 8))
    net.eval()
    with pytest.raises(ValueError, match="must not be empty"):
        refined_section((), [np.zeros((5, 120, 90))], SPACING, 2, (67.0, 47.0))
    with pytest.raises(ValueError, match="must not be empty"):
        refined_section((net,), [], SPACING, 2, (67.0, 47.0))
    out = refined_section((net,), [np.zeros((5, 120, 90))], SPACING, 2, (67.0, 47.0))
    assert out.mask.shape == out.edge.shape == (SECTION_SIZE, SECTION_SIZE) and out.mask.dtype == np.bool_
    # the edge field thresholds back to the mask, and stops two pixels beyond it
    np.testing.assert_array_equal(out.edge >= 0.5, out.mask)
    assert not out.edge[~ndimage.binary_dilation(out.mask, iterations=2)].any()


@pytest.mark.slow
def test_shipped_refiner_redraws_a_collapsed_body_like_its_truth() -> None:
    """A grade-2 wedge on a T2 phantom: the redrawn section's heights within 1.5 mm of the truth's."""
    from analysis.vertebrae.geometry import canonical_of
    from analysis.volume import Sequence
    from node.pipeline.model import shipped_model
    from phantom.render import SagittalGrid
    from phantom.specs import FracturePattern, FractureShape, FractureSpec, ImplantSpec
    from phantom.study import build_phantom

    l2 = 21
    spec = ImplantSpec(fractures=(FractureSpec(l2, 2, FractureShape.WEDGE, FracturePattern.MALIGNANT),))
    grid = SagittalGrid(n_slices=11)
    study = build_phantom(spec, np.random.default_rng(11), sequences=(Sequence.T2,), grid=grid)
    can = canonical_of(study.labels)
    # to_canonical keeps the dtype but is typed for any array; the phantom's labels are integers
    labels = cast("npt.NDArray[np.integer]", can.to_canonical(np.asarray(study.labels.array)))
    image = can.to_canonical(np.asarray(study.series[0].pixels))
    body = labels == l2
    s = mid_sagittal_slice(body)
    rows, cols = np.nonzero(body[s])
    centre = (rows.mean() * can.spacing[1], cols.mean() * can.spacing[2])
    redrawn = refined_section(shipped_model().refiners, [image], can.spacing, s, centre)
    section = redrawn.mask
    soft_truth = section_target(labels, can.spacing, s, centre, l2)[1]
    truth = soft_truth >= 0.5
    assert 2.0 * (section & truth).sum() / (section.sum() + truth.sum()) > 0.9
    got = heights_2d(section, (SECTION_PX, SECTION_PX), edge_field=redrawn.edge)
    want = heights_2d(truth, (SECTION_PX, SECTION_PX), edge_field=soft_truth)
    assert max(abs(g - w) for g, w in zip(got, want, strict=True)) < 1.0, (got, want)
    assert want[0] < 0.8 * want[2]  # the wedge is there to be measured
    assert abs(got[0] / got[2] - want[0] / want[2]) < 0.05


def test_the_product_model_needs_both_weights_and_says_which_script_makes_them(tmp_path: Path) -> None:
    from node.pipeline.model import FOLDS_DIR, load_ensemble

    with pytest.raises(FileNotFoundError, match=r"train_vertebrae\.py"):
        load_ensemble(tmp_path, tmp_path)
    with pytest.raises(FileNotFoundError, match=r"train_refiner\.py"):
        load_ensemble(FOLDS_DIR, tmp_path)


def _whole_square_refiner() -> UNet:
    """A refiner that calls every pixel "this body": its section is the whole 64 mm square."""
    net = UNet((4, 8)).eval()
    with torch.no_grad():
        net.head.weight.zero_()
        assert net.head.bias is not None
        net.head.bias.copy_(torch.tensor([0.0, 10.0, 0.0]))
    return net


@pytest.mark.parametrize(("side_mm", "refined"), [(40, True), (56, True), (100, False)])
def test_section_heights_keep_the_mask_when_the_redrawn_section_is_far_smaller(
    side_mm: int, refined: bool
) -> None:
    spacing = (3.0, 1.0, 1.0)
    can = Canonical(perm=(0, 1, 2), flip=(False, False, False), spacing=spacing, shape=(5, 160, 160))
    mask = np.zeros(can.shape, bool)
    lo = 80 - side_mm // 2
    mask[:, lo : lo + side_mm, lo : lo + side_mm] = True
    cand = BodyCandidate(mask, (6.0, 80.0, 80.0), float(mask.sum()) * 3e-3, 0.0, 0.9)
    mask_heights = Heights(float(side_mm), float(side_mm), float(side_mm), 2)
    image = np.random.default_rng(0).normal(100.0, 10.0, can.shape).astype(np.float32)
    h = section_heights(cand, mask_heights, [image], can, None, (_whole_square_refiner(),))
    # the 64 mm square holds 4096 mm2: over 0.6 of a 40 or 56 mm section's mask, under 0.6 of 100 mm's
    if refined:
        assert h.hm_mm > 60.0 and h.mid_slice == 2
    else:
        assert h == mask_heights
