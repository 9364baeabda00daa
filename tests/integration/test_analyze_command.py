"""`lumbar-sentinel analyze DICOM_DIR --out OUT_DIR` on phantom studies, read back as a user would."""

from __future__ import annotations

import errno
import json
import shutil
import subprocess
import sys
from datetime import datetime, tzinfo
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from pydicom import dcmread

from node.study import group_dicom_folder, read_series
from tests.helpers.dicom import dciodvfy_errors, write_study
from tests.helpers.enhanced import enhanced_study_with_split_t2

CLI = Path(sys.executable).parent / "lumbar-sentinel"
SIGN_FIELDS = {
    "marrow_infiltration",
    "cortical_destruction",
    "soft_tissue_extension",
    "compression_fracture",
    "pathologic_fracture_pattern",
    "suspicious_for_malignancy",
}
NUMBER_FIELDS = {
    "genant_grade",
    "height_loss_pct",
    "ha_mm",
    "hm_mm",
    "hp_mm",
    "lesion_fraction_pct",
    "t1_marrow_disc_ratio",
}
STATES = {"present", "absent", "indeterminate"}
VERSE = {"T11": 18, "T12": 19, "L1": 20, "L2": 21, "L3": 22, "L4": 23, "L5": 24, "S1": 26}


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CLI), *args], capture_output=True, text=True, timeout=600, check=False)


def _blank_copy(phantom: Path, dicom: Path, **values: object) -> Path:
    """The phantom's DICOM copied to ``dicom`` with blank images (no body to find: a quick
    analysis) and ``values`` set on every instance."""
    shutil.copytree(phantom / "dicom", dicom)
    for path in dicom.rglob("*.dcm"):
        ds = dcmread(path)
        ds.PixelData = np.zeros_like(ds.pixel_array).tobytes()
        for keyword, value in values.items():
            setattr(ds, keyword, value)
        ds.save_as(path)
    return dicom


@pytest.fixture(scope="module")
def phantom(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("phantom") / "study"
    made = _cli(
        "phantom", str(out), "--seed", "11", "--lesion", "L3:focal:epidural", "--fracture", "L1:3:malignant"
    )
    assert made.returncode == 0, made.stderr
    return out


def test_analyze_writes_the_contract(phantom: Path, tmp_path: Path) -> None:
    # the folder as a user may hand it over: one STIR instance exported a second time beside it
    dicom = tmp_path / "dicom"
    shutil.copytree(phantom / "dicom", dicom)
    stir = next(p for p in sorted(dicom.iterdir()) if "STIR" in p.name)
    original = sorted(stir.iterdir())[3]
    shutil.copy(original, stir / "zz-exported-again.dcm")
    result = _cli("analyze", str(dicom), "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert "not a diagnosis" in result.stderr
    assert f"skipped {stir / 'zz-exported-again.dcm'}: SOP Instance UID" in result.stderr
    assert f"already read from {original}" in result.stderr

    # the three DICOM result objects beside findings.json, their paths printed
    for name, sop_class in (("sr.dcm", "1.2.840.10008.5.1.4.1.1.88.34"),
                            ("seg.dcm", "1.2.840.10008.5.1.4.1.1.66.4"),
                            ("key_image.dcm", "1.2.840.10008.5.1.4.1.1.7")):
        path = tmp_path / "out" / name
        assert str(path) in result.stderr, name
        ds = dcmread(path)
        assert ds.SOPClassUID == sop_class
        assert ds.StudyInstanceUID == json.loads((phantom / "truth.json").read_text())["study_instance_uid"]
        assert dciodvfy_errors(path) == [], name

    findings = json.loads((tmp_path / "out" / "findings.json").read_text())
    truth = json.loads((phantom / "truth.json").read_text())
    assert findings["study_instance_uid"] == truth["study_instance_uid"]
    assert findings["algorithm_version"]
    series_used = findings["series_used"]
    assert all(series_used[s] for s in ("T1", "T2", "STIR"))
    assert set(findings["study"]) >= {
        "suspicious_for_malignancy",
        "multiple_lesions",
        "canal_compromise",
        "suspicious_level_count",
        "impression",
    }
    assert "not a diagnosis" in findings["study"]["impression"].lower()
    assert findings["levels"], "no level reported"
    for level in findings["levels"]:
        assert level["level"] in VERSE
        assert {level[f] for f in SIGN_FIELDS} <= STATES
        assert set(level) >= NUMBER_FIELDS

    labels_image = sitk.ReadImage(str(tmp_path / "out" / "vertebrae.nii.gz"))
    labels = sitk.GetArrayFromImage(labels_image)
    assert set(np.unique(labels)) - {0} <= set(VERSE.values())
    for level in findings["levels"]:
        assert (labels == VERSE[level["level"]]).any(), level["level"]
    # On the grid of the series it was drawn on (a sagittal series of the study).
    folder = group_dicom_folder(phantom / "dicom").studies[0]
    grids = [read_series(s.paths, headers=s.headers).volume for s in folder.series]
    assert any(
        g.array.shape == labels.shape
        and np.allclose(g.spacing, labels_image.GetSpacing(), atol=1e-3)
        and np.allclose(g.origin, labels_image.GetOrigin(), atol=1e-2)
        for g in grids
    )


def test_analyze_explains_a_study_it_cannot_analyse(tmp_path: Path) -> None:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder = tmp_path / "ct"
    folder.mkdir()
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality = "CT"
    ds.save_as(folder / "ct.dcm", enforce_file_format=True)

    result = _cli("analyze", str(folder), "--out", str(tmp_path / "out"))
    assert result.returncode == 1
    assert "cannot be analysed" in result.stderr and "MR" in result.stderr
    assert not (tmp_path / "out" / "findings.json").exists()

    empty = _cli("analyze", str(tmp_path / "nothing-here"), "--out", str(tmp_path / "out"))
    assert empty.returncode == 2
    assert "not a folder" in empty.stderr

    # a file where the results should go is refused before the analysis, not after it
    (tmp_path / "taken").write_text("")
    for out in (tmp_path / "taken", tmp_path / "taken" / "results"):
        refused = _cli("analyze", str(folder), "--out", str(out))
        assert refused.returncode == 2, refused.stderr
        assert f"cannot write results to {out}" in refused.stderr
        assert "Traceback" not in refused.stderr


def test_analyze_into_an_earlier_result_replaces_it_whole(phantom: Path, tmp_path: Path) -> None:
    # a study with no body to find (blank images) writes no SEG: the earlier run's SEG must not
    # stay beside the new SR as if it were part of it
    dicom = _blank_copy(phantom, tmp_path / "blank")
    out = tmp_path / "out"
    out.mkdir()
    (out / "findings.json").write_text("{}\n")
    (out / "seg.dcm").write_text("an earlier run's SEG\n")
    (out / "notes.txt").write_text("the researcher's own file\n")
    result = _cli("analyze", str(dicom), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert f"replaced the earlier results in {out} (removed seg.dcm" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "findings.json", "key_image.dcm", "notes.txt", "sr.dcm", "vertebrae.nii.gz"]
    assert json.loads((out / "findings.json").read_text())["levels"] == []
    assert "highdicom" not in result.stderr  # its INFO lines are not the researcher's concern
    first_sr = dcmread(out / "sr.dcm")
    again = _cli("analyze", str(dicom), "--out", str(out))
    assert again.returncode == 0, again.stderr
    second_sr = dcmread(out / "sr.dcm")
    assert second_sr.SOPInstanceUID != first_sr.SOPInstanceUID
    # the SR it replaces is its predecessor, as with the node's own re-analyses
    (study,) = second_sr.PredecessorDocumentsSequence
    (series,) = study.ReferencedSeriesSequence
    (item,) = series.ReferencedSOPSequence
    assert (series.SeriesInstanceUID, item.ReferencedSOPInstanceUID) == (
        first_sr.SeriesInstanceUID, first_sr.SOPInstanceUID)


def test_analyze_does_not_replace_another_study_s_results(phantom: Path, tmp_path: Path) -> None:
    # One patient after another into the same --out kept only the last one's results.
    out = tmp_path / "out"
    out.mkdir()
    (out / "findings.json").write_text(json.dumps({"study_instance_uid": "1.2.3.4"}) + "\n")
    (out / "sr.dcm").write_text("study 1.2.3.4's report\n")
    result = _cli("analyze", str(phantom / "dicom"), "--out", str(out))
    assert result.returncode == 2, result.stderr
    assert "holds the results of study 1.2.3.4" in result.stderr and "choose another --out" in result.stderr
    assert (out / "sr.dcm").read_text() == "study 1.2.3.4's report\n"
    assert sorted(p.name for p in out.iterdir()) == ["findings.json", "sr.dcm"]


def test_analyze_refuses_an_output_path_it_could_not_write_before_analysing(phantom: Path,
                                                                           tmp_path: Path) -> None:
    # SimpleITK aborted the whole process on a path that is not UTF-8, after the analysis
    out = tmp_path / "r\udce9sultats"
    result = _cli("analyze", str(phantom / "dicom"), "--out", str(out))
    assert result.returncode == 2, result.stderr
    assert "the path is not valid UTF-8" in result.stderr


def test_analyze_always_shows_a_skipped_file_that_changes_what_is_analysed(phantom: Path,
                                                                           tmp_path: Path) -> None:
    dicom = tmp_path / "dicom"
    shutil.copytree(phantom / "dicom", dicom)
    for index in range(8):
        (dicom / f"notes{index}.txt").write_text("not DICOM\n")
    first = sorted(next(p for p in sorted(dicom.iterdir()) if p.is_dir()).iterdir())[0]
    corrected = dcmread(first)
    corrected.SeriesDescription = "corrected"
    corrected.save_as(dicom / "zz_corrected.dcm")  # after the original in path order
    result = _cli("analyze", str(dicom), "--out", str(tmp_path / "out"), "--study", "9.9.9")
    assert result.returncode == 2
    assert "which has other content" in result.stderr  # not hidden among "... more skipped"
    assert "and 3 more skipped file(s)" in result.stderr
    assert f"(found: {corrected.StudyInstanceUID})" in result.stderr


def test_analyze_of_several_studies_says_an_earlier_single_result_stays_beside_them(tmp_path: Path) -> None:
    write_study(tmp_path / "dicom" / "a", 3)
    write_study(tmp_path / "dicom" / "b", 3)
    out = tmp_path / "out"
    out.mkdir()
    (out / "findings.json").write_text(json.dumps({"study_instance_uid": "1.2.3.4"}) + "\n")
    result = _cli("analyze", str(tmp_path / "dicom"), "--out", str(out))
    assert "holds an earlier run's results of study 1.2.3.4 at its top, left as they are" in result.stderr
    assert (out / "findings.json").is_file()


def test_analyze_of_one_study_says_earlier_per_study_results_stay_beside_it(tmp_path: Path) -> None:
    write_study(tmp_path / "dicom", 3)
    out = tmp_path / "out"
    (out / "1.2.3.4").mkdir(parents=True)
    (out / "1.2.3.4" / "findings.json").write_text(json.dumps({"study_instance_uid": "1.2.3.4"}) + "\n")
    result = _cli("analyze", str(tmp_path / "dicom"), "--out", str(out))
    assert ("holds an earlier run's results of 1 study in folders of their own (1.2.3.4), left as they are"
            in result.stderr), result.stderr
    assert (out / "1.2.3.4" / "findings.json").is_file()


def test_two_runs_in_the_same_second_give_objects_uids_of_their_own(
    phantom: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # copies of one study analysed at once gave three different patients' SRs one SOP Instance UID
    from node.cli import main
    from node.commands import analyze

    class SameSecond(datetime):
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> SameSecond:
            return cls(2026, 3, 4, 10, 20, 30, tzinfo=tz)

    monkeypatch.setattr(analyze, "datetime", SameSecond)
    dicom = _blank_copy(phantom, tmp_path / "blank")
    uids = []
    for run in ("a", "b"):
        assert main(["analyze", str(dicom), "--out", str(tmp_path / run)]) == 0
        uids.append({str(dcmread(p).SOPInstanceUID) for p in (tmp_path / run).glob("*.dcm")})
    assert len(uids[0]) == len(uids[1]) == 2  # SR and key image
    assert not uids[0] & uids[1]


def test_odd_demographics_neither_stop_the_results_nor_reach_the_log(phantom: Path, tmp_path: Path) -> None:
    # a birth date written 1963-01-01 failed every analysis of the study as it wrote the results
    # (the error, quoting the date, was kept in the database), and highdicom's warning about a
    # name without carets printed the name
    dicom = _blank_copy(phantom, tmp_path / "odd", PatientName="SMITH JOHN NOCARET",
                        PatientBirthDate="1963-01-01", StudyTime="12:30")
    out = tmp_path / "out"
    result = _cli("analyze", str(dicom), "--out", str(out))
    assert result.returncode == 0, result.stderr
    said = result.stdout + result.stderr
    assert "SMITH" not in said and "1963" not in said
    for name in ("sr.dcm", "key_image.dcm"):
        ds = dcmread(out / name)
        written = (str(ds.PatientName), ds.PatientBirthDate, ds.StudyTime)
        assert written == ("SMITH JOHN NOCARET", "", ""), name
        assert dciodvfy_errors(out / name) == [], name


@pytest.mark.parametrize(("keyword", "value"), [
    ("PatientName", ["SMITH^JOHN", "SMYTHE^JON"]),  # highdicom: "Invalid type for a person name"
    ("PatientSex", "male"),  # highdicom: "'male' is not a valid PatientSexValues"
])
def test_a_patient_value_highdicom_refuses_is_written_empty(
    phantom: Path, tmp_path: Path, keyword: str, value: object
) -> None:
    # two names where one is allowed, or a sex out of M/F/O, was stored, and then every analysis
    # of the study failed for good writing its results
    dicom = _blank_copy(phantom, tmp_path / "odd", **{keyword: value})
    out = tmp_path / "out"
    result = _cli("analyze", str(dicom), "--out", str(out))
    assert result.returncode == 0, result.stderr
    for name in ("sr.dcm", "key_image.dcm"):
        ds = dcmread(out / name)
        assert (ds[keyword].value, ds.PatientID) == ("", dcmread(next(dicom.rglob("*.dcm"))).PatientID), name
        assert dciodvfy_errors(out / name) == [], name


def test_a_patient_id_is_copied_as_sent_whatever_its_form(phantom: Path, tmp_path: Path) -> None:
    # the PACS files a result with its study by Patient ID: an empty one would file it apart
    dicom = _blank_copy(phantom, tmp_path / "ids", PatientID=["A1234", "B5678"])
    out = tmp_path / "out"
    assert _cli("analyze", str(dicom), "--out", str(out)).returncode == 0
    for name in ("sr.dcm", "key_image.dcm"):
        assert list(dcmread(out / name).PatientID) == ["A1234", "B5678"], name


def test_a_run_that_fails_writing_leaves_the_earlier_results_whole(
    phantom: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a write failing part-way (a full disk) left the new run's findings beside the earlier run's SR
    from node.cli import main
    from node.results import writer

    dicom = _blank_copy(phantom, tmp_path / "blank")
    out = tmp_path / "out"
    assert main(["analyze", str(dicom), "--out", str(out)]) == 0
    before = {path.name: path.read_bytes() for path in out.iterdir()}
    shutil.rmtree(next(folder for folder in dicom.iterdir() if "STIR" in folder.name))  # other findings

    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(writer, "write_result_objects", full_disk)
    assert main(["analyze", str(dicom), "--out", str(out)]) == 3
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before


def test_a_series_of_several_enhanced_mr_objects_keeps_its_findings_and_says_why_no_object(
    tmp_path: Path,
) -> None:
    # a Segmentation references one multi-frame source (highdicom): the writer raised, the run
    # ended with a traceback and wrote nothing, and the node failed every attempt
    dicom = enhanced_study_with_split_t2(tmp_path / "study")
    out = tmp_path / "out"
    result = _cli("analyze", str(dicom), "--out", str(out))
    assert result.returncode == 3, result.stderr
    assert "stored as 2 multi-frame objects" in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(path.name for path in out.iterdir()) == ["findings.json", "vertebrae.nii.gz"]


def test_a_series_in_another_frame_of_reference_is_set_aside_and_said(phantom: Path, tmp_path: Path) -> None:
    # positions of different frames cannot be compared (PS3.3 C.7.4.1): a T1 repositioned 12 mm
    # in a frame of its own was resampled onto the T2 by position, and every level read suspicious
    from pydicom.uid import generate_uid

    dicom = tmp_path / "frames"
    shutil.copytree(phantom / "dicom", dicom)
    frame = generate_uid()
    t1 = next(folder for folder in sorted(dicom.iterdir()) if "T1" in folder.name)
    for path in t1.iterdir():
        ds = dcmread(path)
        ds.FrameOfReferenceUID = frame
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x, y, z + 12.0]
        ds.save_as(path)
    out = tmp_path / "out"
    result = _cli("analyze", str(dicom), "--out", str(out))
    assert result.returncode == 0, result.stderr
    said = ("(T1) set aside: another Frame of Reference than the series analysed, series 2 'SAG T2 TSE', "
            "so its positions cannot be matched to theirs")
    assert f"note: series 1 'SAG T1 TSE' {said}" in result.stderr
    findings = json.loads((out / "findings.json").read_text())
    assert findings["series_used"]["T1"] is None
    assert findings["series_used"]["T2"] and findings["series_used"]["STIR"]
    assert said in findings["study"]["impression"]


def test_a_localizer_inside_the_t2_series_is_left_out_and_the_t2_used(phantom: Path, tmp_path: Path) -> None:
    # one axial planning image stored in the T2 series cost the study its T2, without a word why
    from pydicom.uid import generate_uid

    dicom = tmp_path / "localizer"
    shutil.copytree(phantom / "dicom", dicom)
    t2 = next(folder for folder in sorted(dicom.iterdir()) if "T2" in folder.name)
    slices = sorted(t2.iterdir())
    scout = dcmread(slices[7])
    scout.SOPInstanceUID = scout.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    scout.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    scout.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    scout.ImagePositionPatient = [-144, -144, 0]
    scout.InstanceNumber, scout.RepetitionTime, scout.EchoTime = 0, 5, 2
    scout.save_as(t2 / "0000-localizer.dcm")
    out = tmp_path / "out"
    result = _cli("analyze", str(dicom), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "note: series 2 'SAG T2 TSE': 1 localizer image left out" in result.stderr
    assert "no usable sagittal T2" not in result.stderr
    assert f"T2: series 2 'SAG T2 TSE' (only candidate: series 2 'SAG T2 TSE' ({len(slices)} slices" \
        in result.stderr
    findings = json.loads((out / "findings.json").read_text())
    assert findings["series_used"]["T2"] == str(scout.SeriesInstanceUID)
    # the SEG references the T2's slices, not the planning image
    seg = dcmread(out / "seg.dcm")
    referenced = {str(item.ReferencedSOPInstanceUID) for series in seg.ReferencedSeriesSequence
                  for item in series.ReferencedInstanceSequence}
    assert str(scout.SOPInstanceUID) not in referenced
