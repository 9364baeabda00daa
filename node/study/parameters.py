"""Acquisition parameters of one frame, from classic attributes or Enhanced MR functional groups."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from pydicom.dataset import Dataset

from node.study.frames import frame_count, functional_group, is_multi_frame

# Values of Contrast/Bolus Agent that scanners write when no agent was given.
NO_AGENT = frozenset({"NONE", "NO", "N", "0", "NIL", "-"})

_UNASSIGNED = ("UnassignedPerFrameConvertedAttributesSequence", "UnassignedSharedConvertedAttributesSequence")


@dataclass(frozen=True)
class AcquisitionParameters:
    """What the classifier looks at for one frame (times in ms, angle in degrees)."""

    repetition_time: float | None = None
    echo_time: float | None = None
    inversion_time: float | None = None
    flip_angle: float | None = None
    scanning_sequence: tuple[str, ...] = ()
    sequence_variant: tuple[str, ...] = ()
    inversion_recovery: bool | None = None  # Enhanced MR Inversion Recovery YES/NO; None: not stated
    contrast_agent: bool | None = None  # True given, False stated none, None not recorded
    contrast_text: str = ""
    image_type: tuple[str, ...] = ()  # Image Type and Frame Type values, upper case
    acquisition_contrast: str = ""
    echo_planar: bool = False
    steady_state: bool = False
    orientation: tuple[float, ...] | None = None


def _first(value: object) -> object:
    if isinstance(value, Iterable) and not isinstance(value, (str, bytes)):
        items = list(value)
        return items[0] if items else None
    return value


def _number(value: object) -> float | None:
    value = _first(value)
    if value is None or value == "":
        return None
    try:
        return float(str(value))
    except ValueError:
        return None


def _words(value: object) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    items = list(value) if isinstance(value, Iterable) and not isinstance(value, str) else [value]
    return tuple(str(v).strip().upper() for v in items if str(v).strip())


def _lookup(ds: Dataset, index: int | None, group: str | None, keyword: str) -> object:
    """A frame's attribute: its functional group, the converted-attribute groups, then the top level."""
    if index is not None:
        for name in (group, *_UNASSIGNED):
            if name is None:
                continue
            item = functional_group(ds, index, name)
            if item is not None and item.get(keyword) not in (None, ""):
                return item.get(keyword)
    value = ds.get(keyword)
    return None if value == "" else value


def _contrast(ds: Dataset, index: int | None) -> tuple[bool | None, str]:
    if index is not None:
        usage = None
        per_frame = ds.get("PerFrameFunctionalGroupsSequence")
        if per_frame is not None and index < len(per_frame):
            usage = per_frame[index].get("ContrastBolusUsageSequence")
        if not usage and ds.get("SharedFunctionalGroupsSequence"):
            usage = ds.SharedFunctionalGroupsSequence[0].get("ContrastBolusUsageSequence")
        if usage:
            given = [str(item.get("ContrastBolusAgentAdministered", "")).upper() for item in usage]
            agents = ds.get("ContrastBolusAgentSequence") or []
            names = ", ".join(str(a.get("CodeMeaning", "")) for a in agents) or "agent"
            if "YES" in given:
                return True, f"MR Contrast/Bolus usage: {names} administered"
            if given and all(g == "NO" for g in given):
                return False, "MR Contrast/Bolus usage: not administered"
        if ds.get("ContrastBolusAgentSequence"):
            return True, "Enhanced Contrast/Bolus module present"
    agent = _lookup(ds, index, None, "ContrastBolusAgent")
    text = str(agent or "").strip()
    if not text:
        return None, ""
    if text.upper() in NO_AGENT:
        return False, f"Contrast/Bolus Agent '{text}'"
    return True, f"Contrast/Bolus Agent '{text}'"


# Enhanced MR states the echo type in Echo Pulse Sequence instead of Scanning Sequence.
_ECHO_PULSE: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {"SPIN": ("SE",), "GRADIENT": ("GR",), "BOTH": ("SE", "GR")}
)


def _scanning_sequence(ds: Dataset, index: int | None) -> tuple[str, ...]:
    scanning = _words(_lookup(ds, index, None, "ScanningSequence"))
    if scanning:
        return scanning
    echo = _words(_lookup(ds, index, None, "EchoPulseSequence"))
    return _ECHO_PULSE.get(echo[0], ()) if echo else ()


def frame_parameters(ds: Dataset, index: int | None) -> AcquisitionParameters:
    """The parameters of frame ``index`` (0-based) of ``ds``; ``None`` for a single-frame object."""
    timing = "MRTimingAndRelatedParametersSequence"
    modifier = "MRModifierSequence"
    ir_flag = _words(_lookup(ds, index, modifier, "InversionRecovery"))
    ti = _number(_lookup(ds, index, modifier, "InversionTimes"))
    if ti is None:
        ti = _number(_lookup(ds, index, None, "InversionTime"))
    echo = _number(_lookup(ds, index, "MREchoSequence", "EffectiveEchoTime"))
    if echo is None:
        echo = _number(_lookup(ds, index, None, "EchoTime"))
    agent, agent_text = _contrast(ds, index)
    frame_type = () if index is None else _words(_lookup(ds, index, "MRImageFrameTypeSequence", "FrameType"))
    cosines = tuple(
        n for n in (_number(v) for v in _words(
            _lookup(ds, index, "PlaneOrientationSequence", "ImageOrientationPatient")
        )) if n is not None
    )
    steady = _words(ds.get("SteadyStatePulseSequence"))
    return AcquisitionParameters(
        repetition_time=_number(_lookup(ds, index, timing, "RepetitionTime")),
        echo_time=echo,
        inversion_time=ti,
        flip_angle=_number(_lookup(ds, index, timing, "FlipAngle")),
        scanning_sequence=_scanning_sequence(ds, index),
        sequence_variant=_words(_lookup(ds, index, None, "SequenceVariant")),
        inversion_recovery=None if not ir_flag else ir_flag[0] == "YES",
        contrast_agent=agent,
        contrast_text=agent_text,
        image_type=_words(ds.get("ImageType")) + frame_type,
        acquisition_contrast=" ".join(
            _words(_lookup(ds, index, "MRImageFrameTypeSequence", "AcquisitionContrast"))
        ),
        echo_planar=_words(ds.get("EchoPlanarPulseSequence"))[:1] == ("YES",),
        steady_state=bool(steady) and steady[0] != "NONE",
        orientation=cosines if len(cosines) == 6 else None,
    )


def dataset_parameters(ds: Dataset) -> list[AcquisitionParameters]:
    """Parameters of every frame of ``ds`` (one entry for a single-frame object)."""
    if is_multi_frame(ds):
        return [frame_parameters(ds, i) for i in range(frame_count(ds))]
    return [frame_parameters(ds, None)]
