"""Invariants of series reading and classification, checked on generated series."""

from __future__ import annotations

import random
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from analysis.volume import Plane, Sequence
from node.study import classify_series, plane_from_orientation, read_series
from tests.study.factory import T1, T2, Grid, single_frame_series, volume_array, write

PROPERTY_SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def rotations(draw: st.DrawFn) -> np.ndarray:
    """A uniformly spread rotation matrix (from a normalised quaternion)."""
    q = np.array(draw(st.lists(st.floats(-1, 1), min_size=4, max_size=4)))
    if np.linalg.norm(q) < 0.1:
        q = np.array([1.0, 0.0, 0.0, 0.0])
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


@st.composite
def grids(draw: st.DrawFn) -> tuple[Grid, int]:
    rotation = draw(rotations())
    count = draw(st.integers(2, 6))
    step = draw(st.floats(0.5, 8.0)) * draw(st.sampled_from([1.0, -1.0]))
    grid = Grid(
        orientation=tuple(float(v) for v in (*rotation[:, 0], *rotation[:, 1])),
        origin=tuple(draw(st.floats(-300, 300)) for _ in range(3)),  # type: ignore[arg-type]
        pixel_spacing=(draw(st.floats(0.2, 2.0)), draw(st.floats(0.2, 2.0))),
        offsets=tuple(k * step for k in range(count)),
    )
    return grid, count


@PROPERTY_SETTINGS
@given(grids(), st.randoms(use_true_random=False))
def test_voxel_to_lps_matches_each_image_position(spec: tuple[Grid, int], rng: random.Random) -> None:
    grid, count = spec
    array = volume_array(slices=count, rows=4, columns=3, seed=rng.randint(0, 1000))
    with tempfile.TemporaryDirectory() as folder:
        paths = write(single_frame_series(array, grid), Path(folder), shuffle=rng.randint(0, 1000))
        series = read_series(paths)
        volume = series.volume
        spacing_i, spacing_j = grid.pixel_spacing[1], grid.pixel_spacing[0]
        row = np.asarray(grid.orientation[:3])
        col = np.asarray(grid.orientation[3:])
        for k, source in enumerate(series.slices):
            header = pydicom.dcmread(source.path, stop_before_pixels=True)
            position = np.asarray(header.ImagePositionPatient, dtype=float)
            np.testing.assert_allclose(volume.index_to_lps([0, 0, k]), position, atol=1e-4)
            corner = position + 2 * spacing_i * row + 3 * spacing_j * col
            np.testing.assert_allclose(volume.index_to_lps([2, 3, k]), corner, atol=1e-4)
            np.testing.assert_allclose(volume.lps_to_index(corner), [2, 3, k], atol=1e-4)
            stored = pydicom.dcmread(source.path).pixel_array
            np.testing.assert_array_equal(volume.array[k], stored)
        assert volume.spacing[2] > 0
        assert np.isclose(np.linalg.det(volume.direction_matrix), 1.0)


@PROPERTY_SETTINGS
@given(grids(), st.permutations(range(6)), st.permutations(range(6)))
def test_file_order_does_not_change_the_volume(
    spec: tuple[Grid, int], order_a: list[int], order_b: list[int]
) -> None:
    grid, count = spec
    array = volume_array(slices=count, rows=3, columns=4)
    with tempfile.TemporaryDirectory() as folder:
        paths = write(single_frame_series(array, grid), Path(folder))
        first = read_series([paths[i] for i in order_a if i < count])
        second = read_series([paths[i] for i in order_b if i < count])
    a, b = first.volume, second.volume
    np.testing.assert_array_equal(a.array, b.array)
    assert (a.origin, a.spacing, a.direction) == (b.origin, b.spacing, b.direction)
    assert first.slices == second.slices
    # The stored slices, ordered along the normal, are what the volume holds.
    ordered = array if grid.offsets is None or grid.offsets[-1] > 0 else array[::-1]
    np.testing.assert_array_equal(a.array, ordered)


@settings(max_examples=60, deadline=None)
@given(
    st.floats(100, 999), st.floats(5, 29.9), st.one_of(st.text(max_size=30), st.sampled_from(
        ["T2 SAG", "SAG STIR", "T1 POST GD", "FLAIR", "Dixon W", "ax t2", "T1+C", ""])),
    st.floats(2001, 8000), st.floats(60.1, 200),
)
def test_parameters_in_a_band_beat_any_description(
    t1_tr: float, t1_te: float, description: str, t2_tr: float, t2_te: float
) -> None:
    text = "".join(c for c in description if c.isprintable() and c != "\\")[:30]
    array = volume_array(slices=2, rows=2, columns=2)
    # Agent recorded as none: a "post" in the text may not turn the T1 into a post-contrast T1 either.
    t1_acq = replace(T1, tr=t1_tr, te=t1_te, agent="NONE", description=text)
    t2_acq = replace(T2, tr=t2_tr, te=t2_te, description=text)
    t1 = classify_series(single_frame_series(array, Grid(), t1_acq))
    t2 = classify_series(single_frame_series(array, Grid(), t2_acq))
    assert (t1.sequence, t2.sequence) == (Sequence.T1, Sequence.T2)


@settings(max_examples=100, deadline=None)
@given(rotations(), st.sampled_from([1.0, -1.0]), st.sampled_from([1.0, -1.0]))
def test_plane_ignores_the_sense_of_row_and_column(
    rotation: np.ndarray, row_sign: float, col_sign: float
) -> None:
    orientation = (*rotation[:, 0], *rotation[:, 1])
    flipped = (*(row_sign * rotation[:, 0]), *(col_sign * rotation[:, 1]))
    swapped = (*rotation[:, 1], *rotation[:, 0])
    plane = plane_from_orientation(orientation)
    assert plane_from_orientation(flipped) is plane
    assert plane_from_orientation(swapped) is plane
    normal = np.abs(rotation[:, 2])
    # A normal 0.8 along an axis (the bar) is 0.8 only up to rounding, here and in the code's
    # cross product: either side of the bar is right there (a clean clone drew such a rotation).
    assume(abs(normal.max() - 0.8) > 1e-9)
    if normal.max() >= 0.8:
        assert plane is (Plane.SAGITTAL, Plane.CORONAL, Plane.AXIAL)[int(np.argmax(normal))]
    else:
        assert plane is Plane.OBLIQUE
