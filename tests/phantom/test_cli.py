"""`lumbar-sentinel phantom`: a study folder with DICOM, truth.json and labels.nii.gz."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from pydicom import dcmread

from analysis.volume import LEVEL_LABELS, Sequence
from phantom.acquisition import from_description
from phantom.cli import main, parse_fracture, parse_lesion
from phantom.implants import Extension, FracturePattern, FractureShape, ImplantSpec, LesionSpec
from phantom.wrap import load_volume, wrap_volume
from tests.conftest import SHARED
from tests.phantom.conftest import dciodvfy_errors

REAL = SHARED / "data" / "real-lumbar-mri"
needs_real_data = pytest.mark.skipif(not REAL.is_dir(), reason=f"shared test data not found at {REAL}")
SMALL = ["--slices", "9", "--thickness", "4", "--matrix", "192", "--pixel", "1.5"]


def test_options_parse() -> None:
    les = parse_lesion("L1:focal:epidural:pedicles")
    assert (les.label, les.extension, les.pedicles) == (20, Extension.EPIDURAL, True)
    fx = parse_fracture("L4:3:malignant:crush")
    assert (fx.label, fx.grade, fx.pattern, fx.shape) == (
        23,
        3,
        FracturePattern.MALIGNANT,
        FractureShape.CRUSH,
    )
    assert parse_fracture("102:1:biconcave:fluid").label == 102
    for bad in ("L9:focal", "L3", "L3:round"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_lesion(bad)
    with pytest.raises(argparse.ArgumentTypeError):
        parse_fracture("L1:5")


def test_phantom_command_writes_study_truth_and_labels(tmp_path: Path) -> None:
    out = tmp_path / "study"
    code = main(
        [
            str(out),
            *SMALL,
            "--seed",
            "4",
            "--lesion",
            "L3:focal",
            "--fracture",
            "L1:2:benign",
            "--lesion",
            "L5:diffuse:paravertebral",
            "--enhanced",
            "--compression",
            "rle",
        ]
    )
    assert code == 0
    truth = json.loads((out / "truth.json").read_text())
    levels = {lv["level"]: lv for lv in truth["levels"]}
    assert levels["L3"]["marrow_infiltration"] == "present"
    assert levels["L1"]["genant_grade"] == 2 and levels["L1"]["suspicious_for_malignancy"] == "absent"
    assert levels["L5"]["soft_tissue_extension"] == "present"
    assert truth["study"]["suspicious_level_count"] == 2
    assert truth["study"]["multiple_lesions"] == "present"
    assert [s["sequence"] for s in truth["series"]] == ["T1", "T2", "STIR"]
    labels = sitk.ReadImage(str(out / "labels.nii.gz"))
    t1 = dcmread(next((out / "dicom").glob("01_*/*.dcm")))
    assert labels.GetSize() == (t1.Columns, t1.Rows, int(t1.NumberOfFrames))
    first = t1.PerFrameFunctionalGroupsSequence[0].PlanePositionSequence[0].ImagePositionPatient
    assert labels.GetOrigin() == pytest.approx([float(v) for v in first], abs=1e-3)
    arr = sitk.GetArrayFromImage(labels)
    assert LEVEL_LABELS["S1"] in arr and LEVEL_LABELS["L3"] in arr
    lesions = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "lesions.nii.gz")))
    assert set(np.unique(lesions)) == {0, 1, 2}
    assert np.all(arr[lesions == 1] == LEVEL_LABELS["L3"])


@needs_real_data
def test_from_volume_wraps_real_anatomy(tmp_path: Path) -> None:
    out = tmp_path / "real"
    code = main(
        [
            str(out),
            "--from-volume",
            str(REAL / "VB2_02_image.nii.gz"),
            "--labels",
            str(REAL / "VB2_02_labels.nii.gz"),
            "--lesion",
            "L3:focal",
            "--seed",
            "1",
        ]
    )
    assert code == 0
    files = sorted((out / "dicom").glob("*/*.dcm"))
    source = sitk.ReadImage(str(REAL / "VB2_02_image.nii.gz"))
    assert len(files) == len(range(0, source.GetSize()[2], 3))
    ds = dcmread(files[len(files) // 2])
    assert dciodvfy_errors(files[len(files) // 2]) == []
    assert float(ds.SliceThickness) == 3.0
    assert float(ds.RepetitionTime) == 5240.0 and float(ds.EchoTime) == 101.0  # from manifest.json
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "labels.nii.gz")))
    assert labels.shape == (len(files), ds.Rows, ds.Columns)
    truth = json.loads((out / "truth.json").read_text())
    assert next(lv for lv in truth["levels"] if lv["level"] == "L3")["marrow_infiltration"] == "present"


@needs_real_data
def test_wrap_volume_pure_function_keeps_untouched_pixels() -> None:
    source = load_volume(REAL / "VB1_03_image.nii.gz", REAL / "VB1_03_labels.nii.gz")
    assert source.sequence == Sequence.STIR
    spec = ImplantSpec(lesions=(LesionSpec(103),))
    study = wrap_volume(source.image, source.labels, source.sequence, spec, np.random.default_rng(0))
    [series] = study.series
    original = np.asarray(source.image.array)[::3]
    lesion_free = study.labels.array != 103
    assert np.array_equal(series.pixels[lesion_free], original[lesion_free])
    body = study.labels.array == 103
    assert series.pixels[body].mean() > original[body].mean()
    assert study.labels.spacing == (1.0, 1.0, 3.0)
    assert study.truth["levels"][3]["level"] == "103"


@pytest.mark.parametrize(
    ("text", "expected", "scanning"),
    [
        ("STIR (TIRM)", Sequence.STIR, ("SE", "IR")),
        ("T1w FSE", Sequence.T1, ("SE",)),
        ("T2w TSE (TR 5240 ms, TE 101 ms, 1.5 T)", Sequence.T2, ("SE",)),
        ("water-fat GRE source image, T2-like contrast (3 T)", Sequence.T2, ("GR",)),
    ],
)
def test_manifest_sequence_names_map_to_acquisitions(
    text: str, expected: Sequence, scanning: tuple[str, ...]
) -> None:
    seq, acq = from_description(text)
    assert seq == expected and acq.scanning_sequence == scanning


@needs_real_data
def test_gradient_echo_wrap_as_enhanced_mr_is_valid(tmp_path: Path) -> None:
    code = main(
        [
            str(tmp_path),
            "--from-volume",
            str(REAL / "VB3_05_image.nii.gz"),
            "--labels",
            str(REAL / "VB3_05_labels.nii.gz"),
            "--enhanced",
            "--compression",
            "j2k",
        ]
    )
    assert code == 0
    [path] = (tmp_path / "dicom").glob("*/enhanced.dcm")
    assert dciodvfy_errors(path) == []
    ds = dcmread(path)
    assert ds.EchoPulseSequence == "GRADIENT"
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "labels.nii.gz")))
    assert labels.shape == ds.pixel_array.shape


def _uids(folder: Path) -> set[str]:
    uids: set[str] = set()
    for path in (folder / "dicom").rglob("*.dcm"):
        ds = dcmread(path, stop_before_pixels=True)
        uids |= {ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID}
    return uids


def test_uids_follow_the_content_and_the_same_command_repeats_them(tmp_path: Path) -> None:
    cli = Path(sys.executable).parent / "lumbar-sentinel"

    def phantom(name: str, *options: str) -> Path:
        subprocess.run([str(cli), "phantom", str(tmp_path / name), *SMALL, *options],
                       check=True, capture_output=True, timeout=300)
        return tmp_path / name

    lesion, plain, again = phantom("a", "--lesion", "L3:focal"), phantom("b"), phantom("c")
    assert _uids(plain) == _uids(again)  # same command, same UIDs
    assert not _uids(lesion) & _uids(plain)  # same default seed, other content: no UID shared
    truth = json.loads((lesion / "truth.json").read_text())
    assert truth["seed"] == 0
    assert truth["study_instance_uid"] != json.loads((plain / "truth.json").read_text())["study_instance_uid"]
