"""What `lumbar-sentinel demo` prints once the study is analysed: the findings and the result files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.errors import InvalidDicomError
from rich import box
from rich.console import Console
from rich.table import Table

# (findings key, column header) of the per-level signs, in the results contract's order.
SIGN_COLUMNS = (
    ("suspicious_for_malignancy", "Suspicious"),
    ("marrow_infiltration", "Marrow"),
    ("cortical_destruction", "Cortex"),
    ("soft_tissue_extension", "Soft-tissue"),
    ("compression_fracture", "Fracture"),
    ("pathologic_fracture_pattern", "Pathologic"),
)
SIGN_TEXT = {"present": "[bold red]present[/]", "absent": "-", "indeterminate": "?"}
SR_PREFIX = "1.2.840.10008.5.1.4.1.1.88."
SEG_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
SC_PREFIX = "1.2.840.10008.5.1.4.1.1.7"
KEY_IMAGE_PNG = "key-image.png"
KIND_ORDER = ("sr", "seg", "key_image")


def _number(value: Any, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def findings_table(findings: dict[str, Any]) -> Table:
    """One row per vertebral level: its signs, Genant grade, height loss and lesion fraction."""
    table = Table(title="Findings per level", box=box.SIMPLE_HEAD, title_justify="left")
    table.add_column("Level", style="bold")
    for _, header in SIGN_COLUMNS:
        table.add_column(header)
    table.add_column("Genant", justify="right")
    table.add_column("Height-loss-%", justify="right")
    table.add_column("Lesion-%", justify="right")
    for level in findings.get("levels", []):
        table.add_row(
            level["level"],
            *(SIGN_TEXT.get(str(level.get(key)), str(level.get(key))) for key, _ in SIGN_COLUMNS),
            _number(level.get("genant_grade")),
            _number(level.get("height_loss_pct")),
            _number(level.get("lesion_fraction_pct")),
        )
    return table


def print_findings(console: Console, findings: dict[str, Any]) -> None:
    console.print()
    console.print(findings_table(findings))
    console.print("  - absent   ? indeterminate (could not be assessed; the impression says why)")
    study = findings.get("study", {})
    console.print(f"\n[bold]Study:[/] suspicious for malignancy: {study.get('suspicious_for_malignancy')}; "
                  f"suspicious levels: {study.get('suspicious_level_count')}; "
                  f"multiple lesions: {study.get('multiple_lesions')}; "
                  f"canal compromise: {study.get('canal_compromise')}")
    if study.get("impression"):
        console.print(f"[bold]Impression:[/] {study['impression']}")
    console.print("Triage aid: flags suspicious features for a radiologist; not a diagnosis.")


@dataclass(frozen=True)
class ResultFile:
    kind: str  # sr | seg | key_image
    path: Path


def find_result_files(folder: Path) -> list[ResultFile]:
    """The SR, SEG and key image (Secondary Capture) DICOM files under ``folder``."""
    found: list[ResultFile] = []
    for path in sorted(folder.rglob("*")) if folder.is_dir() else []:
        if not path.is_file() or path.suffix in {".json", ".gz", ".png"}:
            continue
        try:
            sop_class = str(dcmread(path, stop_before_pixels=True).SOPClassUID)
        except (InvalidDicomError, AttributeError, OSError):
            continue
        kind = ("sr" if sop_class.startswith(SR_PREFIX) else "seg" if sop_class == SEG_CLASS
                else "key_image" if sop_class.startswith(SC_PREFIX) else None)
        if kind is not None:
            found.append(ResultFile(kind, path))
    return sorted(found, key=lambda item: (KIND_ORDER.index(item.kind), item.path))


HOW_TO_OPEN = {
    "sr": ("Structured report (TID 1500)", "dsrdump {path}   (DCMTK; or any viewer that shows SR)"),
    "seg": ("Segmentation (vertebral bodies, lesions)",
            "a DICOM viewer with SEG support (3D Slicer, OHIF), with the study's sagittal series"),
    "key_image": ("Key image (Secondary Capture)", "any DICOM viewer; a PNG copy: {png}"),
}


def print_result_files(console: Console, folder: Path, workdir: Path) -> None:
    """The result files of the study's analysis and how to open each."""
    from node.pipeline.run import FINDINGS_FILE, LABELS_FILE

    console.print("\n[bold]Results[/]")
    for name, what in ((FINDINGS_FILE, "findings as JSON"), (LABELS_FILE, "vertebral-body labels (NIfTI)")):
        for path in sorted(folder.rglob(name)):
            console.print(f"  {what}: {path}")
    objects = find_result_files(folder)
    if not objects:
        console.print("  This version writes no DICOM result objects (SR, SEG, key image) yet.")
        return
    png = workdir / KEY_IMAGE_PNG
    for item in objects:
        title, how = HOW_TO_OPEN[item.kind]
        if item.kind == "key_image":
            _write_png(item.path, png)
        console.print(f"  {title}: {item.path}")
        console.print(f"      open with: {how.format(path=item.path, png=png)}")
    console.print("  Or send them to a PACS, e.g. Orthanc (docs/orthanc.md): "
                  f"storescu -aec ORTHANC HOST 4242 {' '.join(str(o.path) for o in objects)}")


def _write_png(dicom_path: Path, png: Path) -> None:
    from PIL import Image

    try:
        pixels = dcmread(dicom_path).pixel_array
        Image.fromarray(pixels).save(png)
    except (ValueError, TypeError, OSError, AttributeError) as exc:
        png.with_suffix(".txt").write_text(f"could not convert {dicom_path}: {exc}\n", encoding="utf-8")
