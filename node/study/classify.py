"""Which plane and which MR contrast a series is, from its acquisition parameters.

The series description is free text typed by a technologist, so it only breaks
ties when the parameters are missing or fall between the bands.
"""

from __future__ import annotations

import re
from collections.abc import Sequence as Seq
from dataclasses import dataclass, replace

import numpy as np
from pydicom.dataset import Dataset

from analysis.volume import Plane, Sequence
from node.study.errors import StudyInputError
from node.study.frames import frame_indices, frames_left_out
from node.study.parameters import AcquisitionParameters, dataset_parameters

# The slice normal's largest LPS component must be at least this (about 37 degrees
# of obliquity) for the series to count as sagittal, coronal or axial.
PLANE_COSINE = 0.8
T1_TR_MAX, T1_TE_MAX = 1000.0, 30.0
T2_TR_MIN, T2_TE_MIN = 2000.0, 60.0
# STIR nulls fat: TI about 100-250 ms from 0.3 to 3 T, widened for vendor choices.
STIR_TI = (80.0, 300.0)
# T1-weighted inversion recovery ("T1 FLAIR"), used for sagittal T1 at 3 T.
T1_IR_TI = (300.0, 1500.0)
# Gradient echo with long TE and small flip angle is T2*-weighted, not T1.
T2STAR_TE_MIN, T2STAR_FLIP_MAX = 10.0, 40.0

DIXON_TYPES = frozenset(
    {"DIXON", "IN_PHASE", "OPP_PHASE", "OUT_PHASE", "OPPOSED_PHASE", "OUT_OF_PHASE", "WATER", "FAT",
     "FAT_FRACTION", "WATER_FRACTION"}
)
LOCALIZER_TYPES = frozenset({"LOCALIZER", "SCOUT"})
SUBTRACTION_TYPES = frozenset({"SUBTRACTION", "SUB"})
DIFFUSION_TYPES = frozenset({"DIFFUSION", "ADC", "TRACEW", "EADC", "FA"})


@dataclass(frozen=True)
class SeriesClassification:
    """Plane and contrast of a series with the reasons, in the order they were weighed."""

    plane: Plane
    sequence: Sequence
    reasons: tuple[str, ...]
    parameters: AcquisitionParameters
    # Every plane and contrast its frames were found in: a series that mixes them is
    # OBLIQUE or OTHER, and these say whether a sagittal T1, T2... was among them.
    planes_found: frozenset[Plane] = frozenset()
    sequences_found: frozenset[Sequence] = frozenset()
    localizers_left_out: int = 0  # localizer frames the series was classified without

    @property
    def explanation(self) -> str:
        return "; ".join(self.reasons)


def plane_from_orientation(orientation: Seq[float]) -> Plane:
    """The plane of an Image Orientation (Patient): the LPS axis the slice normal mostly follows."""
    values = np.asarray(orientation, dtype=float)
    if values.shape != (6,) or not np.all(np.isfinite(values)):
        raise ValueError(f"orientation must be 6 finite numbers, got {orientation!r}")
    normal = np.cross(values[:3], values[3:])
    length = float(np.linalg.norm(normal))
    if length < 0.5:
        raise ValueError(f"orientation {tuple(values)} has parallel row and column directions")
    normal = np.abs(normal / length)
    axis = int(np.argmax(normal))
    if normal[axis] < PLANE_COSINE:
        return Plane.OBLIQUE
    return (Plane.SAGITTAL, Plane.CORONAL, Plane.AXIAL)[axis]


def _pattern(token: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![A-Z0-9]){token}(?![0-9])")


_DESCRIPTION_RULES: tuple[tuple[re.Pattern[str], Sequence], ...] = (
    (re.compile(r"DIXON|IDEAL|(?<![A-Z])FLEX"), Sequence.DIXON),
    (re.compile(r"STIR|TIRM"), Sequence.STIR),
    (_pattern("T1"), Sequence.T1),
    (re.compile(r"FLAIR|T2\*|(?<![A-Z0-9])PD(?![A-Z0-9])|DWI|DIFF|ADC"), Sequence.OTHER),
    (_pattern("T2"), Sequence.T2),
)
_POST_CONTRAST = re.compile(
    r"POST|\+ ?C(?![A-Z])|(?<![A-Z])C ?\+|(?<![A-Z])GD|GAD|CONTRAST|(?<![A-Z])KM(?![A-Z])"
)


def description_sequence(description: str) -> Sequence | None:
    """What a series description claims, or ``None`` when it names no contrast."""
    text = description.upper()
    for pattern, sequence in _DESCRIPTION_RULES:
        if pattern.search(text):
            if sequence is Sequence.T1 and _POST_CONTRAST.search(text):
                return Sequence.T1C
            return sequence
    return None


def _tie_break(params: AcquisitionParameters, description: str, why: str, reasons: list[str]) -> Sequence:
    claimed = description_sequence(description)
    if claimed is None:
        reasons.append(f"{why}; series description '{description}' names no contrast: other")
        return Sequence.OTHER
    if claimed in (Sequence.T1, Sequence.T1C):
        reasons.append(f"{why}; series description '{description}' says T1")
        return _with_contrast(params, description, reasons)
    reasons.append(f"{why}; series description '{description}' decides: {claimed}")
    return claimed


def _with_contrast(params: AcquisitionParameters, description: str, reasons: list[str]) -> Sequence:
    if params.contrast_agent:
        reasons.append(f"{params.contrast_text}: post-contrast")
        return Sequence.T1C
    if params.contrast_agent is None and _POST_CONTRAST.search(description.upper()):
        reasons.append(f"no contrast agent recorded; series description '{description}' says post-contrast")
        return Sequence.T1C
    if params.contrast_text:
        reasons.append(f"{params.contrast_text}: pre-contrast")
    return Sequence.T1


def _ms(value: float | None) -> str:
    return "missing" if value is None else f"{value:g} ms"


def sequence_from_parameters(
    params: AcquisitionParameters, description: str = ""
) -> tuple[Sequence, list[str]]:
    """The contrast of one parameter set and the reasons for it."""
    reasons: list[str] = []
    types = set(params.image_type)
    if types & LOCALIZER_TYPES:
        return Sequence.OTHER, ["Image Type says localizer"]
    if types & SUBTRACTION_TYPES:
        return Sequence.OTHER, ["Image Type says subtraction"]
    if found := sorted(types & DIXON_TYPES):
        return Sequence.DIXON, [f"Image Type {'/'.join(found)}: chemical-shift (Dixon) image"]
    if types & DIFFUSION_TYPES or params.acquisition_contrast == "DIFFUSION":
        return Sequence.OTHER, ["diffusion image"]
    if params.echo_planar or "EP" in params.scanning_sequence:
        return Sequence.OTHER, ["echo planar acquisition (diffusion or perfusion)"]
    if params.steady_state or {"SS", "TRSS"} & set(params.sequence_variant):
        return Sequence.OTHER, ["steady-state free precession"]
    tr, te, ti = params.repetition_time, params.echo_time, params.inversion_time
    inversion = params.inversion_recovery
    if inversion is None:
        inversion = "IR" in params.scanning_sequence or (ti is not None and ti > 0)
    if inversion:
        basis = "inversion recovery" + (" (Sequence Variant MP)" if "MP" in params.sequence_variant else "")
        if ti is None or ti <= 0:
            return _tie_break(params, description, f"{basis} without Inversion Time", reasons), reasons
        if STIR_TI[0] <= ti <= STIR_TI[1]:
            reasons.append(f"{basis} with TI {_ms(ti)} (fat nulled): STIR")
            return Sequence.STIR, reasons
        if ti > T1_IR_TI[1]:
            reasons.append(f"{basis} with long TI {_ms(ti)} (FLAIR): other")
            return Sequence.OTHER, reasons
        if ti >= T1_IR_TI[0] and te is not None and te < T1_TE_MAX:
            reasons.append(f"{basis} with TI {_ms(ti)} and TE {_ms(te)}: T1-weighted (T1 FLAIR)")
            return _with_contrast(params, description, reasons), reasons
        reasons.append(f"{basis} with TI {_ms(ti)} and TE {_ms(te)}: no known band, other")
        return Sequence.OTHER, reasons
    if tr is None or te is None:
        return _tie_break(params, description, f"TR {_ms(tr)}, TE {_ms(te)}", reasons), reasons
    flip = params.flip_angle
    if "GR" in params.scanning_sequence and te >= T2STAR_TE_MIN and (flip is None or flip <= T2STAR_FLIP_MAX):
        reasons.append(f"gradient echo with TE {_ms(te)} and flip angle {flip}: T2*-weighted, other")
        return Sequence.OTHER, reasons
    if tr < T1_TR_MAX and te < T1_TE_MAX:
        reasons.append(f"TR {_ms(tr)} < {T1_TR_MAX:g} and TE {_ms(te)} < {T1_TE_MAX:g}: T1-weighted")
        return _with_contrast(params, description, reasons), reasons
    if tr > T2_TR_MIN and te > T2_TE_MIN:
        reasons.append(f"TR {_ms(tr)} > {T2_TR_MIN:g} and TE {_ms(te)} > {T2_TE_MIN:g}: T2-weighted")
        if params.contrast_agent:
            reasons.append(f"{params.contrast_text} (post-contrast T2 is still T2)")
        return Sequence.T2, reasons
    if tr > T2_TR_MIN and te < T1_TE_MAX:
        reasons.append(f"TR {_ms(tr)} long and TE {_ms(te)} short: proton density, other")
        return Sequence.OTHER, reasons
    why = f"TR {_ms(tr)} and TE {_ms(te)} fall between the T1 and T2 bands"
    declared = {"T1": Sequence.T1, "T2": Sequence.T2}.get(params.acquisition_contrast)
    if declared is Sequence.T1:
        reasons.append(f"{why}; Acquisition Contrast T1")
        return _with_contrast(params, description, reasons), reasons
    if declared is not None:
        reasons.append(f"{why}; Acquisition Contrast {params.acquisition_contrast}")
        return declared, reasons
    return _tie_break(params, description, why, reasons), reasons


def classify_series(headers: Seq[Dataset]) -> SeriesClassification:
    """Plane and contrast of one series from the headers of its files (pixel data not needed)."""
    if not headers:
        raise StudyInputError("headers: a series needs at least one header")
    description = str(headers[0].get("SeriesDescription", "") or "")
    distinct: dict[AcquisitionParameters, None] = {}
    left_out = frames_left_out(headers)
    for ds, skip in zip(headers, left_out, strict=True):
        for index, params in zip(frame_indices(ds), dataset_parameters(ds), strict=True):
            if index not in skip:
                distinct.setdefault(params, None)
    param_sets = list(distinct)
    planes: set[Plane] = set()
    plane_reasons: list[str] = []
    localizers = sum(len(skip) for skip in left_out)
    for params in param_sets:
        if params.orientation is None:
            continue
        try:
            planes.add(plane_from_orientation(params.orientation))
        except ValueError as exc:
            plane_reasons = [f"invalid Image Orientation (Patient): {exc}"]
    found_planes = frozenset(planes)
    if plane_reasons:
        plane = Plane.OBLIQUE
    elif not planes:
        plane, plane_reasons = Plane.OBLIQUE, ["no Image Orientation (Patient): plane unknown"]
    elif len(planes) > 1:
        names = "/".join(sorted(planes))
        plane, plane_reasons = Plane.OBLIQUE, [f"frames in several planes ({names}): no single plane"]
    else:
        plane = planes.pop()
        plane_reasons = [f"slice normal along {plane_axis(plane)}: {plane}"]
    decided: dict[AcquisitionParameters, tuple[Sequence, list[str]]] = {}
    for params in param_sets:
        without_orientation = replace(params, orientation=None)
        if without_orientation not in decided:
            decided[without_orientation] = sequence_from_parameters(params, description)
    outcomes = list(decided.values())
    sequences = {seq for seq, _ in outcomes}
    first_sequence, first_reasons = outcomes[0]
    if len(sequences) == 1:
        sequence, reasons = first_sequence, list(first_reasons)
        if len(outcomes) > 1:
            reasons.append(f"{len(outcomes)} parameter sets in the series, all {sequence}")
    else:
        sequence = Sequence.OTHER
        reasons = [f"frames mix contrasts ({', '.join(sorted(sequences))}): other"]
    left_out_reason = [f"{localizer_images(localizers)} left out"] if localizers else []
    return SeriesClassification(plane, sequence, tuple(left_out_reason + plane_reasons + reasons),
                                param_sets[0], found_planes, frozenset(sequences), localizers)


def localizer_images(count: int) -> str:
    """``count`` localizer image(s), in words."""
    return f"{count} localizer image{'' if count == 1 else 's'}"


def plane_axis(plane: Plane) -> str:
    return {
        Plane.SAGITTAL: "left-right",
        Plane.CORONAL: "anterior-posterior",
        Plane.AXIAL: "superior-inferior",
    }.get(plane, "no main axis")
