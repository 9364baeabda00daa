"""Signs of malignancy per vertebral level on sagittal lumbar MRI (a triage aid, not a diagnosis).

Public API::

    from analysis.signs import assess_signs, regions_from_levels
    from analysis.findings import summarize

    regions = regions_from_levels(analysis.vertebrae.reference_regions(seg, t1))  # or None
    signs = assess_signs({Sequence.T1: t1, Sequence.STIR: stir}, seg, regions)   # tuple[LevelSigns, ...]
    findings = summarize(study_uid, {Sequence.T1: t1_series_uid, ...}, signs)     # StudyFindings
    findings.to_json_dict()                                                       # findings.json

Every sequence must be on the grid of ``seg.labels`` (resample with
``analysis.sitk_adapter.resample_like`` first). Thresholds come from
``analysis.thresholds.SignThresholds``. Modules: ``context`` (canonical frame,
references, body crops), ``marrow`` (T1 vs disc/muscle, T2/STIR vs marrow,
enhancement, focal/diffuse, fraction), ``extent`` (cortex, soft tissue,
pedicles), ``fracture`` (Genant-based compression, malignant vs benign
pattern), ``canal`` (sagittal canal diameter, compromise), ``assess`` (entry
point and the per-level summary).
"""

from analysis.signs.assess import assess_signs
from analysis.signs.regions import ReferenceRegions, derive_reference_regions, regions_from_levels
from analysis.signs.types import LevelSigns

__all__ = [
    "LevelSigns",
    "ReferenceRegions",
    "assess_signs",
    "derive_reference_regions",
    "regions_from_levels",
]
