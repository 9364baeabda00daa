"""The key image read back: an RGB Secondary Capture with the flagged levels in colour and the triage line."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from analysis.volume import Sequence
from node.results import ResultKind
from node.results.key_image import FRACTURE, SUSPICIOUS
from tests.results.conftest import Written, dciodvfy_report, unexpected_warnings


@pytest.fixture(scope="module")
def key_image(written: Written) -> Dataset:
    return dcmread(written.path(ResultKind.KEY_IMAGE))


def test_key_image_is_an_rgb_secondary_capture_with_burned_in_text(
    key_image: Dataset, written: Written
) -> None:
    assert key_image.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7"
    assert key_image.PhotometricInterpretation == "RGB"
    assert key_image.SamplesPerPixel == 3
    assert key_image.BurnedInAnnotation == "YES"
    assert key_image.ConversionType == "WSD"  # drawn by software, not taken from another device
    assert 768 <= max(key_image.Rows, key_image.Columns) <= 1200
    assert key_image.StudyInstanceUID == written.analysed.truth["study_instance_uid"]
    source = written.analysed.study.series[0].headers[0]
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyID",
                    "AccessionNumber", "SpecificCharacterSet"):
        assert key_image.get(keyword) == source.get(keyword), keyword
    t2_uid = written.analysed.inputs.series_uids[Sequence.T2]
    t2 = next(s for s in written.analysed.study.series if s.series_instance_uid == t2_uid)
    (shown,) = key_image.SourceImageSequence
    assert shown.ReferencedSOPInstanceUID in {str(h.SOPInstanceUID) for h in t2.headers}


def test_flagged_levels_are_in_colour_and_the_triage_line_is_burned_in(key_image: Dataset) -> None:
    pixels = key_image.pixel_array
    assert pixels.shape == (key_image.Rows, key_image.Columns, 3)
    # the phantom's L3 is suspicious (red) and its L1 has a benign fracture (yellow)
    for colour in (SUSPICIOUS, FRACTURE):
        assert np.all(pixels == colour, axis=-1).sum() > 200, colour
    # the top band holds only the white triage line on black
    band = pixels[: key_image.Rows // 25]
    assert (band.min(axis=-1) > 200).sum() > 500
    assert (band.max(axis=-1) < 30).mean() > 0.8


def test_key_image_passes_dciodvfy(written: Written) -> None:
    errors, warnings = dciodvfy_report(written.path(ResultKind.KEY_IMAGE))
    assert errors == []
    assert unexpected_warnings(warnings) == []


def test_the_slice_keeps_its_grey_levels(key_image: Dataset) -> None:
    # the slice is windowed to its own intensities, not clipped at 255 (raw MR values
    # over 255 turned every body and the fat flat white)
    pixels = key_image.pixel_array.astype(int)
    rows = key_image.Rows
    image = pixels[rows // 20: rows - rows // 20]
    grey = (image[..., 0] == image[..., 1]) & (image[..., 1] == image[..., 2])
    values = image[..., 0][grey]
    assert (values >= 250).mean() < 0.1
    assert len(np.unique(values)) > 100
