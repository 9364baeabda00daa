"""Result objects and their delivery (issue 18) as the end-to-end tests see them.

The node's result objects (``node.results.writer``) and their delivery to the
destinations in ``[[delivery.destinations]]`` (``node.delivery``) arrive on
their own branch. The end-to-end tests check them as soon as they are in the
tree, and say why they skip until then.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

from node.settings import Settings

SR_CLASS = UID("1.2.840.10008.5.1.4.1.1.88.34")  # Comprehensive 3D SR
SEG_CLASS = UID("1.2.840.10008.5.1.4.1.1.66.4")  # Segmentation
SC_CLASS = UID("1.2.840.10008.5.1.4.1.1.7")  # Secondary Capture
# The key image is Secondary Capture: Orthanc and most PACS list its series as OT or SC.
KEY_IMAGE_MODALITIES = frozenset({"OT", "SC"})


def results_missing() -> str | None:
    """Why this tree writes no result objects, or None when it does."""
    try:
        importlib.import_module("node.results.writer")
    except ImportError as exc:
        return f"no result objects in this tree yet (node.results.writer: {exc}; issue 18)"
    return None


def delivery_missing() -> str | None:
    """Why this tree cannot deliver result objects to a destination, or None when it can."""
    missing = results_missing()
    if missing is not None:
        return missing
    try:
        importlib.import_module("node.delivery")
    except ImportError as exc:
        return f"no result delivery in this tree yet (node.delivery: {exc}; issue 18)"
    if "delivery" not in Settings.model_fields:
        return "the settings model has no [delivery] section yet (issue 18)"
    return None


def destination(name: str, ae_title: str, port: int, host: str = "127.0.0.1") -> dict[str, object]:
    """One ``[[delivery.destinations]]`` table, as ``config/node.toml`` documents it."""
    return {"name": name, "ae_title": ae_title, "host": host, "port": port}


@dataclass(frozen=True)
class ResultFile:
    path: Path
    sop_class_uid: str
    sop_instance_uid: str
    series_instance_uid: str

    @property
    def kind(self) -> str:
        """``sr``, ``seg``, ``key_image`` or ``other`` (by SOP class)."""
        return {SR_CLASS: "sr", SEG_CLASS: "seg", SC_CLASS: "key_image"}.get(UID(self.sop_class_uid), "other")


def result_files(folder: Path) -> list[ResultFile]:
    """The DICOM objects under ``folder`` (recursive), by path."""
    found: list[ResultFile] = []
    for path in sorted(folder.rglob("*")) if folder.is_dir() else []:
        if not path.is_file():
            continue
        try:
            header = dcmread(path, stop_before_pixels=True)
        except (InvalidDicomError, OSError):
            continue
        found.append(ResultFile(path, str(header.SOPClassUID), str(header.SOPInstanceUID),
                                str(header.SeriesInstanceUID)))
    return found
