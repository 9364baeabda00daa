"""The study summary, in the shape of ``findings.json`` (results contract).

:func:`summarize` turns the per-level signs into the per-level records, the
study-level evaluations and the impression paragraph: the findings, the
sequences used, the signs that could not be assessed and why, and the
sentence that this is a triage aid and not a diagnosis.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence as Seq
from dataclasses import dataclass
from typing import Any

from analysis import ALGORITHM_VERSION
from analysis.results import SignState
from analysis.signs.types import LevelSigns
from analysis.volume import REPORTED_LEVELS, Sequence

TRIAGE_SENTENCE = (
    "This is an automated triage aid that flags suspicious features for a radiologist; "
    "it is not a diagnosis, and biopsy and clinical correlation decide."
)
_SEQUENCE_ORDER: tuple[Sequence, ...] = tuple(Sequence)


@dataclass(frozen=True)
class LevelFinding:
    level: str
    marrow_infiltration: SignState
    cortical_destruction: SignState
    soft_tissue_extension: SignState
    compression_fracture: SignState
    pathologic_fracture_pattern: SignState
    suspicious_for_malignancy: SignState
    genant_grade: int | None
    height_loss_pct: float | None
    ha_mm: float | None
    hm_mm: float | None
    hp_mm: float | None
    lesion_fraction_pct: float | None
    t1_marrow_disc_ratio: float | None

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "marrow_infiltration": self.marrow_infiltration.value,
            "cortical_destruction": self.cortical_destruction.value,
            "soft_tissue_extension": self.soft_tissue_extension.value,
            "compression_fracture": self.compression_fracture.value,
            "pathologic_fracture_pattern": self.pathologic_fracture_pattern.value,
            "suspicious_for_malignancy": self.suspicious_for_malignancy.value,
            "genant_grade": self.genant_grade,
            "height_loss_pct": self.height_loss_pct,
            "ha_mm": self.ha_mm,
            "hm_mm": self.hm_mm,
            "hp_mm": self.hp_mm,
            "lesion_fraction_pct": self.lesion_fraction_pct,
            "t1_marrow_disc_ratio": self.t1_marrow_disc_ratio,
        }


@dataclass(frozen=True)
class StudySummary:
    suspicious_for_malignancy: SignState
    multiple_lesions: SignState
    canal_compromise: SignState
    suspicious_level_count: int
    impression: str

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "suspicious_for_malignancy": self.suspicious_for_malignancy.value,
            "multiple_lesions": self.multiple_lesions.value,
            "canal_compromise": self.canal_compromise.value,
            "suspicious_level_count": self.suspicious_level_count,
            "impression": self.impression,
        }


@dataclass(frozen=True)
class StudyFindings:
    study_instance_uid: str
    algorithm_version: str
    series_used: tuple[tuple[str, str | None], ...]  # (sequence, series UID), contract order
    levels: tuple[LevelFinding, ...]
    study: StudySummary

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "study_instance_uid": self.study_instance_uid,
            "algorithm_version": self.algorithm_version,
            "series_used": dict(self.series_used),
            "levels": [lv.to_json_dict() for lv in self.levels],
            "study": self.study.to_json_dict(),
        }


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(float(value), digits)


def _any_state(states: Seq[SignState]) -> SignState:
    if SignState.PRESENT in states:
        return SignState.PRESENT
    if states and all(s == SignState.ABSENT for s in states):
        return SignState.ABSENT
    return SignState.INDETERMINATE


def _level_finding(ls: LevelSigns) -> LevelFinding:
    return LevelFinding(
        level=ls.level,
        marrow_infiltration=ls.marrow_infiltration,
        cortical_destruction=ls.cortical_destruction,
        soft_tissue_extension=ls.soft_tissue_extension,
        compression_fracture=ls.compression_fracture,
        pathologic_fracture_pattern=ls.pathologic_fracture_pattern,
        suspicious_for_malignancy=ls.suspicious_for_malignancy,
        genant_grade=ls.genant_grade,
        height_loss_pct=_round(ls.height_loss_pct, 1),
        ha_mm=_round(ls.ha_mm, 1),
        hm_mm=_round(ls.hm_mm, 1),
        hp_mm=_round(ls.hp_mm, 1),
        lesion_fraction_pct=_round(ls.lesion_fraction_pct, 1),
        t1_marrow_disc_ratio=_round(ls.t1_marrow_disc_ratio, 2),
    )


def summarize(
    study_instance_uid: str,
    series_used: Mapping[Sequence, str | None],
    level_signs: Seq[LevelSigns],
    notes: Seq[str] = (),
    algorithm_version: str = ALGORITHM_VERSION,
) -> StudyFindings:
    """The findings of one study from its per-level signs.

    ``series_used`` maps each analysed sequence to its Series Instance UID;
    ``notes`` are extra sentences for the impression (segmentation limits).
    Only the contract's levels (T12 to S1) are listed; a suspicious level
    outside them is still named in the impression.
    """
    if not isinstance(study_instance_uid, str) or not study_instance_uid:
        raise ValueError("study_instance_uid must be a non-empty string")
    if not isinstance(series_used, Mapping):
        raise TypeError(f"series_used must be a mapping, got {type(series_used).__name__}")
    for ls in level_signs:
        if not isinstance(ls, LevelSigns):
            raise TypeError(f"level_signs must hold LevelSigns, got {type(ls).__name__}")
    used = {Sequence(k): v for k, v in series_used.items()}
    series = tuple((s.value, used.get(s)) for s in _SEQUENCE_ORDER)
    rank = {name: i for i, name in enumerate(REPORTED_LEVELS)}
    reported = sorted((ls for ls in level_signs if ls.level in rank), key=lambda ls: rank[ls.level])
    susp = [ls for ls in level_signs if ls.suspicious_for_malignancy == SignState.PRESENT]
    n_susp = sum(1 for ls in reported if ls.suspicious_for_malignancy == SignState.PRESENT)
    n_ind = sum(1 for ls in level_signs if ls.suspicious_for_malignancy == SignState.INDETERMINATE)
    if len(susp) >= 2:
        multiple = SignState.PRESENT
    elif len(susp) + n_ind >= 2 or not level_signs:
        multiple = SignState.INDETERMINATE
    else:
        multiple = SignState.ABSENT
    summary = StudySummary(
        suspicious_for_malignancy=_any_state([ls.suspicious_for_malignancy for ls in level_signs]),
        multiple_lesions=multiple,
        canal_compromise=_any_state([ls.canal_compromise for ls in level_signs]),
        suspicious_level_count=n_susp,
        impression=impression(level_signs, [s for s in _SEQUENCE_ORDER if used.get(s)], notes),
    )
    return StudyFindings(study_instance_uid, algorithm_version, series,
                         tuple(_level_finding(ls) for ls in reported), summary)


def _describe(ls: LevelSigns) -> str:
    parts: list[str] = []
    if ls.marrow_infiltration == SignState.PRESENT:
        detail = [ls.marrow_pattern or "focal"]
        if ls.lesion_fraction_pct is not None:
            detail.append(f"{ls.lesion_fraction_pct:.0f} % of the body")
        if ls.marrow_stir_t1_quotient is not None:
            # its marrow/disc ratio is a normal one: say what found it
            against = "the body's own marrow" if ls.marrow_quotient_focal else "the study's other bodies"
            detail.append(f"darker on T1 and brighter on STIR than {against}, "
                          f"STIR/T1 quotient {ls.marrow_stir_t1_quotient:.1f}")
        elif ls.t1_marrow_disc_ratio is not None:
            detail.append(f"T1 marrow/disc {ls.t1_marrow_disc_ratio:.2f}")
        parts.append(f"marrow infiltration ({', '.join(detail)})")
    if ls.enhancement == SignState.PRESENT:
        parts.append("enhancing")
    if ls.pedicle_involvement == SignState.PRESENT:
        parts.append("pedicle involvement")
    if ls.cortical_destruction == SignState.PRESENT:
        parts.append("cortical destruction")
    if ls.soft_tissue_extension == SignState.PRESENT:
        where = " and ".join(ls.ste_locations) or "soft-tissue"
        size = f", {ls.ste_extent_mm:.0f} mm beyond the body" if ls.ste_extent_mm else ""
        parts.append(f"{where} soft-tissue extension{size}")
    if ls.pathologic_fracture_pattern == SignState.PRESENT:
        parts.append(f"compression fracture with malignant features (Genant {ls.genant_grade})")
    if ls.canal_compromise == SignState.PRESENT:
        if ls.canal_narrowed and ls.canal_diameter_mm is not None:
            parts.append(f"spinal canal narrowed to {ls.canal_diameter_mm:.0f} mm by epidural tissue")
        else:
            parts.append("epidural tissue in the spinal canal")
    return f"{ls.level}: " + ", ".join(parts)


def _reasons(level_signs: Seq[LevelSigns]) -> list[str]:
    """Each distinct reason once, with the levels it applies to."""
    grouped: dict[str, list[str]] = {}
    for ls in level_signs:
        for r in ls.reasons:
            level, _, text = r.partition(": ")
            grouped.setdefault(text if text else r, []).append(level)
    out = []
    n = len(level_signs)
    for text, levels in grouped.items():
        where = "all levels" if len(set(levels)) == n and n > 1 else ", ".join(dict.fromkeys(levels))
        out.append(f"{text} ({where})")
    return out


NO_T1_SENTENCE = (
    "No sagittal T1: a T1 is needed to exclude marrow infiltration; on T2 or STIR alone a bright marrow "
    "region may be fat, a haemangioma or red marrow, so it is reported as indeterminate, not as infiltration."
)
NO_FLUID_SENTENCE = (
    "No sagittal STIR or T2: on T1 alone a focal region darker than disc may be degenerative change, "
    "sclerosis or a haemangioma as well as tumour, so it is reported as indeterminate; only a whole body "
    "as dark as disc is reported as infiltration. A STIR or T2 is needed to characterise focal findings."
)
NO_LEVEL_SENTENCE = "No vertebral body was found in the sagittal series, so no sign could be assessed."


def impression(level_signs: Seq[LevelSigns], sequences: Seq[Sequence], notes: Seq[str] = ()) -> str:
    susp = [ls for ls in level_signs if ls.suspicious_for_malignancy == SignState.PRESENT]
    sentences: list[str] = []
    if susp:
        names = ", ".join(ls.level for ls in susp)
        sentences.append(f"Suspicious for malignancy at {len(susp)} level{'s' if len(susp) > 1 else ''} "
                         f"({names}): " + "; ".join(_describe(ls) for ls in susp) + ".")
        if len(susp) >= 2:
            sentences.append("Multiple levels involved, as in disseminated (metastatic) disease.")
    elif not level_signs:
        sentences.append(NO_LEVEL_SENTENCE)
    elif any(ls.suspicious_for_malignancy == SignState.INDETERMINATE for ls in level_signs):
        sentences.append("No level shows a sign of malignancy, but not every sign could be assessed.")
    else:
        sentences.append("No level shows a sign of malignancy.")
    if level_signs and sequences:
        if Sequence.T1 not in sequences:
            sentences.append(NO_T1_SENTENCE)
        elif not set(sequences) & {Sequence.T2, Sequence.STIR}:
            sentences.append(NO_FLUID_SENTENCE)
    benign = [ls for ls in level_signs if ls.compression_fracture == SignState.PRESENT
              and ls.pathologic_fracture_pattern == SignState.ABSENT]
    if benign:
        sentences.append("Compression fracture without malignant features (benign pattern) at "
                         + ", ".join(f"{ls.level} (Genant {ls.genant_grade})" for ls in benign) + ".")
    seqs = ", ".join(s.value for s in sequences) or "none"
    sentences.append(f"Sequences used: sagittal {seqs}.")
    reasons = _reasons(level_signs)
    if reasons:
        sentences.append("Not assessable: " + "; ".join(reasons) + ".")
    sentences.extend(n[:1].upper() + n[1:].rstrip(".") + "." for n in notes if n)
    sentences.append(TRIAGE_SENTENCE)
    return " ".join(sentences)
