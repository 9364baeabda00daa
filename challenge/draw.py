"""Draw a challenge set's recipes once, from one seed: ``python -m challenge.draw [a|b] > FILE``.

Set ``a`` (``challenge/frozen.toml``, seed 19019) was drawn before any tuning.
Set ``b`` (``challenge/frozen-b.toml``, seed 19020) was drawn and committed on
4 December 2026, after the analysis had been changed with set ``a`` in view,
to measure the analysis again on studies nobody had looked at; it weights the
plan towards what set ``a`` had too few of (two-sequence lesions, synthetic
normals for the level names, real T2 normals). The committed files are the
sets; this script only records how they were drawn. Running it again with the
same set writes the same file.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np

SHAPES = ("lobulated", "irregular", "sheet", "diffuse")
SHAPE_P = (0.35, 0.3, 0.25, 0.1)
LESION_LEVELS = ("T12", "L1", "L2", "L3", "L4", "L5")
# levels each real case's truth holds (VB3: L1-L5; VB2 and VB1: T12 or T11 down)
REAL_LEVELS = {"VB3": ("L1", "L2", "L3", "L4", "L5")}

# (source, sequences, kind) per study: kind "normal", "mimic" or "lesion"
Plan = tuple[tuple[str, tuple[str, ...], str], ...]

PLAN_A: Plan = (
    ("VB2_02", ("T2",), "normal"),
    ("VB2_05", ("T2",), "normal"),
    ("VB2_08", ("T2",), "normal"),
    ("VB1_10", ("T2",), "normal"),
    ("VB3_02", ("T2",), "normal"),
    ("sct", ("T2",), "normal"),
    ("VB2_04", ("T2",), "mimic"),
    ("VB3_05", ("T2",), "mimic"),
    ("VB3_09", ("T2",), "mimic"),
    ("VB2_06", ("T2",), "lesion"),
    ("VB2_07", ("T2",), "lesion"),
    ("VB2_09", ("T2",), "lesion"),
    ("VB1_11", ("T2",), "lesion"),
    ("VB1_15", ("T2",), "lesion"),
    ("VB3_01", ("T2",), "lesion"),
    ("VB3_03", ("T2",), "lesion"),
    ("VB3_07", ("T2",), "lesion"),
    ("VB1_02", ("T1",), "normal"),
    ("VB1_02", ("T1",), "lesion"),
    ("VB1_03", ("STIR",), "normal"),
    ("VB1_03", ("STIR",), "lesion"),
    ("VB1_02+VB1_03", ("T1", "STIR"), "lesion"),
    ("VB1_02+VB1_03", ("T1", "STIR"), "lesion"),
    *((("synthetic", ("T1", "T2", "STIR"), "lesion"),) * 6),
    ("synthetic", ("T1", "T2", "STIR"), "normal"),
    ("synthetic", ("T1", "T2", "STIR"), "mimic"),
    ("synthetic", ("T1", "T2", "STIR"), "mimic"),
)

PLAN_B: Plan = (
    *((src, ("T2",), "normal") for src in ("VB2_10", "VB3_04", "VB3_06", "VB3_08", "VB3_10", "VB3_12")),
    ("VB2_04", ("T2",), "mimic"),
    ("VB3_11", ("T2",), "mimic"),
    *((src, ("T2",), "lesion") for src in ("VB2_02", "VB2_05", "VB3_02", "VB1_10")),
    ("VB1_03", ("STIR",), "lesion"),
    ("VB1_02", ("T1",), "lesion"),
    *((("VB1_02+VB1_03", ("T1", "STIR"), "lesion"),) * 4),
    ("VB1_02+VB1_03", ("T1", "STIR"), "normal"),
    *((("synthetic", ("T1", "T2", "STIR"), "lesion"),) * 10),
    *((("synthetic", ("T1", "T2", "STIR"), "normal"),) * 4),
    *((("synthetic", ("T1", "T2", "STIR"), "mimic"),) * 2),
)


@dataclass(frozen=True)
class DrawnSet:
    seed: int
    plan: Plan
    prefix: str  # of its study names
    header: tuple[str, str]  # the file's opening comment


SETS = {
    "a": DrawnSet(19019, PLAN_A, "c", (
        "# The challenge set of issue 19, frozen before any tuning: drawn once by `python -m challenge.draw`",
        "# (seed below). Used only to measure (scripts/evaluate_challenge.py), never to train or calibrate.",
    )),
    "b": DrawnSet(19020, PLAN_B, "d", (
        "# The second challenge set of issue 19, drawn once by `python -m challenge.draw b` and committed",
        "# before it was run. Used only to measure (scripts/evaluate_challenge.py --set b), never to tune.",
    )),
}


def _levels(source: str) -> tuple[str, ...]:
    if source.startswith("VB3"):
        return REAL_LEVELS["VB3"]
    return LESION_LEVELS


def _lesion(level: str, multi: bool, rng: np.random.Generator) -> list[str]:
    shape = str(rng.choice(SHAPES, p=SHAPE_P))
    extension = "none"
    if rng.random() < (0.75 if multi else 0.4):
        extension = str(rng.choice(["epidural", "paravertebral"]))
    ext_mm = round(float(rng.uniform(3.0, 15.0)), 1) if extension != "none" else 0.0
    side = (
        "posterior"
        if extension == "epidural"
        else ("anterior" if extension == "paravertebral" else str(rng.choice(["posterior", "anterior"])))
    )
    return [
        "[[study.lesion]]",
        f'level = "{level}"',
        f'shape = "{shape}"',
        f"contrast = {round(float(rng.uniform(0.0, 1.0)), 2)}",
        f'extension = "{extension}"',
        f"extension_mm = {ext_mm}",
        f'side = "{side}"',
    ]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    which = args[0] if args else "a"
    if which not in SETS or len(args) > 1:
        raise SystemExit(f"usage: python -m challenge.draw [{'|'.join(SETS)}]")
    drawn = SETS[which]
    rng = np.random.default_rng(drawn.seed)
    lines = [
        *drawn.header,
        "[set]",
        f"seed = {drawn.seed}",
        'tumour_ratio = "T1 0.92 -> 0.30, T2 1.12 -> 2.45, STIR 1.30 -> 5.00 x marrow at contrast 0 -> 1"',
        'extension = "3-15 mm beyond the wall; epidural (posterior, midline) or paravertebral (anterior)"',
        'slices = "3.0-4.5 mm thick, 0-1 mm gaps, overlap-weighted (partial volume)"',
        "",
    ]
    for n, (source, seqs, kind) in enumerate(drawn.plan, start=1):
        thickness = float(rng.choice([3.0, 3.5, 4.0, 4.5]))
        gap = float(rng.choice([0.0, 0.3, 0.5, 1.0]))
        name = f"{drawn.prefix}{n:02d}-{source.replace('+', '-').lower()}-{'-'.join(seqs).lower()}-{kind}"
        lines += [
            "[[study]]",
            f'name = "{name}"',
            f'source = "{source}"',
            f"sequences = {list(seqs)!r}".replace("'", '"'),
            f"thickness = {thickness}",
            f"gap = {gap}",
            f"seed = {int(rng.integers(1, 2**31 - 1))}",
        ]
        levels = _levels(source)
        if kind == "mimic":
            picks = rng.choice(levels, 2, replace=False)
            mimics = [f"haemangioma:{picks[0]}", f"fat:{picks[1]}", "heterogeneous"]
            lines.append(f"mimics = {mimics!r}".replace("'", '"'))
        if kind == "lesion":
            n_les = int(rng.choice([1, 1, 2]))
            for level in rng.choice(levels, n_les, replace=False):
                lines += _lesion(str(level), len(seqs) > 1, rng)
        lines.append("")
    sys.stdout.write("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
