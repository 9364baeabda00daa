"""Every transfer syntax the receiver accepts decodes to the same voxels."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
)

from node.study import read_volume
from tests.study.factory import Grid, enhanced_mr, single_frame_series, volume_array, write

ARRAY = volume_array(slices=4, rows=40, columns=36, seed=7)
GRID = Grid(slice_spacing=3.5)


def _check(paths: list[Path], syntax: str) -> None:
    for path in paths:
        assert pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID == syntax
    volume = read_volume(paths)
    np.testing.assert_array_equal(volume.array, ARRAY)
    assert volume.spacing == pytest.approx((0.6, 0.8, 3.5))


@pytest.mark.parametrize(
    "syntax", [ImplicitVRLittleEndian, ExplicitVRLittleEndian, DeflatedExplicitVRLittleEndian]
)
def test_uncompressed_syntaxes(tmp_path: Path, syntax: str) -> None:
    datasets = single_frame_series(ARRAY, GRID)
    for ds in datasets:
        ds.file_meta.TransferSyntaxUID = UID(syntax)
    _check(write(datasets, tmp_path, shuffle=2), syntax)


@pytest.mark.parametrize("syntax", [RLELossless, JPEG2000Lossless])
def test_pydicom_encoded(tmp_path: Path, syntax: str) -> None:
    datasets = single_frame_series(ARRAY, GRID)
    for ds in datasets:
        ds.compress(syntax, generate_instance_uid=False)
    _check(write(datasets, tmp_path, shuffle=2), syntax)


def test_enhanced_mr_rle_multi_frame(tmp_path: Path) -> None:
    ds = enhanced_mr(ARRAY, GRID, frame_order=[2, 0, 3, 1])
    ds.compress(RLELossless, generate_instance_uid=False)
    _check(write([ds], tmp_path), RLELossless)


@pytest.mark.parametrize(
    ("tool", "options", "syntax"),
    [
        ("dcmcjpeg", ["+e1"], JPEGLosslessSV1),
        ("dcmcjpeg", ["+el", "+sv", "6"], JPEGLossless),
        ("dcmcjpls", ["+el"], JPEGLSLossless),
    ],
)
def test_dcmtk_encoded(tmp_path: Path, tool: str, options: list[str], syntax: str) -> None:
    executable = shutil.which(tool)
    if executable is None:
        pytest.skip(f"DCMTK {tool} not installed")
    sources = write(single_frame_series(ARRAY, GRID), tmp_path / "plain")
    (tmp_path / "enc").mkdir()
    encoded = []
    for source in sources:
        target = tmp_path / "enc" / source.name
        subprocess.run([executable, *options, str(source), str(target)], check=True, capture_output=True)
        encoded.append(target)
    _check(encoded, syntax)
