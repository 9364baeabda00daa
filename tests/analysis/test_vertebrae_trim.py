"""A body's mask is opened on its bounding box: voxel for voxel what the whole volume gives."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from analysis.vertebrae.segment import disk, largest_component, open_largest


@pytest.mark.parametrize("seed", range(8))
def test_opening_on_the_bounding_box_matches_the_whole_volume(seed: int) -> None:
    rng = np.random.default_rng(seed)
    shape = (9, 70, 60)
    zz, yy, xx = np.ogrid[: shape[0], : shape[1], : shape[2]]
    y0, x0 = int(rng.integers(0, 70)), int(rng.integers(0, 60))  # the body may touch the array's edge
    mask = ((zz - 4) / 4.5) ** 2 + ((yy - y0) / 11.0) ** 2 + ((xx - x0) / 10.0) ** 2 <= 1.0
    mask[:, max(y0 - 20, 0) : y0 + 20, x0 : x0 + 1] = True  # a strand the opening removes
    mask[rng.integers(0, 9), :3, :] = True  # a second piece, along the array's edge
    mask &= rng.random(shape) > 0.05  # holes and ragged edges
    structure = disk((2.5, 2.5))
    opened = ndimage.binary_opening(mask, structure=structure)
    want = largest_component(opened) if opened.any() else opened
    got = open_largest(mask, structure)
    assert want.any()
    np.testing.assert_array_equal(got, want)


def test_an_empty_mask_stays_empty() -> None:
    mask = np.zeros((3, 10, 10), dtype=bool)
    assert not open_largest(mask, disk((2.0, 2.0))).any()
