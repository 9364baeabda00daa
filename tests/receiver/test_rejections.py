"""What the node refuses: malformed data sets, other SOP classes, oversize instances, a full disk.

Every refusal has a failure status, and leaves no file and no row behind.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import (
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    EnhancedMRImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    generate_uid,
)

from node.receiver.negotiation import STORAGE_SOP_CLASSES, VERIFICATION
from tests.helpers.dicom import StudyUIDs, mr_instance, write_raw_file
from tests.helpers.node import NodeProcess, running_node, stored_files
from tests.helpers.rows import read_rows
from tests.helpers.senders import associate, association, raw_file_sending, store, storescu

pytestmark = pytest.mark.filterwarnings("ignore:Invalid value for VR UI", "ignore:The value length")


@contextmanager
def _node(tmp_path_factory: pytest.TempPathFactory, name: str,
          sections: dict[str, dict[str, object]] | None = None) -> Iterator[NodeProcess]:
    folder = tmp_path_factory.mktemp(name)
    with running_node(folder, f"sqlite:///{folder / 'node.db'}", sections) as node:
        yield node


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    with _node(tmp_path_factory, "rejections") as node:
        yield node


def _assert_nothing_stored(node: NodeProcess) -> None:
    assert stored_files(node.storage_root) == []
    with node.engine() as engine:
        rows = read_rows(engine)
    assert (rows.studies, rows.series, rows.instances) == ([], [], [])


def _instance(**changes: object) -> Dataset:
    uids = StudyUIDs.new()
    dataset = mr_instance(uids.study, uids.series[0], 1)
    for keyword, value in changes.items():
        if value is None:
            delattr(dataset, keyword)
        else:
            setattr(dataset, keyword, value)
    return dataset


def _send_raw(node: NodeProcess, path: Path) -> Dataset:
    with raw_file_sending():
        [status] = store(node, [path])
    return status


@pytest.mark.parametrize(
    ("changes", "status", "comment"),
    [
        ({"StudyInstanceUID": None}, 0xC001, "StudyInstanceUID is missing"),
        ({"SeriesInstanceUID": None}, 0xC001, "SeriesInstanceUID is missing"),
        ({"StudyInstanceUID": "../../../etc"}, 0xC002, "StudyInstanceUID is not a valid UID"),
        ({"SeriesInstanceUID": "1.2.3/4"}, 0xC002, "SeriesInstanceUID is not a valid UID"),
        ({"StudyInstanceUID": "1." + "2" * 70}, 0xC002, "StudyInstanceUID is not a valid UID"),
        ({"Modality": "CT"}, 0xA900, "Modality is 'CT', not MR"),
        ({"Modality": None}, 0xA900, "Modality is '', not MR"),
        ({"SOPClassUID": CTImageStorage}, 0xA900, "is not the negotiated"),
    ],
)
def test_a_malformed_data_set_is_refused(node: NodeProcess, tmp_path: Path, changes: dict[str, object],
                                         status: int, comment: str) -> None:
    dataset = _instance(**changes)
    path = write_raw_file(tmp_path / "bad.dcm", dataset, sop_instance_uid=dataset.SOPInstanceUID)
    response = _send_raw(node, path)
    assert response.Status == status
    assert comment in response.ErrorComment
    assert f"refused with 0x{status:04X}" in node.log_text()
    _assert_nothing_stored(node)


def test_error_comments_are_whole_and_the_log_names_the_uids(node: NodeProcess, tmp_path: Path) -> None:
    # an Error Comment is an LO (64 characters): cut there, a UID in it read as another UID
    dataset = _instance(SOPClassUID=CTImageStorage)
    path = write_raw_file(tmp_path / "bad.dcm", dataset, sop_instance_uid=dataset.SOPInstanceUID)
    response = _send_raw(node, path)
    assert (response.Status, response.ErrorComment) == (0xA900, "SOPClassUID is not the negotiated SOP class")
    assert f"SOPClassUID {CTImageStorage} is not the negotiated {MRImageStorage}" in node.log_text()
    _assert_nothing_stored(node)


def test_an_affected_sop_class_other_than_the_context_is_refused(
        node: NodeProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    # PS3.7: the command's Affected SOP Class UID is the abstract syntax of its presentation context
    dataset = _instance(SOPClassUID=EnhancedMRImageStorage)
    with association(node) as assoc:
        [mr_context] = [cx for cx in assoc.accepted_contexts if cx.abstract_syntax == MRImageStorage]
        # pynetdicom picks the context of the data set's SOP class; a faulty sender used another
        monkeypatch.setattr(assoc, "_get_valid_context", lambda *args, **kwargs: mr_context)
        response = assoc.send_c_store(dataset)
    assert response.Status == 0x0122
    assert response.ErrorComment == "Affected SOP Class UID is not the context's"
    assert (f"Affected SOP Class UID {EnhancedMRImageStorage} is not the context's {MRImageStorage}"
            in node.log_text())
    _assert_nothing_stored(node)


def test_a_missing_sop_instance_uid_is_refused(node: NodeProcess, tmp_path: Path) -> None:
    dataset = _instance(SOPInstanceUID=None)
    response = _send_raw(node, write_raw_file(tmp_path / "bad.dcm", dataset))
    assert response.Status == 0xC001
    assert "SOPInstanceUID is missing" in response.ErrorComment
    _assert_nothing_stored(node)


def test_a_sop_instance_uid_unlike_the_command_is_refused(node: NodeProcess, tmp_path: Path) -> None:
    dataset = _instance()
    response = _send_raw(node, write_raw_file(tmp_path / "bad.dcm", dataset,
                                              sop_instance_uid=generate_uid()))
    assert response.Status == 0xC003
    _assert_nothing_stored(node)


@pytest.mark.parametrize("body", [
    b"\xff\xfe\xfd\xfc this is a JPEG, not a data set" * 64,
    random.Random(17).randbytes(4096),
    random.Random(18).randbytes(100),
], ids=["text", "random-4k", "random-100"])
def test_non_dicom_bytes_are_refused_as_not_readable(node: NodeProcess, tmp_path: Path, body: bytes) -> None:
    # a valid file meta header (from the sender's C-STORE) followed by bytes that are no data set
    response = _send_raw(node, write_raw_file(tmp_path / "bad.dcm", body))
    assert response.Status == 0xC000
    assert "not a readable DICOM data set" in response.ErrorComment
    log = node.log_text()
    assert "refused with 0xC000" in log
    assert "pydicom" not in log and "Expected explicit VR" not in log  # pydicom's warnings stay out
    _assert_nothing_stored(node)


def test_native_pixel_data_shorter_than_the_image_is_refused(database_url: str, tmp_path: Path) -> None:
    uids = StudyUIDs.new()
    short = mr_instance(uids.study, uids.series[0], 1, size=256)  # 256 x 256 x 16 bits: 131072 bytes
    short.PixelData = short.PixelData[:-50_000]
    path = tmp_path / "short.dcm"
    short.save_as(path, enforce_file_format=True)
    intact = mr_instance(uids.study, uids.series[0], 2, size=256)
    with running_node(tmp_path / "node", database_url) as node:
        result = storescu(node, [path], "-v")
        assert result.returncode != 0
        assert "Error: DataSetDoesNotMatchSOPClass" in result.stderr
        assert "refused with 0xA900: Pixel Data is 81072 bytes, expected 131072" in node.log_text()
        _assert_nothing_stored(node)
        odd = mr_instance(uids.study, uids.series[0], 3, size=5)  # 5 x 5 x 8 bits: 25 bytes, padded to 26
        odd.BitsAllocated, odd.BitsStored, odd.HighBit = 8, 8, 7
        odd.PixelData = bytes(26)
        odd_path = write_raw_file(tmp_path / "odd.dcm", odd, sop_instance_uid=odd.SOPInstanceUID)
        # the same image at its full length, and an odd length with its padding byte, are stored
        assert [s.Status for s in store(node, [intact])] == [0x0000]
        assert _send_raw(node, odd_path).Status == 0x0000


def test_other_sop_classes_are_refused_at_negotiation(node: NodeProcess) -> None:
    assoc = associate(node, abstract_syntaxes=(VERIFICATION, CTImageStorage),
                      transfer_syntaxes=(ExplicitVRLittleEndian,))
    try:
        accepted = {cx.abstract_syntax for cx in assoc.accepted_contexts}
        rejected = {cx.abstract_syntax: cx.result for cx in assoc.rejected_contexts}
        assert accepted == {VERIFICATION}
        assert rejected == {CTImageStorage: 0x03}  # abstract syntax not supported
    finally:
        assoc.release()
    _assert_nothing_stored(node)


def test_a_too_large_instance_is_refused_out_of_resources(tmp_path_factory: pytest.TempPathFactory) -> None:
    with _node(tmp_path_factory, "oversize", {"dicom": {"max_instance_bytes": 4096}}) as node:
        uids = StudyUIDs.new()
        big = mr_instance(uids.study, uids.series[0], 1, size=64)
        small = mr_instance(uids.study, uids.series[0], 2)
        first, second = store(node, [big, small])
        assert first.Status == 0xA700
        assert first.ErrorComment == "instance exceeds the maximum of 4096 bytes"
        assert second.Status == 0x0000
        with node.engine() as engine:
            rows = read_rows(engine)
        assert [i.sop_instance_uid for i in rows.instances] == [small.SOPInstanceUID]
        assert [p.name for p in stored_files(node.storage_root)] == [f"{small.SOPInstanceUID}.dcm"]


def test_the_disk_watermark_refuses_out_of_resources(tmp_path_factory: pytest.TempPathFactory) -> None:
    with _node(tmp_path_factory, "watermark", {"storage": {"min_free_bytes": 10**18}}) as node:
        uids = StudyUIDs.new()
        [response] = store(node, [mr_instance(uids.study, uids.series[0], 1)])
        assert response.Status == 0xA700
        assert "watermark" in response.ErrorComment
        assert "refused with 0xA700" in node.log_text()
        _assert_nothing_stored(node)


def test_a_deflated_instance_is_limited_by_its_inflated_size(
        tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    """A few hundred deflated bytes can inflate to gigabytes, all in memory: the limit holds inflated."""
    with _node(tmp_path_factory, "deflated", {"dicom": {"max_instance_bytes": 65536}}) as node:
        uids = StudyUIDs.new()
        zeros = mr_instance(uids.study, uids.series[0], 1, size=256)
        zeros.PixelData = bytes(len(zeros.PixelData))  # 128 KiB inflated
        small = mr_instance(uids.study, uids.series[0], 2)
        paths = []
        for dataset in (zeros, small):
            path = tmp_path / f"{dataset.InstanceNumber}.dcm"
            dataset.save_as(path, implicit_vr=False, little_endian=True, enforce_file_format=True)
            deflated = dcmread(path)
            deflated.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
            deflated.save_as(path, enforce_file_format=True)
            paths.append(path)
        assert paths[0].stat().st_size < 65536
        with raw_file_sending():
            first, second = store(node, paths, abstract_syntaxes=STORAGE_SOP_CLASSES,
                                  transfer_syntaxes=(DeflatedExplicitVRLittleEndian,))
        assert first.Status == 0xA700
        assert first.ErrorComment == "deflated data set inflates past the maximum of 65536 bytes"
        assert second.Status == 0x0000
        with node.engine() as engine:
            rows = read_rows(engine)
        assert [i.sop_instance_uid for i in rows.instances] == [small.SOPInstanceUID]


def test_a_data_set_in_another_encoding_than_negotiated_is_refused(node: NodeProcess, tmp_path: Path) -> None:
    # Implicit VR bytes on an Explicit VR context were read (pydicom guesses), answered success
    # and stored under the negotiated syntax's file meta: a file DCMTK could not read
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    uids = StudyUIDs.new()
    instance = mr_instance(uids.study, uids.series[0], 1)
    implicit = DicomBytesIO()
    implicit.is_little_endian, implicit.is_implicit_VR = True, True
    write_dataset(implicit, instance)
    path = write_raw_file(tmp_path / "implicit.dcm", implicit.getvalue(),
                          sop_instance_uid=str(instance.SOPInstanceUID))
    response = _send_raw(node, path)
    assert response.Status == 0xC000
    assert response.ErrorComment.startswith("data set encoded implicit VR, not in the negotiated")
    _assert_nothing_stored(node)


def test_an_mr_image_without_pixel_data_is_refused(node: NodeProcess) -> None:
    # acknowledged before, and its study then skipped without a word
    uids = StudyUIDs.new()
    instance = mr_instance(uids.study, uids.series[0], 1)
    del instance.PixelData
    [response] = store(node, [instance])
    assert (response.Status, response.ErrorComment) == (0xA900, "Pixel Data is missing")
    _assert_nothing_stored(node)
