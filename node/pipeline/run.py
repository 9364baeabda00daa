"""Run the analysis on a study's volumes and write its results."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from analysis.findings import StudyFindings, summarize
from analysis.results import SpineSegmentation
from analysis.signs.assess import assess_signs
from analysis.signs.types import LevelSigns
from analysis.sitk_adapter import footprint_like, image_from_volume, resample_like
from analysis.vertebrae.model import BodyModel
from analysis.vertebrae.pipeline import segment_spine
from analysis.volume import Sequence, Volume
from node.pipeline.inputs import StudyInputs

Progress = Callable[[str], None]
FINDINGS_FILE = "findings.json"
LABELS_FILE = "vertebrae.nii.gz"


def _quiet(_: str) -> None:
    return None


@dataclass(frozen=True, eq=False)
class AnalysisOutput:
    findings: StudyFindings
    segmentation: SpineSegmentation
    level_signs: tuple[LevelSigns, ...]


def on_label_grid(volumes: Mapping[Sequence, Volume], labels: Volume) -> dict[Sequence, Volume]:
    """Every sequence on the grid the bodies were drawn on (they share a frame of reference)."""
    return {
        seq: vol if vol.same_grid(labels) else resample_like(vol, labels) for seq, vol in volumes.items()
    }


def analyse(inputs: StudyInputs, model: BodyModel, progress: Progress = _quiet) -> AnalysisOutput:
    """Segment, label and measure the bodies, assess the signs, sum the study up."""
    progress(f"finding vertebral bodies on {', '.join(str(s) for s in inputs.volumes)}")
    return analyse_segmented(inputs, segment_spine(inputs.volumes, model), progress)


def analyse_segmented(inputs: StudyInputs, segmentation: SpineSegmentation,
                      progress: Progress = _quiet) -> AnalysisOutput:
    """The steps of :func:`analyse` after the segmentation: the signs and the summary."""
    notes = (*segmentation.notes, *inputs.notes)
    level_signs: tuple[LevelSigns, ...] = ()
    if segmentation.bodies:
        progress(f"assessing signs on {len(segmentation.bodies)} levels")
        volumes = on_label_grid(inputs.volumes, segmentation.labels)
        footprints = {seq: footprint_like(vol, segmentation.labels) for seq, vol in inputs.volumes.items()}
        level_signs = assess_signs(volumes, segmentation, footprints=footprints)
    progress("summarising")
    findings = summarize(inputs.study_instance_uid, dict(inputs.series_uids), level_signs, notes=notes)
    return AnalysisOutput(findings, segmentation, level_signs)


def write_results(out_dir: Path, output: AnalysisOutput) -> tuple[Path, Path]:
    """``findings.json`` and ``vertebrae.nii.gz`` as the results contract describes them."""
    out_dir.mkdir(parents=True, exist_ok=True)
    findings_path = out_dir / FINDINGS_FILE
    findings_path.write_text(json.dumps(output.findings.to_json_dict(), indent=2) + "\n", encoding="utf-8")
    labels = output.segmentation.labels
    labels_path = out_dir / LABELS_FILE
    sitk.WriteImage(
        image_from_volume(labels.with_array(labels.array.astype(np.uint8))), str(labels_path), True
    )
    return findings_path, labels_path
