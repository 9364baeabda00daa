"""Score the whole pipeline on the frozen challenge set of issue 19 (``challenge/frozen.toml``).

Each study is built in a temporary folder (never committed), written as DICOM,
read back and analysed by the same code as ``lumbar-sentinel analyze``
(``node.study.group_dicom_folder`` -> ``node.pipeline.inputs.load_inputs`` ->
``node.pipeline.run.analyse`` with the shipped model), then compared with the
truth per level. Prints issue 19's targets: suspicious levels with T1 plus T2
or STIR against one sequence, present levels on normal spines, cortex and
soft tissue for extension >= 5 mm, canal compromise, Dice and level names, and
detection against extension thickness and lesion contrast.

With ``--cache DIR`` each study's segmentation (``segment_spine``, the slow part) is kept in DIR
and reused by the next run, which then runs the rest of ``analyse`` (the signs and the summary,
the same functions: ``node.pipeline.run.analyse_segmented``). Cached segmentations are keyed by
a digest of ``analysis/vertebrae`` (code and weights), so a change there computes them again.

Usage: python scripts/evaluate_challenge.py [--set a|b] [--only NAME_PREFIX ...] [--json OUT.json]
                                            [--cache DIR]
       python scripts/evaluate_challenge.py --report PART1.json PART2.json  (tables from saved runs)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pickle
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from analysis import vertebrae
from analysis.results import SignState
from analysis.sitk_adapter import resample_like
from analysis.vertebrae.pipeline import segment_spine
from analysis.volume import Sequence
from challenge.build import FROZEN_SETS, ChallengeStudy, build_study, load_recipes
from node.pipeline.inputs import StudyInputs, load_inputs
from node.pipeline.model import shipped_model
from node.pipeline.run import AnalysisOutput, analyse, analyse_segmented
from node.study import group_dicom_folder
from phantom.writer import StudyIdentity, write_study

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
EXTENSION_MIN_MM = 5.0
THICKNESS_BINS = ((3.0, 5.0), (5.0, 8.0), (8.0, 11.0), (11.0, 15.5))
CONTRAST_BINS = ((0.0, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.01))


def group_of(sequences: Iterable[Sequence]) -> str:
    seqs = set(sequences)
    return "multi" if Sequence.T1 in seqs and seqs & {Sequence.T2, Sequence.STIR} else "single"


def _dice(truth: np.ndarray, pred: np.ndarray) -> list[dict[str, Any]]:
    out = []
    for v in (int(x) for x in np.unique(truth) if x > 0):
        t = truth == v
        under = pred[t]
        under = under[under > 0]
        if under.size == 0:
            out.append({"level": v, "dice": 0.0, "found": False, "named": False})
            continue
        w = int(np.bincount(under).argmax())
        p = pred == w
        dice = 2.0 * float((t & p).sum()) / float(t.sum() + p.sum())
        out.append({"level": v, "dice": dice, "found": dice >= 0.5, "named": dice >= 0.5 and w == v})
    return out


def segmentation_code_key() -> str:
    """A digest of the code and weights ``segment_spine`` runs on: a cached segmentation is
    only reused while it is the same (any change under ``analysis/vertebrae`` misses the cache)."""
    digest = hashlib.sha256()
    root = Path(vertebrae.__file__).parent
    for path in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def analyse_cached(inputs: StudyInputs, path: Path) -> AnalysisOutput:
    """``node.pipeline.run.analyse`` with the segmentation read from (or written to) ``path``."""
    if path.is_file():
        segmentation = pickle.loads(path.read_bytes())
    else:
        segmentation = segment_spine(inputs.volumes, shipped_model())
        path.write_bytes(pickle.dumps(segmentation))
    return analyse_segmented(inputs, segmentation)


def run_study(study: ChallengeStudy, seed: int, work: Path, cache: Path | None = None) -> dict[str, Any]:
    folder = work / study.name
    write_study(StudyIdentity.synthetic(seed), study.series, folder)
    (files,) = group_dicom_folder(folder).studies
    inputs = load_inputs(files)
    if cache is None:
        out = analyse(inputs, shipped_model())
    else:
        cache.mkdir(parents=True, exist_ok=True)
        out = analyse_cached(inputs, cache / f"{study.name}.{segmentation_code_key()}.pkl")
    findings = {lv.level: lv for lv in out.level_signs}
    levels = []
    for level, truth in study.truth.items():
        got = findings.get(level)

        def state(name: str, got: Any = got) -> str:
            return "missing" if got is None else str(getattr(got, name).value)

        levels.append(
            {
                "level": level,
                **vars(truth),
                "suspicious_got": state("suspicious_for_malignancy"),
                "marrow_got": state("marrow_infiltration"),
                "cortex_got": state("cortical_destruction"),
                "soft_got": state("soft_tissue_extension"),
                "canal_got": state("canal_compromise"),
            }
        )
    dice: list[dict[str, Any]] = []
    if study.labels is not None:
        pred = out.segmentation.labels
        if not pred.same_grid(study.labels):
            pred = resample_like(pred, study.labels, labels=True)
        dice = _dice(np.asarray(study.labels.array), np.asarray(pred.array).astype(np.int64))
    summary = out.findings.study
    return {
        "name": study.name,
        "kind": study.kind,
        "group": group_of(study.sequences),
        "sequences": [q.value for q in study.sequences],
        "normal": study.normal,
        "levels": levels,
        "present_levels": sorted(
            lv.level for lv in out.level_signs if lv.suspicious_for_malignancy == SignState.PRESENT
        ),
        "indeterminate_levels": sum(
            1 for lv in out.level_signs if lv.suspicious_for_malignancy == SignState.INDETERMINATE
        ),
        "multiple_got": summary.multiple_lesions.value,
        "canal_study_got": summary.canal_compromise.value,
        "dice": dice,
        "impression": summary.impression,
    }


def _frac(hit: int, n: int) -> str:
    return f"{hit}/{n} ({100.0 * hit / n:.1f} %)" if n else "0/0"


def _count(
    levels: list[dict[str, Any]],
    positive: Callable[[dict[str, Any]], bool],
    negative: Callable[[dict[str, Any]], bool],
    got: str,
) -> tuple[str, str]:
    pos = [lv for lv in levels if positive(lv)]
    neg = [lv for lv in levels if negative(lv)]
    return (
        _frac(sum(lv[got] == "present" for lv in pos), len(pos)),
        _frac(sum(lv[got] != "present" for lv in neg), len(neg)),
    )


def report(records: list[dict[str, Any]], out: Callable[[str], None]) -> None:
    def lv_of(group: str | None) -> list[dict[str, Any]]:
        return [
            dict(lv, study=r["name"]) for r in records if group in (None, r["group"]) for lv in r["levels"]
        ]

    out("\n| measure | T1 + T2/STIR (multi) | one sequence (single) |")
    out("| --- | --- | --- |")
    rows: dict[str, list[str]] = {}
    for group in ("multi", "single"):
        levels = lv_of(group)
        sens, spec = _count(
            levels, lambda lv: lv["suspicious"], lambda lv: not lv["suspicious"], "suspicious_got"
        )
        rows.setdefault("suspicious level, sensitivity", []).append(sens)
        rows.setdefault("suspicious level, specificity", []).append(spec)
        normals = [r for r in records if r["group"] == group and r["normal"]]
        n_present = sum(len(r["present_levels"]) for r in normals)
        flagged = [f"{r['name']}: {','.join(r['present_levels'])}" for r in normals if r["present_levels"]]
        rows.setdefault("present levels on normal spines (studies)", []).append(
            f"{n_present} on {len(flagged)} of {len(normals)} normal studies"
        )
        for sign, got in (("cortical destruction", "cortex_got"), ("soft-tissue extension", "soft_got")):
            s, p = _count(
                levels,
                lambda lv: lv["extension_mm"] >= EXTENSION_MIN_MM,
                lambda lv: lv["extension_mm"] == 0.0,
                got,
            )
            rows.setdefault(f"{sign}, sens (ext >= 5 mm)", []).append(s)
            rows.setdefault(f"{sign}, spec", []).append(p)
        s, p = _count(
            levels,
            lambda lv: lv["epidural"] and lv["extension_mm"] >= EXTENSION_MIN_MM,
            lambda lv: not lv["epidural"],
            "canal_got",
        )
        rows.setdefault("canal compromise (level), sens (epidural >= 5 mm)", []).append(s)
        rows.setdefault("canal compromise (level), spec", []).append(p)
        studies = [r for r in records if r["group"] == group]
        epi = [r for r in studies if any(lv["epidural"] for lv in r["levels"])]
        rows.setdefault("canal compromise (study), sens", []).append(
            _frac(sum(r["canal_study_got"] == "present" for r in epi), len(epi))
        )
        single = [r for r in studies if sum(lv["suspicious"] for lv in r["levels"]) < 2]
        rows.setdefault("multiple lesions (study), false", []).append(
            f"{sum(r['multiple_got'] == 'present' for r in single)} of {len(single)}"
        )
        dice = [d for r in studies for d in r["dice"]]
        found = [d for d in dice if d["found"]]
        rows.setdefault("vertebral bodies: found / mean Dice / names", []).append(
            f"{len(found)}/{len(dice)} / {np.mean([d['dice'] for d in found]) if found else 0:.3f} / "
            f"{_frac(sum(d['named'] for d in found), len(found))}"
        )
        if flagged:
            rows.setdefault("normal studies with a present level", []).append("; ".join(flagged))
        else:
            rows.setdefault("normal studies with a present level", []).append("none")
    for name, cells in rows.items():
        out(f"| {name} | {' | '.join(cells)} |")
    for kind in ("real", "synthetic"):
        dice = [d for r in records if r["kind"] == kind for d in r["dice"]]
        found = [d for d in dice if d["found"]]
        if dice:
            names = _frac(sum(d["named"] for d in found), len(found))
            mean = np.mean([d["dice"] for d in found])
            out(f"\n{kind} bodies: {len(found)}/{len(dice)} found, mean Dice {mean:.3f}, names {names}")
    curves(records, out)


def curves(records: list[dict[str, Any]], out: Callable[[str], None]) -> None:
    all_levels = [dict(lv, group=r["group"]) for r in records for lv in r["levels"]]
    out("\nDetection against extension thickness (levels with a mass; present / levels):")
    out("| thickness (mm) | group | cortex | soft tissue | canal (epidural only) |")
    out("| --- | --- | --- | --- | --- |")
    for lo, hi in THICKNESS_BINS:
        for group in ("multi", "single"):
            sel = [lv for lv in all_levels if lv["group"] == group and lo <= lv["extension_mm"] < hi]
            epi = [lv for lv in sel if lv["epidural"]]
            if not sel:
                continue
            cortex = _frac(sum(lv["cortex_got"] == "present" for lv in sel), len(sel))
            soft = _frac(sum(lv["soft_got"] == "present" for lv in sel), len(sel))
            canal = _frac(sum(lv["canal_got"] == "present" for lv in epi), len(epi))
            out(f"| {lo:g}-{hi:g} | {group} | {cortex} | {soft} | {canal} |")
    out("\nSuspicious level against lesion contrast (0 faint .. 1 conspicuous; present / lesion levels):")
    out("| contrast | T1 + T2/STIR | one sequence |")
    out("| --- | --- | --- |")
    for lo, hi in CONTRAST_BINS:
        cells = []
        for group in ("multi", "single"):
            sel = [
                lv
                for lv in all_levels
                if lv["group"] == group and lv["suspicious"] and lo <= lv["contrast"] < hi
            ]
            cells.append(_frac(sum(lv["suspicious_got"] == "present" for lv in sel), len(sel)))
        out(f"| {lo:.2f}-{min(hi, 1.0):.2f} | {' | '.join(cells)} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", choices=sorted(FROZEN_SETS), default="a",
                    help="which frozen set: a (frozen.toml, before tuning) or b (frozen-b.toml)")
    ap.add_argument("--only", nargs="*", default=None, help="study name prefixes to run")
    ap.add_argument("--json", type=Path, default=None, help="write every study's record here")
    ap.add_argument("--cache", type=Path, default=None, help="keep and reuse segmentations here")
    ap.add_argument(
        "--report",
        nargs="*",
        type=Path,
        default=None,
        help="print the tables from records saved by --json (no analysis)",
    )
    args = ap.parse_args(argv)
    if args.report:
        saved = [rec for path in args.report for rec in json.loads(path.read_text(encoding="utf-8"))]
        print(f"{len(saved)} studies from {', '.join(str(p) for p in args.report)}")
        report(saved, print)
        return 0
    header, recipes = load_recipes(FROZEN_SETS[args.set])
    if args.only:
        # in the order the prefixes are given: the most wanted studies first
        recipes = [r for p in args.only for r in recipes if r["name"].startswith(p)]
    print(f"challenge set seed {header['seed']}: {len(recipes)} studies", flush=True)
    records = []
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="lsent-challenge-") as tmp:
        for recipe in recipes:
            t0 = time.monotonic()
            study = build_study(recipe, DATA)
            rec = run_study(study, int(recipe["seed"]), Path(tmp), args.cache)
            records.append(rec)
            if args.json:  # after every study: a run stopped early keeps what it measured
                args.json.write_text(json.dumps(records, indent=1, default=str) + "\n", encoding="utf-8")
            got = {lv["level"]: lv["suspicious_got"][0] for lv in rec["levels"]}
            truth = "".join("L" if lv["suspicious"] else "." for lv in rec["levels"])
            print(
                f"{rec['name']:45s} {time.monotonic() - t0:5.1f} s truth {truth:9s} present "
                f"{','.join(rec['present_levels']) or '-'}  {got}",
                flush=True,
            )
    print(f"\n{len(records)} studies in {time.monotonic() - start:.0f} s")
    report(records, print)
    if args.json:
        args.json.write_text(json.dumps(records, indent=1, default=str) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
