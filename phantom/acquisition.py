"""MR acquisition parameters written into phantom and wrapped-volume series."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from analysis.volume import Sequence


@dataclass(frozen=True)
class Acquisition:
    """Acquisition parameters of one MR series (1.5 T turbo spin echo)."""

    repetition_ms: float
    echo_ms: float
    echo_train: int
    scanning_sequence: tuple[str, ...]
    sequence_variant: tuple[str, ...]
    scan_options: tuple[str, ...] = ()
    inversion_ms: float | None = None
    flip_deg: float = 150.0
    sequence_name: str = "tse2d"
    contrast: str = "T1"  # Enhanced MR Acquisition Contrast
    agent: str | None = None  # Contrast/Bolus Agent, post-contrast only
    image_type: tuple[str, ...] = ("ORIGINAL", "PRIMARY", "OTHER")


ACQUISITIONS: dict[Sequence, Acquisition] = {
    Sequence.T1: Acquisition(560.0, 11.0, 3, ("SE",), ("SK", "SP"), sequence_name="*tse2d1_3", contrast="T1"),
    Sequence.T2: Acquisition(
        3800.0, 98.0, 17, ("SE",), ("SK", "SP"), sequence_name="*tse2d1_17", contrast="T2"
    ),
    Sequence.STIR: Acquisition(
        4200.0,
        56.0,
        13,
        ("SE", "IR"),
        ("SK", "SP", "MP"),
        (),
        inversion_ms=160.0,
        sequence_name="*tir2d1_13",
        contrast="STIR",
    ),
    Sequence.T1C: Acquisition(
        560.0,
        11.0,
        3,
        ("SE",),
        ("SK", "SP"),
        sequence_name="*tse2d1_3",
        contrast="T1",
        agent="Gadoterate meglumine 0.5 mmol/mL",
    ),
}


def from_description(text: str) -> tuple[Sequence, Acquisition]:
    """Signal model and acquisition tags for a free-text sequence name (manifest "sequence").

    ``"STIR (TIRM)"`` -> STIR; ``"T1w FSE"`` -> T1; ``"T2w TSE (TR 5240 ms, TE 101 ms, 1.5 T)"``
    -> T2 with that TR/TE; a water-fat gradient-echo source image -> T2-like signal
    written as the water image of a spoiled gradient-echo Dixon acquisition.
    """
    upper = text.upper()
    if "STIR" in upper or "TIRM" in upper:
        seq = Sequence.STIR
    elif re.search(r"\bT1", upper):
        seq = Sequence.T1
    elif "T2" in upper:
        seq = Sequence.T2
    else:
        raise ValueError(f"cannot tell the sequence from {text!r}; pass it explicitly")
    acq = ACQUISITIONS[seq]
    if "GRE" in upper or "GRADIENT" in upper:
        acq = replace(
            acq,
            repetition_ms=6.2,
            echo_ms=2.4,
            echo_train=1,
            scanning_sequence=("GR",),
            sequence_variant=("SP",),
            flip_deg=3.0,
            sequence_name="*fl3d2",
            contrast="T2",
            image_type=("DERIVED", "PRIMARY", "DIXON", "WATER"),
        )
    tr = re.search(r"TR\s*([0-9.]+)\s*MS", upper)
    te = re.search(r"TE\s*([0-9.]+)\s*MS", upper)
    if tr:
        acq = replace(acq, repetition_ms=float(tr.group(1)))
    if te:
        acq = replace(acq, echo_ms=float(te.group(1)))
    return seq, acq
