"""Evaluate the vertebral-body analysis: shared real cases (cross-validated) and phantoms.

Real cases: each is wrapped as a clinical sagittal DICOM series with 3 mm
slices, written and read back as the node does (``--no-dicom``: read the NIfTI
directly, faster), and analysed by the fold model that never saw its patient.
Phantoms (``--phantoms N``, seeds 5000+, disjoint from the training phantoms'):
T1, T2 and STIR through DICOM with random compression fractures and lesions,
analysed by the production model; bodies found, Dice, level names, heights and
the Genant confusion (truth grade x reported grade) are printed.
``--signs`` then scores the signs of malignancy per sign and level through the
whole pipeline (``scripts/evaluate_signs.py --segmentation auto``; run that
script itself for the truth-mask rows and its other options).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from vertebrae_cases import (
    REPO,
    WEIGHTS,
    Case,
    fold_of_groups,
    list_cases,
    load_case,
    load_case_dicom,
)

from analysis.sitk_adapter import resample_like
from analysis.vertebrae.geometry import canonical_of
from analysis.vertebrae.levels import VERSE_LABELS
from analysis.vertebrae.measure import UNGRADED_LEVELS, Heights, deformities, label_map_heights
from analysis.vertebrae.model import BodyModel
from analysis.vertebrae.pipeline import segment_spine, touches_fov_edge
from analysis.volume import Sequence, Volume
from node.pipeline.model import FOLDS_DIR, fold_models, load_ensemble

SCT = REPO.parent / "shared" / "data" / "sct-t2-lumbar" / "t2_lumbar.nii.gz"

__all__ = ["REPO", "WEIGHTS", "Case", "fold_of_groups", "list_cases", "load_case", "load_case_dicom"]

# ---------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class BodyScore:
    truth_level: str
    predicted_level: str | None
    dice: float
    height_error_mm: tuple[float, float, float] | None  # |pred - truth| for Ha, Hm, Hp
    genant_grade: int | None
    height_loss_pct: float | None


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
    truth_grades: dict[str, tuple[int | None, float | None]]  # grade and loss on the truth masks


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
    if not seg.labels.same_grid(truth):
        truth = resample_like(truth, seg.labels, labels=True)
    can = canonical_of(seg.labels)
    pred = can.to_canonical(np.asarray(seg.labels.array))
    true = can.to_canonical(np.asarray(truth.array))
    names = {v: k for k, v in VERSE_LABELS.items()}
    truth_rows = np.nonzero(true.any(axis=(0, 2)))[0]
    truth_heights = label_map_heights(np.asarray(true, dtype=np.int16), can.spacing)
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
        grade, loss = None, None
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
                grade, loss = body.genant_grade, body.height_loss_pct
        scores.append(
            BodyScore(
                names.get(t, str(t)),
                names.get(best) if best_dice >= 0.5 and best else None,
                best_dice,
                err,
                grade,
                loss,
            )
        )
    invented = []
    s1 = VERSE_LABELS["S1"]
    for p in sorted(int(v) for v in np.unique(pred) if v > 0):
        # a truth without S1 (VB2, VB3 label T11/L1-L5 only) cannot judge a reported S1
        if p in matched_pred or (p == s1 and not (true == s1).any()):
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
        truth_grades(true, truth_heights, names),
    )


def truth_grades(
    true: np.ndarray, heights: dict[int, Heights], names: dict[int, str]
) -> dict[str, tuple[int | None, float | None]]:
    """Genant grade and height loss the analysis's measurement gives on the truth masks."""
    graded = [
        t for t in sorted(heights) if names.get(t) not in UNGRADED_LEVELS and not touches_fov_edge(true == t)
    ]
    defs = deformities([names.get(t, str(t)) for t in graded], [heights[t] for t in graded])
    return {
        names.get(t, str(t)): (d.genant_grade, d.height_loss_pct) for t, d in zip(graded, defs, strict=True)
    }


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
        assumed = "" if levels_known else "(VB1: lowest labelled body taken as S1) "
        line += f"  level names {assumed}{100 * acc:.1f}%"
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


def _pct(loss: float | None) -> str:
    return "unmeasured" if loss is None else f"{loss:.1f} %"


def phantom_section(n: int, model: BodyModel, dicom: bool) -> None:
    """Phantoms with random fractures and lesions: bodies, Dice, names, heights, Genant confusion."""
    from phantom_cases import EVAL_PHANTOM_SEED, phantom_study, study_volumes
    from vertebrae_cases import through_dicom

    scores: list[CaseScore] = []
    confusion = np.zeros((4, 5), dtype=int)  # truth grade 0-3 x reported 0-3 / unmeasured
    on_truth = np.zeros((4, 5), dtype=int)  # the same, measured on the truth masks
    graded: list[str] = []  # every implanted fracture and every false one, with its three losses
    for seed in range(EVAL_PHANTOM_SEED, EVAL_PHANTOM_SEED + n):
        study = phantom_study(seed)
        volumes = through_dicom(list(study.series), seed) if dicom else study_volumes(study)
        s = evaluate(volumes, study.labels, model, f"ph{seed}")
        print_case(f"ph{seed}", s)
        fx = ", ".join(
            f"{f['label']}:g{f['grade']}:{f['pattern']}:{f['shape']}"
            for f in study.truth["spec"]["fractures"]
        )
        print(f"           implants: fractures [{fx}] lesions {len(study.truth['spec']['lesions'])}")
        truth_grade = {lv["level"]: int(lv["genant_grade"]) for lv in study.truth["levels"]}
        truth_loss = {lv["level"]: float(lv["height_loss_pct"]) for lv in study.truth["levels"]}
        for b in s.bodies:
            # T11 is cut by the top of the phantom's field of view and S1 is never graded
            if b.truth_level not in ("T12", "L1", "L2", "L3", "L4", "L5"):
                continue
            g = truth_grade.get(b.truth_level, 0)
            got = 4 if b.genant_grade is None or b.predicted_level != b.truth_level else b.genant_grade
            confusion[g, got] += 1
            tg, tl = s.truth_grades.get(b.truth_level, (None, None))
            on_truth[g, 4 if tg is None else tg] += 1
            if g or got:
                graded.append(
                    f"{'right' if got == g else 'MISS '} ph{seed} {b.truth_level}"
                    f" implanted {g} ({truth_loss.get(b.truth_level, 0.0):.1f} %)"
                    f" got {b.genant_grade} ({_pct(b.height_loss_pct)}), on the truth masks {tg} ({_pct(tl)})"
                )
        scores.append(s)
    print()
    summarise("phantoms", scores, True)
    print("Genant confusion, T12-L5 (rows truth 0-3, columns reported 0 1 2 3 unmeasured/misnamed):")
    for g in range(4):
        print(f"  truth {g}: {' '.join(f'{v:3d}' for v in confusion[g])}")
    fractured = confusion[1:].sum()
    right = sum(confusion[g, g] for g in range(1, 4))
    print(
        f"  fractures graded right {right}/{fractured}; normal bodies reported grade 0"
        f" {confusion[0, 0]}/{confusion[0].sum()} (false fracture {confusion[0, 1:4].sum()})"
    )
    for line in graded:
        print(f"  {line}")
    print("The same measurement on the truth masks (what perfect segmentation would grade):")
    for g in range(4):
        print(f"  truth {g}: {' '.join(f'{v:3d}' for v in on_truth[g])}")
    print(f"  fractures graded right {sum(on_truth[g, g] for g in range(1, 4))}/{on_truth[1:].sum()}")


def sct_section(model: BodyModel) -> None:
    """The normal SCT T2 (no truth): every body it reports and its grade, at 1 mm and 3 mm slices."""
    import SimpleITK as sitk

    from analysis.sitk_adapter import take_every_nth_sagittal, volume_from_image

    if not SCT.exists():
        print("SCT T2 not present")
        return
    volume = volume_from_image(sitk.ReadImage(str(SCT)))
    for step in (1, 3):  # as stored, and as a clinical 3 mm series
        seg = segment_spine({Sequence.T2: take_every_nth_sagittal(volume, step)}, model)
        grades = [
            "unmeasured" if b.genant_grade is None else f"g{b.genant_grade}({b.height_loss_pct}%)"
            for b in seg.bodies
        ]
        per = " ".join(f"{b.level}:{g}" for b, g in zip(seg.bodies, grades, strict=True))
        print(f"SCT T2 {step} mm slices: bodies={len(seg.bodies)} cert={seg.labelling_certainty:.2f} | {per}")
        for n in seg.notes:
            print(f"           note: {n}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--fold-dir", type=Path, default=FOLDS_DIR, help="fold networks (the product averages them)"
    )
    parser.add_argument("--cases", nargs="*", default=None)
    parser.add_argument("--no-real", action="store_true", help="skip the shared real cases")
    parser.add_argument("--no-dicom", action="store_true", help="read volumes directly (no DICOM round trip)")
    parser.add_argument("--phantoms", type=int, default=30, help="evaluation phantoms (seeds 5000+)")
    parser.add_argument(
        "--signs", action="store_true", help="also score the signs (evaluate_signs.py --segmentation auto)"
    )
    args = parser.parse_args()
    dicom = not args.no_dicom
    if not args.no_real:
        real_section(args.fold_dir, args.cases, dicom)
    production = load_ensemble(args.fold_dir)
    if args.phantoms:
        print()
        phantom_section(args.phantoms, production, dicom)
    print()
    sct_section(production)
    if args.signs:
        import evaluate_signs

        evaluate_signs.main(["--segmentation", "auto", "--studies", "30", "--phantoms", "24"])


def real_section(fold_dir: Path, cases: list[str] | None, dicom: bool) -> None:
    models = fold_models(fold_dir)
    entries = [e for e in list_cases() if cases is None or e["case"] in cases]
    load = load_case_dicom if dicom else load_case
    by_dataset: dict[str, list[CaseScore]] = {}
    all_scores: list[CaseScore] = []
    loaded: dict[str, Case] = {}
    for e in entries:
        if e["case"] not in models:
            raise SystemExit(f"no fold model holds out {e['case']}: run scripts/train_vertebrae.py")
        case = load(e)
        loaded[case.name] = case
        s = evaluate(case.volumes, case.truth, models[e["case"]], case.name)
        print_case(case.name, s)
        by_dataset.setdefault(case.dataset, []).append(s)
        all_scores.append(s)
    # the two-contrast study: T1 and STIR of one patient together
    if "VB1_02" in loaded and "VB1_03" in loaded:
        a, b = loaded["VB1_02"], loaded["VB1_03"]
        s = evaluate(a.volumes | b.volumes, a.truth, models["VB1_02"], "VB1_02+03")
        print_case("T1+STIR", s)
        by_dataset["VB1 T1+STIR"] = [s]
    print()
    for ds, scores in sorted(by_dataset.items()):
        summarise(ds, scores, ds in ("VB2", "VB3"))
    summarise("overall", all_scores, False)


if __name__ == "__main__":
    main()
