"""Identifying values kept out of a failed job's error: what is found, and what is replaced."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from node.privacy import REDACTED, describe, identifying_values, redact, traceback_text


def _stored(tmp_path: Path, **values: object) -> Dataset:
    """A data set written to a file and read back: its values come back raw, as a job reads them."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    path = tmp_path / "x.dcm"
    ds.save_as(path, enforce_file_format=True)
    return dcmread(path)


def test_names_ids_and_dates_are_found_whole_and_in_pieces(tmp_path: Path) -> None:
    ds = _stored(tmp_path, PatientName="SMITH^JOHN^^DR", PatientID="A1234", OtherPatientIDs=["B5678", "C9"],
                 PatientBirthDate="19630102", AccessionNumber="ACC77", PatientSex="M", PatientAge="063Y",
                 ReferringPhysicianName="WELBY^MARCUS")
    assert identifying_values(ds) == {
        "SMITH^JOHN^^DR", "SMITH", "JOHN", "A1234", "B5678\\C9", "B5678", "19630102", "1963-01-02", "ACC77",
        "WELBY^MARCUS", "WELBY", "MARCUS",
    }  # sex, age and pieces under three characters name nobody


@pytest.mark.filterwarnings("ignore:Invalid value for VR DA")
def test_a_value_pydicom_cannot_convert_is_found_as_stored(tmp_path: Path) -> None:
    # the value a library quotes in its error is the one it could not read
    ds = _stored(tmp_path, PatientBirthDate="1963-01-02", PatientName="SMITH\\SMYTHE")
    assert {"1963-01-02", "SMITH", "SMYTHE"} <= identifying_values(ds)


def test_a_data_set_without_them_gives_nothing() -> None:
    assert identifying_values(Dataset()) == frozenset()


def test_redaction_ignores_case_and_keeps_the_rest() -> None:
    said = redact("Unable to convert 'Smith^John' (born 1963-01-02) in study 1.2.3",
                  {"SMITH^JOHN", "1963-01-02"})
    assert said == f"Unable to convert '{REDACTED}' (born {REDACTED}) in study 1.2.3"
    assert redact("nothing to hide", set()) == "nothing to hide"
    assert redact("job 12 of AB", {"AB", "12"}) == "job 12 of AB"  # too short to name anyone


def test_an_exception_is_described_and_traced_without_them() -> None:
    try:
        try:
            raise KeyError("SMITH")
        except KeyError as cause:
            raise ValueError("'SMITH^JOHN' is not a valid name") from cause
    except ValueError as exc:
        private = {"SMITH^JOHN", "SMITH", "JOHN"}
        assert describe(exc, private) == f"ValueError: '{REDACTED}' is not a valid name"
        trace = traceback_text(exc, private)
    assert "ValueError" in trace and "KeyError" in trace  # the cause is kept
    assert "SMITH" not in trace.upper() and "JOHN" not in trace.upper()


_WORD = st.text(string.ascii_letters + string.digits, min_size=3, max_size=12)


@given(st.lists(_WORD, max_size=5), st.lists(st.one_of(_WORD, st.text(max_size=8)), max_size=10))
def test_no_value_survives_redaction(values: list[str], filler: list[str]) -> None:
    text = " ".join(filler[:3] + values + filler[3:])
    said = redact(text, values).lower()
    assert all(v.lower() not in said or v.lower() in REDACTED for v in values)
