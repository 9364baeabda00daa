"""docs/conformance.md is kept true by the objects the node writes and the contexts it negotiates."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from node.receiver.negotiation import STORAGE_SOP_CLASSES, TRANSFER_SYNTAXES, VERIFICATION
from tests.results.conftest import Written

DOC = Path(__file__).resolve().parents[2] / "docs" / "conformance.md"


@pytest.fixture(scope="module")
def doc() -> str:
    return DOC.read_text(encoding="utf-8")


def _documented_codes(doc: str) -> set[tuple[str, str]]:
    """(code, scheme) of every row of the code tables: | `code` | scheme | meaning | ..."""
    return set(re.findall(r"^\|\s*`([^`]+)`\s*\|\s*([A-Za-z0-9_.-]+)\s*\|", doc, flags=re.MULTILINE))


def _codes_in(ds: Dataset) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for elem in ds:
        if elem.VR != "SQ":
            continue
        for item in elem.value:
            if "CodeValue" in item and "CodingSchemeDesignator" in item:
                found.add((str(item.CodeValue), str(item.CodingSchemeDesignator)))
            found |= _codes_in(item)
    return found


def test_every_code_in_the_result_objects_is_documented(written: Written, doc: str) -> None:
    documented = _documented_codes(doc)
    used: set[tuple[str, str]] = set()
    for obj in written.objects:
        used |= _codes_in(dcmread(obj.path))
    assert ("SUSPMAL", "99LSENT") in used and ("52101004", "SCT") in used
    assert sorted(used - documented) == []


def test_every_private_code_and_level_site_the_writer_knows_is_documented(doc: str) -> None:
    from node.results import codes

    documented = _documented_codes(doc)
    for code in (*codes.PRIVATE_CODES, *codes.LEVEL_SITES.values(), *codes.STATE_CODES.values()):
        assert (code.value, code.scheme_designator) in documented, code


def test_sop_classes_and_transfer_syntaxes_are_documented(written: Written, doc: str) -> None:
    accepted, sent = doc.split("### Transfer syntaxes of the result objects")
    for uid in (VERIFICATION, *STORAGE_SOP_CLASSES, *TRANSFER_SYNTAXES):
        assert f"`{uid}`" in accepted, uid
    for obj in written.objects:
        ds = dcmread(obj.path)
        assert f"`{ds.SOPClassUID}`" in doc, obj.kind
        assert f"`{ds.file_meta.TransferSyntaxUID}`" in sent, obj.kind
