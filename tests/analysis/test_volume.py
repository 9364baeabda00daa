"""The volume's two axis orders: (i, j, k) for ITK's geometry, (k, j, i) for the array."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from analysis.sitk_adapter import footprint_like, resample_like
from analysis.volume import Volume, content_box_of

OBLIQUE = (0.0, 0.6, 0.8, 1.0, 0.0, 0.0, 0.0, 0.8, -0.6)


def test_shape_and_spacing_in_either_axis_order() -> None:
    vol = Volume(np.zeros((2, 3, 4), dtype=np.int16), spacing=(0.5, 0.7, 4.0))
    assert vol.shape_ijk == (4, 3, 2)
    assert vol.spacing_kji == (4.0, 0.7, 0.5)


@given(pads=st.lists(st.integers(0, 4), min_size=6, max_size=6), fill=st.integers(-5, 0),
       seed=st.integers(0, 2**16))
def test_a_constant_border_is_found_and_cropped_back_to_the_image_in_place(
    pads: list[int], fill: int, seed: int
) -> None:
    image = np.random.default_rng(seed).integers(1, 100, size=(3, 4, 5)).astype(np.int16)
    image[0, 0, 0] = fill  # the image itself may hold the border's value
    before = ((pads[0], pads[1]), (pads[2], pads[3]), (pads[4], pads[5]))
    padded = Volume(np.pad(image, before, constant_values=min(fill, 0)), (0.5, 0.7, 4.0), (10.0, -3.0, 7.0),
                    OBLIQUE)
    box = padded.content_box()
    cropped = padded.crop(box)
    np.testing.assert_array_equal(cropped.array, image)
    start = np.array([box[2].start, box[1].start, box[0].start])
    for ijk in ((0, 0, 0), (4, 3, 2), (1.5, 2.0, 0.5)):
        np.testing.assert_allclose(cropped.index_to_lps(ijk), padded.index_to_lps(np.add(ijk, start)))


def test_a_volume_of_one_value_has_no_border_and_a_box_must_be_plain() -> None:
    vol = Volume(np.zeros((2, 3, 4), dtype=np.int16), spacing=(1.0, 1.0, 1.0))
    assert vol.content_box() == (slice(0, 2), slice(0, 3), slice(0, 4))
    with pytest.raises(ValueError, match=r"box\[1\] must be a non-empty slice with step 1"):
        vol.crop((slice(0, 2), slice(0, 3, 2), slice(0, 4)))
    with pytest.raises(ValueError, match=r"box\[2\]"):
        vol.crop((slice(0, 2), slice(0, 3), slice(2, 2)))


def test_the_box_of_several_series_holds_each_one_s_image() -> None:
    # on one grid, a series with a border and one whose image reaches into that border
    bordered = np.zeros((2, 6, 7), dtype=np.int16)
    bordered[:, 2:5, 1:6] = 9
    reaching = np.zeros((2, 6, 7), dtype=np.int16)
    reaching[:, 1:4, 3:7] = 4
    volumes = [Volume(a, (1.0, 1.0, 3.0)) for a in (bordered, reaching)]
    assert volumes[0].content_box() == (slice(0, 2), slice(2, 5), slice(1, 6))
    assert content_box_of(volumes) == (slice(0, 2), slice(1, 5), slice(1, 7))
    with pytest.raises(ValueError, match="share one grid"):
        content_box_of([volumes[0], Volume(np.zeros((2, 6, 8), dtype=np.int16), (1.0, 1.0, 3.0))])


def test_a_footprint_is_where_a_series_has_image_on_another_grid() -> None:
    image = np.full((4, 30, 20), 50, dtype=np.uint16)
    image[:, :3] = 0  # a constant border along the top rows
    grid = Volume(image, (1.0, 1.0, 3.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    same = np.asarray(footprint_like(grid, grid).array)
    assert same.dtype == np.uint8 and not same[:, :3].any() and same[:, 3:].all()
    # the rows 10-19 of the grid, as a series with a smaller field of view
    shorter = grid.crop((slice(None), slice(10, 20), slice(None)))
    other = np.asarray(footprint_like(shorter, grid).array)
    assert other[:, 10:20].all() and not other[:, :10].any() and not other[:, 20:].any()
    # on the same grid, the footprint is what resampling would give
    inside = grid.crop(grid.content_box())
    ones = inside.with_array(np.ones(inside.array.shape, dtype=np.uint8))
    resampled = resample_like(ones, grid, labels=True)
    np.testing.assert_array_equal(same, np.asarray(resampled.array))
