"""Loading the shared real lumbar MRI cases as realistic clinical series.

One function, :func:`load_case`, turns a shared case into what the analysis
receives: ``{Sequence: Volume}`` with 3 mm sagittal slices, plus the truth label
map on the same grid. A DICOM round-trip wrapper can replace it without
touching the evaluation.
"""

from __future__ import annotations

import argparse
import json
import lzma
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from analysis.sitk_adapter import resample_like, take_every_nth_slice, volume_from_image
from analysis.vertebrae.geometry import canonical_of
from analysis.vertebrae.levels import VERSE_LABELS
from analysis.vertebrae.measure import Heights, body_heights, chain_axes
from analysis.vertebrae.model import BodyModel, model_from_bytes
from analysis.vertebrae.pipeline import segment_spine
from analysis.volume import LEVEL_LABELS, Sequence, Volume

REPO = Path(__file__).resolve().parents[1]
SHARED_REAL = REPO.parent / "shared" / "data" / "real-lumbar-mri"
WEIGHTS = REPO / "analysis" / "vertebrae" / "weights"
SLICE_STEP = 3  # 1 mm -> 3 mm sagittal slices


@dataclass(frozen=True)
class Case:
    name: str
    dataset: str
    group: str  # patient: cases of one group never go to different folds
    volumes: dict[Sequence, Volume]
    truth: Volume  # label map on the grid of the first volume
    levels_known: bool  # truth names levels (VB2, VB3)


def sequence_of(description: str) -> Sequence:
    d = description.lower()
    if "stir" in d or "tirm" in d:
        return Sequence.STIR
    if "t1" in d:
        return Sequence.T1
    if "water-fat" in d or "dixon" in d:
        return Sequence.DIXON
    if "t2" in d:
        return Sequence.T2
    return Sequence.OTHER


def verse_truth(labels: np.ndarray, dataset: str) -> np.ndarray:
    """Truth labels in VerSe numbering; VB1 (100.. from the top) is counted up from L5.

    In every VB1 case the lowest labelled body sits on the sacrum (checked on
    mid-sagittal renderings), so 100+n-1 is L5. Used for training and as a
    labelling reference only; the evaluation reports name accuracy on VB2/VB3.
    """
    if dataset != "VB1":
        return labels.astype(np.int16)
    out = np.zeros(labels.shape, dtype=np.int16)
    present = sorted(int(v) for v in np.unique(labels) if v >= 100)
    for rank_from_bottom, v in enumerate(reversed(present)):
        out[labels == v] = LEVEL_LABELS["L5"] - rank_from_bottom
    return out


def list_cases(root: Path = SHARED_REAL) -> list[dict[str, str]]:
    manifest = json.loads((root / "manifest.json").read_text())
    return [
        {
            "case": m["case"],
            "dataset": m["dataset"],
            "sequence": m["sequence"],
            "group": m.get("same_patient_group") or m["case"],
        }
        for m in manifest
    ]


def load_case(entry: dict[str, str], root: Path = SHARED_REAL, step: int = SLICE_STEP) -> Case:
    """Read one shared case, keep every ``step``-th sagittal slice, return volume and truth."""
    image = volume_from_image(sitk.ReadImage(str(root / f"{entry['case']}_image.nii.gz")))
    labels = volume_from_image(sitk.ReadImage(str(root / f"{entry['case']}_labels.nii.gz")))
    image = take_every_nth_slice(image, step, axis=0)
    labels = take_every_nth_slice(labels, step, axis=0)
    truth = labels.with_array(verse_truth(np.asarray(labels.array), entry["dataset"]))
    return Case(
        name=entry["case"],
        dataset=entry["dataset"],
        group=entry["group"],
        volumes={sequence_of(entry["sequence"]): image},
        truth=truth,
        levels_known=entry["dataset"] in ("VB2", "VB3"),
    )


def fold_of_groups(entries: list[dict[str, str]], n_folds: int) -> dict[str, int]:
    """Deterministic patient-grouped folds, datasets spread over folds."""
    groups: list[str] = []
    for e in sorted(entries, key=lambda e: (e["dataset"], e["case"])):
        if e["group"] not in groups:
            groups.append(e["group"])
    return {g: i % n_folds for i, g in enumerate(groups)}


# ---------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class BodyScore:
    truth_level: str
    predicted_level: str | None
    dice: float
    height_error_mm: tuple[float, float, float] | None  # |pred - truth| for Ha, Hm, Hp
    genant_grade: int | None


@dataclass(frozen=True)
class CaseScore:
    name: str
    bodies: tuple[BodyScore, ...]
    invented: tuple[str, ...]  # predicted bodies with no truth body, inside the truth's range
    n_predicted: int
    certainty: float
    sacrum_in_view: bool
    notes: tuple[str, ...]
    seconds: float


def evaluate(
    volumes: dict[Sequence, Volume], truth: Volume, model: BodyModel, name: str = "study"
) -> CaseScore:
    """Run the analysis on one study and score it against a truth label map (VerSe labels).

    Works for any study with truth on the labels' grid: the shared real cases or
    phantom studies.
    """
    t0 = time.perf_counter()
    seg = segment_spine(volumes, model)
    seconds = time.perf_counter() - t0
    if seg.labels.array.shape != truth.array.shape:
        truth = resample_like(truth, seg.labels, labels=True)
    can = canonical_of(seg.labels)
    pred = can.to_canonical(np.asarray(seg.labels.array))
    true = can.to_canonical(np.asarray(truth.array))
    names = {v: k for k, v in VERSE_LABELS.items()}
    truth_rows = np.nonzero(true.any(axis=(0, 2)))[0]
    truth_heights = truth_chain_heights(true, can.spacing)
    scores: list[BodyScore] = []
    matched_pred: set[int] = set()
    for t in sorted(int(v) for v in np.unique(true) if v > 0):
        tm = true == t
        overlap = pred[tm]
        cand = [int(v) for v in np.unique(overlap) if v > 0]
        best, best_dice = None, 0.0
        for p in cand:
            pm = pred == p
            dice = 2.0 * float((tm & pm).sum()) / float(tm.sum() + pm.sum())
            if dice > best_dice:
                best, best_dice = p, dice
        err = None
        grade = None
        if best is not None and best_dice >= 0.5:
            matched_pred.add(best)
            ht = truth_heights[t]
            body = seg.body(names.get(best, ""))
            if (
                body is not None
                and body.ha_mm is not None
                and body.hm_mm is not None
                and body.hp_mm is not None
            ):
                err = (abs(body.ha_mm - ht.ha_mm), abs(body.hm_mm - ht.hm_mm), abs(body.hp_mm - ht.hp_mm))
                grade = body.genant_grade
        scores.append(
            BodyScore(
                names.get(t, str(t)),
                names.get(best) if best_dice >= 0.5 and best else None,
                best_dice,
                err,
                grade,
            )
        )
    invented = []
    for p in sorted(int(v) for v in np.unique(pred) if v > 0):
        if p in matched_pred:
            continue
        rows = np.nonzero((pred == p).any(axis=(0, 2)))[0]
        centre = float(rows.mean())
        if truth_rows.size and truth_rows.min() <= centre <= truth_rows.max():
            invented.append(names.get(p, str(p)))
    return CaseScore(
        name,
        tuple(scores),
        tuple(invented),
        len(seg.bodies),
        seg.labelling_certainty,
        seg.sacrum_in_view,
        seg.notes,
        seconds,
    )


def truth_chain_heights(true: np.ndarray, spacing: tuple[float, float, float]) -> dict[int, Heights]:
    """Heights of the truth bodies, measured exactly as the analysis measures its own."""
    labels = sorted(int(v) for v in np.unique(true) if v > 0)
    grid_si = np.arange(true.shape[1])[None, :, None] * spacing[1]
    grid_ap = np.arange(true.shape[2])[None, None, :] * spacing[2]
    cents = []
    for t in labels:
        m = true == t
        cents.append((float((grid_si * m).sum() / m.sum()), float((grid_ap * m).sum() / m.sum())))
    order = sorted(range(len(labels)), key=lambda i: cents[i][0])
    axes = chain_axes([cents[i] for i in order])
    return {
        labels[i]: body_heights(true == labels[i], spacing, ax) for i, ax in zip(order, axes, strict=True)
    }


def load_model_file(path: Path) -> BodyModel:
    return model_from_bytes(lzma.decompress(path.read_bytes()))


def fold_models(fold_dir: Path) -> dict[str, BodyModel]:
    """Case name -> the fold model that never saw it."""
    out: dict[str, BodyModel] = {}
    for path in sorted(fold_dir.glob("fold_*.pkl.xz")):
        model = load_model_file(path)
        for case in model.held_out:
            out[case] = model
    return out


LUMBAR = ("L1", "L2", "L3", "L4", "L5")


def summarise(label: str, scores: list[CaseScore], levels_known: bool) -> None:
    bodies = [b for s in scores for b in s.bodies]
    lumbar = [b for b in bodies if b.truth_level in LUMBAR]
    found = [b for b in bodies if b.predicted_level is not None]
    dice = np.mean([b.dice for b in bodies]) if bodies else float("nan")
    lumbar_dice = np.mean([b.dice for b in lumbar]) if lumbar else float("nan")
    missed_lumbar = sum(1 for b in lumbar if b.predicted_level is None)
    invented = sum(len(s.invented) for s in scores)
    errs = np.array([b.height_error_mm for b in found if b.height_error_mm is not None])
    line = (
        f"{label:<10} cases={len(scores):2d} bodies found {len(found)}/{len(bodies)}"
        f" (lumbar missed {missed_lumbar}, invented {invented})  Dice mean {dice:.3f}"
        f" (lumbar {lumbar_dice:.3f})"
    )
    if errs.size:
        line += (
            f"  |dH| mm Ha {errs[:, 0].mean():.2f} Hm {errs[:, 1].mean():.2f} Hp {errs[:, 2].mean():.2f}"
            f" all {errs.mean():.2f}"
        )
    named = [b for b in found]
    if named:
        acc = np.mean([b.predicted_level == b.truth_level for b in named])
        line += f"  level names {'' if levels_known else '(vs assumed lowest=L5) '}{100 * acc:.1f}%"
    grades = [b.genant_grade for b in found if b.genant_grade is not None]
    if grades:
        line += f"  grade>0: {sum(g > 0 for g in grades)}/{len(grades)}"
    print(line, flush=True)


def print_case(case: str, s: CaseScore) -> None:
    per = " ".join(
        f"{b.truth_level}:{b.dice:.2f}"
        + ("" if b.predicted_level == b.truth_level else f"→{b.predicted_level}")
        for b in s.bodies
    )
    print(
        f"{case:<8} pred={s.n_predicted:2d} cert={s.certainty:.2f} sacrum={'y' if s.sacrum_in_view else 'n'}"
        f" {s.seconds:4.1f}s invented={list(s.invented)} | {per}",
        flush=True,
    )
    for n in s.notes:
        print(f"           note: {n}")


def main() -> None:
    parser = argparse.ArgumentParser(description="Evaluate vertebral-body analysis on the shared real cases")
    parser.add_argument("--fold-dir", type=Path, default=WEIGHTS / "folds")
    parser.add_argument("--cases", nargs="*", default=None)
    args = parser.parse_args()
    models = fold_models(args.fold_dir)
    entries = [e for e in list_cases() if args.cases is None or e["case"] in args.cases]
    by_dataset: dict[str, list[CaseScore]] = {}
    all_scores: list[CaseScore] = []
    for e in entries:
        if e["case"] not in models:
            raise SystemExit(f"no fold model holds out {e['case']}: run scripts/train_vertebrae.py")
        case = load_case(e)
        s = evaluate(case.volumes, case.truth, models[e["case"]], case.name)
        print_case(case.name, s)
        by_dataset.setdefault(case.dataset, []).append(s)
        all_scores.append(s)
    # the two-contrast study: T1 and STIR of one patient together
    pair = [e for e in entries if e["case"] in ("VB1_02", "VB1_03")]
    if len(pair) == 2:
        a, b = load_case(pair[0]), load_case(pair[1])
        s = evaluate(a.volumes | b.volumes, a.truth, models[pair[0]["case"]], "VB1_02+03")
        print_case("T1+STIR", s)
        by_dataset["VB1 T1+STIR"] = [s]
    print()
    for ds, scores in sorted(by_dataset.items()):
        summarise(ds, scores, ds in ("VB2", "VB3"))
    summarise("overall", all_scores, False)


if __name__ == "__main__":
    main()
