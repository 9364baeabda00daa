"""A real two-contrast study (VB1_02 T1, VB1_03 STIR) wrapped as DICOM: classified, chosen, read back."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from analysis.volume import Plane, Sequence
from node.study import group_dicom_folder, read_series, select_series
from tests.study.factory import STIR, T1, Grid, Study, single_frame_series, write

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
DATA = SHARED / "data" / "real-lumbar-mri"
EVERY = 3  # clinical sagittal series have 3-4 mm slices; the source grid is 1 mm


def _nifti(name: str) -> tuple[np.ndarray, tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    sitk = pytest.importorskip("SimpleITK")
    path = DATA / f"{name}_image.nii.gz"
    if not path.is_file():
        pytest.skip(f"shared test data not found: {path}")
    image = sitk.ReadImage(str(path))
    return sitk.GetArrayFromImage(image), image.GetSpacing(), image.GetOrigin(), image.GetDirection()


def test_real_t1_and_stir_are_classified_chosen_and_read(tmp_path: Path) -> None:
    t1_array, spacing, origin, direction = _nifti("VB1_02")
    stir_array, *_ = _nifti("VB1_03")
    # The README's geometry: Image Orientation (Patient) 0\1\0\0\0\-1, slices toward the patient's right.
    assert direction == pytest.approx((0, 0, -1, 1, 0, 0, 0, -1, 0))
    kept = range(0, t1_array.shape[0], EVERY)
    grid = Grid(
        orientation=(0.0, 1.0, 0.0, 0.0, 0.0, -1.0),
        origin=tuple(origin),  # type: ignore[arg-type]
        pixel_spacing=(spacing[1], spacing[0]),
        slice_thickness=EVERY * spacing[2],
        offsets=tuple(k * spacing[2] for k in kept),
    )
    study = Study()
    # Descriptions that say nothing, or the wrong thing: the parameters must decide.
    t1 = replace(T1, tr=560.0, te=9.5, description="")
    stir = replace(STIR, tr=3800.0, te=42.0, ti=150.0, description="SAG T2")
    for number, array, acq in ((3, t1_array, t1), (4, stir_array, stir)):
        datasets = single_frame_series(array[kept], grid, acq, study=study, number=number)
        write(datasets, tmp_path / f"s{number}", shuffle=number)

    folder = group_dicom_folder(tmp_path)
    assert len(folder.studies) == 1 and not folder.skipped
    files = {s.headers[0].SeriesNumber: s for s in folder.studies[0].series}
    selection = select_series([s.headers for s in files.values()])
    assert selection.analysable
    chosen = {c.sequence: c.series.series_number for c in selection.choices}
    assert chosen == {Sequence.T1: 3, Sequence.STIR: 4}
    for summary in selection.series:
        assert summary.classification is not None
        assert summary.classification.plane is Plane.SAGITTAL
        assert summary.slices == len(kept)
    assert any("no usable sagittal T2" in note for note in selection.notes)

    for number, source in ((3, t1_array), (4, stir_array)):
        series = read_series(files[number].paths, headers=files[number].headers)
        volume = series.volume
        np.testing.assert_array_equal(volume.array, source[kept])
        assert volume.spacing == pytest.approx((spacing[0], spacing[1], EVERY * spacing[2]))
        assert volume.origin == pytest.approx(origin)
        assert volume.direction == pytest.approx(direction)
