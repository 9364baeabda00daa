"""Series of files -> Volume: geometry, slice order, rescale, multi-frame, rejections."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.uid import UID, generate_uid

from node.study import SeriesError, StudyError, read_series, read_volume
from node.study.frames import read_header
from tests.study.factory import (
    AXIAL,
    STIR,
    T1,
    Grid,
    Study,
    enhanced_mr,
    single_frame_series,
    volume_array,
    write,
)


def test_single_frame_geometry_and_order(tmp_path: Path) -> None:
    array = volume_array(slices=7, rows=9, columns=5)
    grid = Grid(pixel_spacing=(0.8, 0.6), slice_spacing=3.3)
    paths = write(single_frame_series(array, grid), tmp_path, shuffle=3)
    series = read_series(paths)
    volume = series.volume
    # Sagittal 0\1\0\0\0\-1: rows run posterior, columns inferior, normal (row x column) to the right.
    assert volume.direction == (0.0, 0.0, -1.0, 1.0, 0.0, 0.0, 0.0, -1.0, 0.0)
    assert volume.spacing == pytest.approx((0.6, 0.8, 3.3))
    assert volume.origin == pytest.approx((-30.0, -100.0, 120.0))
    assert volume.array.dtype == np.uint16
    np.testing.assert_array_equal(volume.array, array)
    assert [s.frame_number for s in series.slices] == [None] * 7
    instance = [int(read_header(s.path).InstanceNumber) for s in series.slices]
    assert instance == list(range(1, 8))


def test_slices_sorted_along_normal_not_by_instance_number(tmp_path: Path) -> None:
    # Slices stored from right to left: the volume still runs along +normal from its first slice.
    array = volume_array(slices=5)
    grid = Grid(offsets=tuple(-4.0 * k for k in range(5)))
    paths = write(single_frame_series(array, grid), tmp_path)
    volume = read_volume(paths)
    np.testing.assert_array_equal(volume.array, array[::-1])
    assert volume.origin == pytest.approx(tuple(np.asarray(grid.origin) - 16.0 * grid.normal()))
    assert volume.spacing[2] == pytest.approx(4.0)


def test_oblique_orientation_geometry(tmp_path: Path) -> None:
    angle = np.deg2rad(17.0)
    row = (0.0, np.cos(angle), np.sin(angle))
    col = (0.0, np.sin(angle), -np.cos(angle))
    grid = Grid(orientation=row + col, pixel_spacing=(0.7, 0.9), slice_spacing=4.4)
    array = volume_array(slices=6)
    paths = write(single_frame_series(array, grid), tmp_path, shuffle=1)
    volume = read_volume(paths)
    direction = volume.direction_matrix
    np.testing.assert_allclose(direction[:, 0], row, atol=1e-6)
    np.testing.assert_allclose(direction[:, 1], col, atol=1e-6)
    np.testing.assert_allclose(direction[:, 2], np.cross(row, col), atol=1e-6)
    assert volume.spacing == pytest.approx((0.9, 0.7, 4.4), abs=1e-5)
    for k, position in enumerate(grid.positions(6)):
        np.testing.assert_allclose(volume.index_to_lps([0, 0, k]), position, atol=1e-5)
    # A voxel inside the slice: column i moves along the row direction by the column spacing.
    np.testing.assert_allclose(
        volume.index_to_lps([3, 2, 1]),
        np.asarray(grid.positions(6)[1]) + 3 * 0.9 * np.asarray(row) + 2 * 0.7 * np.asarray(col),
        atol=1e-5,
    )
    np.testing.assert_array_equal(volume.array, array)


def test_rescale_slope_intercept_per_slice(tmp_path: Path) -> None:
    array = volume_array(slices=4)
    slopes = [(1.0, 0.0), (2.0, -100.0), (0.5, 10.0), (1.0, 0.0)]
    paths = write(single_frame_series(array, slopes=slopes), tmp_path)
    volume = read_volume(paths)
    assert volume.array.dtype == np.float32
    expected = np.stack([array[k] * s + b for k, (s, b) in enumerate(slopes)]).astype(np.float32)
    np.testing.assert_allclose(np.asarray(volume.array, dtype=float), expected)


def test_headers_given_are_used_without_rereading(tmp_path: Path) -> None:
    array = volume_array(slices=3)
    paths = write(single_frame_series(array), tmp_path)
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in paths]
    np.testing.assert_array_equal(read_volume(paths, headers=headers).array, array)
    with pytest.raises(ValueError, match="headers"):
        read_volume(paths, headers=headers[:2])


def test_enhanced_mr_shared_and_per_frame_groups(tmp_path: Path) -> None:
    array = volume_array(slices=6)
    grid = Grid(pixel_spacing=(0.5, 0.75), slice_spacing=3.0)
    ds = enhanced_mr(array, grid, STIR, frame_order=[4, 0, 5, 2, 1, 3], rescale=(2.0, -5.0))
    ds.save_as(tmp_path / "enh.dcm", enforce_file_format=True)
    series = read_series([tmp_path / "enh.dcm"])
    volume = series.volume
    np.testing.assert_allclose(np.asarray(volume.array, dtype=float), array * 2.0 - 5.0)
    assert volume.spacing == pytest.approx((0.75, 0.5, 3.0))
    assert volume.origin == pytest.approx(grid.origin)
    assert [s.frame_number for s in series.slices] == [2, 5, 4, 6, 1, 3]


def test_enhanced_mr_split_over_two_objects(tmp_path: Path) -> None:
    study = Study()
    array = volume_array(slices=6)
    first = enhanced_mr(array, study=study, frame_order=[0, 2, 4])
    second = enhanced_mr(array, study=study, frame_order=[1, 3, 5])
    second.SeriesInstanceUID = first.SeriesInstanceUID
    paths = write([first, second], tmp_path)
    np.testing.assert_array_equal(read_volume(paths).array, array)


def test_legacy_converted_enhanced_mr(tmp_path: Path) -> None:
    array = volume_array(slices=5)
    classic = [pydicom.dcmread(p) for p in write(single_frame_series(array, acq=STIR), tmp_path / "sf")]
    legacy = hd.legacy.LegacyConvertedEnhancedMRImage(classic, generate_uid(), 5, generate_uid(), 1)
    legacy.save_as(tmp_path / "lc.dcm")
    volume = read_volume([tmp_path / "lc.dcm"])
    np.testing.assert_array_equal(volume.array, array)
    assert volume.spacing == pytest.approx((0.6, 0.8, 4.0))


def test_positions_within_rounding_tolerance_are_accepted(tmp_path: Path) -> None:
    offsets = (0.0, 4.003, 7.998, 12.004, 16.0)
    paths = write(single_frame_series(volume_array(slices=5), Grid(offsets=offsets)), tmp_path)
    assert read_volume(paths).spacing[2] == pytest.approx(4.0)


def _series(tmp_path: Path, count: int = 5, **grid: object) -> list[Path]:
    return write(single_frame_series(volume_array(slices=count), Grid(**grid)), tmp_path)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("offsets", "message"),
    [
        ((0.0, 4.0, 4.0, 8.0, 12.0), "duplicate positions"),
        ((0.0, 4.0, 12.0, 16.0, 20.0), "missing positions.*1 slice"),
        ((0.0, 4.0, 8.0, 13.0, 17.0), "uneven slice spacing"),
        ((0.0, 4.0, 8.0, 12.3, 16.0), "uneven slice spacing"),
    ],
)
def test_rejects_bad_slice_positions(tmp_path: Path, offsets: tuple[float, ...], message: str) -> None:
    with pytest.raises(SeriesError, match=message):
        read_volume(_series(tmp_path, offsets=offsets))


def test_rejects_single_slice(tmp_path: Path) -> None:
    with pytest.raises(SeriesError, match="at least 2 slices"):
        read_volume(_series(tmp_path, count=1))


def test_rejects_mixed_orientations(tmp_path: Path) -> None:
    study = Study()
    sagittal = single_frame_series(volume_array(slices=3), study=study)
    axial = single_frame_series(volume_array(slices=2), Grid(orientation=AXIAL), study=study)
    for ds in axial:
        ds.SeriesInstanceUID = sagittal[0].SeriesInstanceUID
    with pytest.raises(SeriesError, match="mixed orientations"):
        read_volume(write(sagittal + axial, tmp_path))


def test_rejects_mixed_sizes_and_pixel_spacings(tmp_path: Path) -> None:
    datasets = single_frame_series(volume_array(slices=3, rows=10, columns=8))
    small = single_frame_series(volume_array(slices=1, rows=10, columns=6), Grid(offsets=(12.0,)))[0]
    small.SeriesInstanceUID = datasets[0].SeriesInstanceUID
    small.FrameOfReferenceUID = datasets[0].FrameOfReferenceUID
    with pytest.raises(SeriesError, match="mixed image sizes"):
        read_volume(write([*datasets, small], tmp_path / "a"))
    datasets[1].PixelSpacing = [0.9, 0.6]
    with pytest.raises(SeriesError, match="mixed pixel spacings"):
        read_volume(write(datasets, tmp_path / "b"))


def test_rejects_sheared_stack(tmp_path: Path) -> None:
    datasets = single_frame_series(volume_array(slices=4))
    for k, ds in enumerate(datasets):
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x, y + 1.5 * k, z]  # gantry-tilt style shift across the plane
    with pytest.raises(SeriesError, match="drift"):
        read_volume(write(datasets, tmp_path))


def test_rejects_files_of_two_series_and_missing_geometry(tmp_path: Path) -> None:
    study = Study()
    one = single_frame_series(volume_array(slices=2), study=study)
    two = single_frame_series(volume_array(slices=2), Grid(offsets=(8.0, 12.0)), study=study)
    with pytest.raises(SeriesError, match="2 different series"):
        read_volume(write(one + two, tmp_path / "a"))
    del one[1].ImagePositionPatient
    with pytest.raises(SeriesError, match=r"Image Position \(Patient\) is missing"):
        read_volume(write(one, tmp_path / "b"))


def test_rejects_non_dicom_and_other_sop_classes(tmp_path: Path) -> None:
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"not dicom at all")
    with pytest.raises(SeriesError, match="not a readable DICOM file"):
        read_volume([junk])
    datasets = single_frame_series(volume_array(slices=2))
    for ds in datasets:
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = UID("1.2.840.10008.5.1.4.1.1.2")
    with pytest.raises(SeriesError, match="CT Image Storage"):
        read_volume(write(datasets, tmp_path / "ct"))
    with pytest.raises(SeriesError, match="no files"):
        read_volume([])
    with pytest.raises(TypeError, match="paths"):
        read_volume(str(junk))


def test_duplicate_frames_in_multi_echo_enhanced_object(tmp_path: Path) -> None:
    array = volume_array(slices=3)
    ds = enhanced_mr(array, acq=replace(T1, description="two echoes"), frame_order=[0, 1, 2, 0, 1, 2])
    ds.save_as(tmp_path / "echoes.dcm", enforce_file_format=True)
    with pytest.raises(SeriesError, match="duplicate positions") as info:
        read_volume([tmp_path / "echoes.dcm"])
    assert isinstance(info.value, StudyError) and isinstance(info.value, ValueError)
    # the count is of positions and frames: it read "4 or more frames share a slice position"
    assert "3 slice position(s) hold more than one frame (up to 2;" in str(info.value)


def test_rejects_truncated_file(tmp_path: Path) -> None:
    paths = write(single_frame_series(volume_array(slices=3)), tmp_path)
    paths[1].write_bytes(paths[1].read_bytes()[:400])
    with pytest.raises(SeriesError, match="no Series Instance UID"):
        read_volume(paths)
    whole = write(single_frame_series(volume_array(slices=3)), tmp_path / "b")
    whole[2].write_bytes(whole[2].read_bytes()[:-50])  # header intact, pixel data cut short
    with pytest.raises(SeriesError, match="cannot decode the pixel data"):
        read_volume(whole)


def test_rejects_colour_images(tmp_path: Path) -> None:
    datasets = single_frame_series(volume_array(slices=2))
    datasets[0].SamplesPerPixel = 3
    with pytest.raises(SeriesError, match="colour"):
        read_volume(write(datasets, tmp_path))


def _monochrome1(datasets: list[pydicom.Dataset], stored: np.ndarray) -> list[pydicom.Dataset]:
    for ds, plane in zip(datasets, stored, strict=True):
        ds.PhotometricInterpretation = "MONOCHROME1"
        ds.PixelData = np.ascontiguousarray(plane.astype(np.uint16)).tobytes()
    return datasets


def test_a_monochrome1_series_reads_as_the_same_tissue_contrast(tmp_path: Path) -> None:
    # MONOCHROME1 shows low values white: the same image stored inverted in the 12 stored bits
    array = volume_array(slices=4)
    datasets = _monochrome1(single_frame_series(array), 4095 - array)
    volume = read_volume(write(datasets, tmp_path))
    assert volume.array.dtype == np.uint16
    np.testing.assert_array_equal(volume.array, array)


def test_a_rescaled_monochrome1_series_is_mirrored_within_its_value_range(tmp_path: Path) -> None:
    array = volume_array(slices=3)
    slopes = [(2.0, -100.0), (2.0, -100.0), (2.0, -100.0)]
    datasets = _monochrome1(single_frame_series(array, slopes=slopes), 4095 - array)
    volume = read_volume(write(datasets, tmp_path))
    # rescaled range -100 .. 8090: a stored 4095 - v (shown dark when v is high) reads bright
    expected = (-100 + 8090) - ((4095 - array) * 2.0 - 100)
    np.testing.assert_allclose(np.asarray(volume.array, dtype=float), expected)


def test_rejects_a_series_mixing_monochrome1_and_monochrome2(tmp_path: Path) -> None:
    datasets = single_frame_series(volume_array(slices=3))
    datasets[1].PhotometricInterpretation = "MONOCHROME1"
    with pytest.raises(SeriesError, match="mixed Photometric Interpretation"):
        read_volume(write(datasets, tmp_path))


@pytest.mark.parametrize(("slope", "intercept"), [(0.0, 0.0), (1.0, "NaN"), ("inf", 0.0)])
def test_rejects_a_rescale_that_is_zero_or_not_finite(tmp_path: Path, slope: object,
                                                      intercept: object) -> None:
    datasets = single_frame_series(volume_array(slices=3))
    datasets[1].RescaleSlope, datasets[1].RescaleIntercept = slope, intercept
    with pytest.raises(SeriesError, match=r"im0001\.dcm: Rescale (Slope|Intercept) must be a finite"):
        read_volume(write(datasets, tmp_path))


def test_a_slice_stored_signed_among_unsigned_ones_is_read_with_them(tmp_path: Path) -> None:
    array = volume_array(slices=4) % 2048  # what 12 signed bits hold too
    datasets = single_frame_series(array)
    datasets[2].PixelRepresentation = 1  # same values, stored as int16
    volume = read_volume(write(datasets, tmp_path))
    assert volume.array.dtype == np.float32
    np.testing.assert_array_equal(volume.array, array.astype(np.float32))
