"""Score the signs of malignancy per level against implanted truth.

Studies: the shared real volumes (every 3rd sagittal slice: 3 mm series),
untouched and with lesions / fractures implanted by ``phantom.implants``
at random levels and sizes. VB1_02 (T1) + VB1_03 (STIR) form the real
two-contrast study; the other cases are single-sequence (T2 or T2-like).

Phantom studies (``phantom.study.build_phantom``: T1, T2, STIR) are a
quarter normal, the rest implanted. Each study is also scored with sequences
left out (T1+STIR, T2 alone, T1 alone...), so single-sequence behaviour is
measured on the same lesions. VB3 (water-fat gradient echo) counts as DIXON.

Segmentation: ``--segmentation oracle`` uses the truth label maps (after
implantation, so collapsed bodies keep their truth shape) and measures heights
with ``analysis.vertebrae.measure`` (``--heights truth`` replaces the Genant
grade by the implanted one); ``--segmentation auto`` calls
:func:`auto_segmentation` (``analysis.vertebrae.segment_spine``); an abnormal
level it does not find, or names otherwise, counts as missed for each of its signs.
S1's compression and fracture pattern are not scored (the engine labels S1 but
does not grade it); its marrow, cortex, soft-tissue, pedicle and canal signs are.
``--sct`` runs the real T2 of sct-t2-lumbar through auto segmentation.

``--lateral N`` adds N studies of the real pair with a lesion through a body's side wall
(``LesionSpec(lateral=True)``), drawn from a generator of their own; ``--faint N`` N studies
of the real pair with a faint lesion (conspicuity 0.1-0.5), most with a mass, likewise;
``--mimics N`` N studies of the real pair with benign mimics (haemangioma, fat island, patchy
red marrow; ``phantom.mimics``) and no lesion, analysed with both sequences and each alone;
``--phantom-mimics N`` N normal phantom studies with mimics, analysed with and without T1.

Usage: python scripts/evaluate_signs.py [--studies N] [--phantoms N] [--lateral N] [--faint N]
       [--mimics N] [--phantom-mimics N] [--segmentation oracle|auto] [--set NAME=VALUE]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from vertebrae_cases import verse_truth

from analysis.results import BodyMeasurement, SignState, SpineSegmentation
from analysis.signs import LevelSigns, assess_signs
from analysis.sitk_adapter import take_every_nth_sagittal, take_every_nth_slice, volume_from_image
from analysis.thresholds import DEFAULT_THRESHOLDS, SignThresholds
from analysis.vertebrae.measure import UNGRADED_LEVELS
from analysis.volume import LABEL_LEVELS, LEVEL_LABELS, Sequence, Volume
from phantom.implants import (
    Extension,
    FracturePattern,
    FractureShape,
    FractureSpec,
    ImplantSpec,
    LesionKind,
    LesionSpec,
    implant,
)
from phantom.mimics import MimicKind, MimicSpec, paint_mimics

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
REAL = DATA / "real-lumbar-mri"
SLICE_STEP = 3
SIGNS = ("marrow_infiltration", "cortical_destruction", "soft_tissue_extension", "compression_fracture",
         "pathologic_fracture_pattern", "pedicle_involvement", "canal_compromise",
         "suspicious_for_malignancy")
T2_LIKE = {"VB1_10", "VB1_11", "VB1_15"} | {f"VB2_{i:02d}" for i in (2, 4, 5, 6, 7, 8, 9, 10)} | {
    f"VB3_{i:02d}" for i in range(1, 13)}
EXTRA_NAMES = {17: "T10", 16: "T9", 15: "T8"}


@dataclass
class Study:
    name: str
    images: dict[Sequence, np.ndarray]  # [k, j, i]
    labels: np.ndarray
    geometry: Volume  # grid (array ignored)

    @property
    def spacing_kji(self) -> tuple[float, float, float]:
        """Voxel size along the arrays' (k, j, i) axes, as ``implant`` and ``paint_mimics`` take it."""
        return self.geometry.spacing_kji


def _read(path: Path, step: int) -> Volume:
    return take_every_nth_slice(volume_from_image(sitk.ReadImage(str(path))), step)


def _verse_labels(labels: np.ndarray) -> np.ndarray:
    return verse_truth(labels, "VB1" if (labels >= 100).any() else "")


def load_pair(step: int = SLICE_STEP) -> Study:
    """The real two-contrast study: VB1_02 (T1) and VB1_03 (STIR)."""
    t1 = _read(REAL / "VB1_02_image.nii.gz", step)
    stir = _read(REAL / "VB1_03_image.nii.gz", step)
    la = _read(REAL / "VB1_02_labels.nii.gz", step).array
    lb = _read(REAL / "VB1_03_labels.nii.gz", step).array
    # the two series were labelled separately; keep voxels both agree on
    both = np.where(la == lb, la, 0).astype(np.int16)
    labels = _verse_labels(both)
    return Study("VB1_02+03", {Sequence.T1: t1.array, Sequence.STIR: stir.array}, labels, t1)


def load_real(step: int = SLICE_STEP, vb3_as_t2: bool = False) -> list[Study]:
    studies = [load_pair(step)]
    for case in sorted(T2_LIKE):
        img = _read(REAL / f"{case}_image.nii.gz", step)
        lab = _verse_labels(_read(REAL / f"{case}_labels.nii.gz", step).array.astype(np.int16))
        # VB3 is a water-fat gradient-echo source image: the node classifies it as
        # DIXON, not T2 (TR/TE outside the T2 band)
        seq = Sequence.T2 if case.startswith("VB1") or case.startswith("VB2") or vb3_as_t2 else Sequence.DIXON
        studies.append(Study(case, {seq: img.array}, lab, img))
    return studies


def level_name(label: int) -> str:
    names = dict(LABEL_LEVELS) | EXTRA_NAMES
    return names.get(label, str(label))


def oracle_segmentation(
    labels: np.ndarray, geometry: Volume, truth_grades: Mapping[int, tuple[int, float]] | None = None
) -> SpineSegmentation:
    """Truth label map as the segmentation; heights measured as the engine would.

    With ``truth_grades`` (label -> (Genant grade, height loss %)) the implanted
    truth replaces the measured grade ("oracle heights").
    """
    from analysis.signs.geometry import frame_of
    from analysis.vertebrae.measure import Deformity, deformities, label_map_heights

    lab_vol = geometry.with_array(labels.astype(np.int16))
    frame = frame_of(lab_vol)
    canon = np.asarray(frame.to_canonical(labels), dtype=np.int16)
    by_label = label_map_heights(canon, frame.spacing)
    order, heights = list(by_label), list(by_label.values())
    names = [level_name(v) for v in order]
    defs = deformities(names, heights)
    if truth_grades is not None:
        tg = [truth_grades.get(v, (0, 0.0)) for v in order]
        defs = [Deformity(d.expected_height_mm, t[1], t[0]) for t, d in zip(tg, defs, strict=True)]
    bodies = tuple(
        BodyMeasurement(
            level=n, label=v, centroid_lps=(0.0, 0.0, 0.0), ha_mm=h.ha_mm, hm_mm=h.hm_mm, hp_mm=h.hp_mm,
            expected_height_mm=d.expected_height_mm, height_loss_pct=d.height_loss_pct,
            genant_grade=d.genant_grade, volume_ml=float((canon == v).sum()) * frame.voxel_ml,
        )
        for n, v, h, d in zip(names, order, heights, defs, strict=True)
    )
    return SpineSegmentation(lab_vol, bodies, 1.0, False, ("oracle segmentation",))




def _model_for(case: str) -> Any:
    """The fold model that never saw ``case`` (real volumes), else the production model."""
    from node.pipeline.model import fold_models, shipped_model

    base = case.split("#")[0].split("+")[0]
    folds = fold_models()
    return folds[base] if base in folds else shipped_model()


def auto_segmentation(case: str, images: Mapping[Sequence, Volume]) -> SpineSegmentation:
    """The vertebrae engine's segmenter (analysis.vertebrae.pipeline.segment_spine)."""
    from analysis.vertebrae.pipeline import segment_spine

    return segment_spine(images, _model_for(case))


def random_spec(labels: np.ndarray, rng: np.random.Generator) -> ImplantSpec:
    present = [int(v) for v in np.unique(labels) if v > 0]
    n = int(rng.choice([1, 1, 2, 3]))
    chosen = rng.choice(present, size=min(n, len(present)), replace=False)
    lesions: list[LesionSpec] = []
    fractures: list[FractureSpec] = []
    for lab in (int(v) for v in chosen):
        # fractures twice as often: the benign/malignant pattern needs its own count
        kind = rng.choice(["focal", "focal_para", "focal_epi", "diffuse", "diffuse_epi", "benign_fx",
                           "malignant_fx", "focal_pedicle", "benign_fx", "malignant_fx"])
        if kind == "focal":
            lesions.append(LesionSpec(lab, LesionKind.FOCAL, radius_mm=float(rng.uniform(4.0, 10.0))))
        elif kind == "focal_para":
            lesions.append(LesionSpec(lab, LesionKind.FOCAL, Extension.PARAVERTEBRAL))
        elif kind == "focal_epi":
            lesions.append(LesionSpec(lab, LesionKind.FOCAL, Extension.EPIDURAL))
        elif kind == "focal_pedicle":
            lesions.append(LesionSpec(lab, LesionKind.FOCAL, Extension.EPIDURAL, pedicles=True))
        elif kind == "diffuse":
            lesions.append(LesionSpec(lab, LesionKind.DIFFUSE))
        elif kind == "diffuse_epi":
            lesions.append(LesionSpec(lab, LesionKind.DIFFUSE, Extension.EPIDURAL))
        else:
            fractures.append(FractureSpec(
                lab, int(rng.integers(1, 4)), FractureShape(rng.choice(list(FractureShape))),
                FracturePattern.BENIGN if kind == "benign_fx" else FracturePattern.MALIGNANT,
                fluid_sign=bool(rng.random() < 0.5)))
    return ImplantSpec(tuple(lesions), tuple(fractures))


@dataclass
class Tally:
    counts: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    pattern: Counter[str] = field(default_factory=Counter)
    untouched_flagged: list[str] = field(default_factory=list)
    study: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))

    def add(self, sign: str, truth: str, state: SignState) -> None:
        key = ("P" if truth == "present" else "N") + (
            "p" if state == SignState.PRESENT else ("i" if state == SignState.INDETERMINATE else "n"))
        self.counts[sign][key] += 1


@dataclass(frozen=True)
class TruthView:
    """Implant truth (``truth_dict()`` form) looked up by label."""

    levels: dict[int, dict[str, Any]]
    study: dict[str, Any]

    @classmethod
    def from_dict(cls, truth: Mapping[str, Any]) -> TruthView:
        levels = {int(lv["label"]): dict(lv) for lv in truth["levels"]}
        return cls(levels, dict(truth["study"]))

    def level(self, label: int) -> dict[str, Any]:
        return self.levels.get(label, {})


def _state(ls: LevelSigns, sign: str) -> SignState:
    return SignState(getattr(ls, sign))


# the engine labels S1 but does not grade it: its fracture signs are not scored
_NOT_GRADED = {LEVEL_LABELS[name] for name in UNGRADED_LEVELS}
_FRACTURE_SIGNS = ("compression_fracture", "pathologic_fracture_pattern")


def _scored(label: int, sign: str) -> bool:
    return not (label in _NOT_GRADED and sign in _FRACTURE_SIGNS)


def score(tally: Tally, signs: tuple[LevelSigns, ...], truth: TruthView | None, name: str) -> None:
    by_label = {ls.label: ls for ls in signs}
    for lab, ls in by_label.items():
        tv = truth.level(lab) if truth is not None else {}
        for sign in SIGNS:
            if _scored(lab, sign):
                tally.add(sign, str(tv.get(sign, "absent")), _state(ls, sign))
        if tv.get("compression_fracture") == "present" and _scored(lab, "compression_fracture"):
            called = ls.pathologic_fracture_pattern
            want = tv.get("pathologic_fracture_pattern")
            ok = (called == SignState.PRESENT) == (want == "present")
            tally.pattern["right" if ok else "wrong"] += 1
            if called == SignState.INDETERMINATE:
                tally.pattern["indeterminate"] += 1
        if truth is None and ls.suspicious_for_malignancy == SignState.PRESENT:
            tally.untouched_flagged.append(f"{name}:{ls.level}")
    # an abnormal level the segmentation did not find (or named otherwise) is a miss of every
    # sign it has; its pattern, if fractured, is not right either
    for lab, tv in ({} if truth is None else truth.levels).items():
        if lab in by_label:
            continue
        for sign in SIGNS:
            if tv.get(sign) == "present" and _scored(lab, sign):
                tally.add(sign, "present", SignState.ABSENT)
        if tv.get("compression_fracture") == "present" and _scored(lab, "compression_fracture"):
            tally.pattern["wrong"] += 1


def phantom_runs(n: int, rng: np.random.Generator) -> Iterator[tuple[str, Study, TruthView | None]]:
    """Phantom studies (T1, T2, STIR): a quarter normal, the rest implanted."""
    from phantom import render
    from phantom.study import build_phantom

    grid = render.SagittalGrid()
    place = render.Placement(fov_si_mm=grid.rows * grid.pixel_mm, fov_ap_mm=grid.cols * grid.pixel_mm)
    _, anatomy = render.sagittal_tissue(render.default_spine(grid, place), grid, 1)  # to draw specs from
    for i in range(n):
        normal = i % 4 == 0
        spec = ImplantSpec() if normal else random_spec(anatomy, rng)
        ph = build_phantom(spec, rng, supersample=1)
        images = {s.sequence: s.pixels for s in ph.series}
        study = Study(f"phantom#{i}", images, np.asarray(ph.labels.array), ph.labels)
        yield study.name, study, None if normal else TruthView.from_dict(ph.truth)


def real_runs(
    studies: list[Study], n_implanted: int, rng: np.random.Generator
) -> Iterator[tuple[str, Study, TruthView | None]]:
    for st in studies:
        yield st.name, st, None
    multi = [s for s in studies if len(s.images) > 1]
    single = [s for s in studies if len(s.images) == 1]
    for i in range(n_implanted):
        pool = multi if i % 2 == 0 or not single else single
        st = pool[int(rng.integers(len(pool)))]
        result = implant(st.images, st.labels, st.spacing_kji, random_spec(st.labels, rng), rng)
        implanted = Study(f"{st.name}#{i}", dict(result.images), result.labels, st.geometry)
        yield implanted.name, implanted, TruthView.from_dict(result.truth_dict())


# the pair's levels a development lesion of its own source is drawn in
_PAIR_LEVELS = tuple(LEVEL_LABELS[lv] for lv in ("T12", "L1", "L2", "L3", "L4", "L5"))


def _pair_runs(
    pair: Study, tag: str, specs: Iterator[ImplantSpec], rng: np.random.Generator
) -> Iterator[tuple[str, Study, TruthView | None]]:
    """The real T1+STIR pair with each of ``specs`` implanted. ``specs`` is drawn lazily from
    the same ``rng`` as the implants, one spec before each implant."""
    for i, spec in enumerate(specs):
        result = implant(pair.images, pair.labels, pair.spacing_kji, spec, rng)
        implanted = Study(f"{pair.name}~{tag}{i}", dict(result.images), result.labels, pair.geometry)
        yield implanted.name, implanted, TruthView.from_dict(result.truth_dict())


def lateral_runs(
    pair: Study, n: int, rng: np.random.Generator
) -> Iterator[tuple[str, Study, TruthView | None]]:
    """The real T1+STIR pair with one lesion through a body's side wall and a mass beside it.

    The development lesions above break the front or back wall on the midline; metastases sit
    in the body's posterolateral part more often, and a side that is all tumour leaves whole
    sagittal slices of it.
    """
    specs = (ImplantSpec((LesionSpec(_PAIR_LEVELS[int(rng.integers(len(_PAIR_LEVELS)))], LesionKind.FOCAL,
                                     Extension.PARAVERTEBRAL, extension_mm=float(rng.uniform(5.0, 15.0)),
                                     lateral=True),))
             for _ in range(n))
    return _pair_runs(pair, "side", specs, rng)


def _faint_spec(rng: np.random.Generator) -> ImplantSpec:
    kind = (LesionKind.FOCAL, LesionKind.DIFFUSE)[int(rng.integers(2))]
    extensions = (Extension.NONE, Extension.EPIDURAL, Extension.PARAVERTEBRAL)
    ext = extensions[int(rng.integers(len(extensions)))]
    return ImplantSpec((LesionSpec(
        _PAIR_LEVELS[int(rng.integers(len(_PAIR_LEVELS)))], kind, ext,
        extension_mm=float(rng.uniform(5.0, 15.0)) if ext != Extension.NONE else None,
        conspicuity=float(rng.uniform(0.1, 0.5))),))


def faint_runs(
    pair: Study, n: int, rng: np.random.Generator
) -> Iterator[tuple[str, Study, TruthView | None]]:
    """The real T1+STIR pair with one faint lesion (conspicuity 0.1-0.5), focal or diffuse, most
    with an epidural or paravertebral mass of 5-15 mm.

    The lesions of ``random_spec`` carry the tumour's full signal; a faint one has no voxel that
    stands out from its own body's marrow, and its mass is no brighter than the body."""
    return _pair_runs(pair, "faint", (_faint_spec(rng) for _ in range(n)), rng)


def _with_mimics(study: Study, tag: str, rng: np.random.Generator) -> tuple[str, Study]:
    """``study`` with one to three benign mimics in different lumbar bodies (T12-L5)."""
    present = [lb for lb in _PAIR_LEVELS if (study.labels == lb).any()]
    kinds = tuple(MimicKind)
    picked = rng.choice(len(present), size=min(int(rng.integers(1, 4)), len(present)), replace=False)
    specs = [MimicSpec(present[int(p)], kinds[int(rng.integers(len(kinds)))]) for p in picked]
    images = paint_mimics(study.images, study.labels, study.spacing_kji, specs, rng)
    what = "+".join(f"{LABEL_LEVELS[s.label]}:{s.kind}" for s in specs)
    return f"{study.name}~{tag}({what})", Study(f"{study.name}~{tag}", images, study.labels, study.geometry)


def mimic_runs(
    pair: Study, n: int, rng: np.random.Generator
) -> Iterator[tuple[str, Study, TruthView | None]]:
    """The real T1+STIR pair with one to three benign mimics (``phantom.mimics``) and no lesion.

    The pair's own marrow is homogeneous fatty marrow: without mimics, the specificity measured
    on it says nothing about the haemangiomas, fat islands and red marrow of real spines."""
    for i in range(n):
        name, study = _with_mimics(pair, f"mimic{i}", rng)
        yield name, study, None


def phantom_mimic_runs(n: int, rng: np.random.Generator) -> Iterator[tuple[str, Study, TruthView | None]]:
    """Normal phantom studies (T1, T2, STIR) with one to three benign mimics: the T2 the real
    pair lacks, alone and with T1."""
    from phantom.study import build_phantom

    for i in range(n):
        ph = build_phantom(ImplantSpec(), rng, supersample=1)
        normal = Study(f"phantom-mimic#{i}", {s.sequence: s.pixels for s in ph.series},
                       np.asarray(ph.labels.array), ph.labels)
        name, study = _with_mimics(normal, "m", rng)
        yield name, study, None


SUBSETS: dict[str, tuple[tuple[Sequence, ...], ...]] = {
    # which sequence subsets each source is analysed with
    "phantom": ((Sequence.T1, Sequence.T2, Sequence.STIR), (Sequence.T1, Sequence.STIR),
                (Sequence.T1, Sequence.T2), (Sequence.T2,), (Sequence.T1,)),
    "real": ((Sequence.T1, Sequence.STIR), (Sequence.T2,), (Sequence.T1,), (Sequence.STIR,),
             (Sequence.DIXON,)),
    "real side wall": ((Sequence.T1, Sequence.STIR),),
    "real faint": ((Sequence.T1, Sequence.STIR),),
    "real mimics": ((Sequence.T1, Sequence.STIR), (Sequence.T1,), (Sequence.STIR,)),
    "phantom mimics": ((Sequence.T1, Sequence.T2, Sequence.STIR), (Sequence.T1, Sequence.T2), (Sequence.T2,),
                       (Sequence.STIR,)),
}


def analyse(study: Study, truth: TruthView | None, seqs: tuple[Sequence, ...],
            args: argparse.Namespace, thresholds: SignThresholds) -> tuple[LevelSigns, ...]:
    vols = {q: study.geometry.with_array(study.images[q]) for q in seqs}
    if args.segmentation == "oracle":
        grades = None
        if args.heights == "truth":
            grades = {} if truth is None else {
                lab: (int(lv["genant_grade"]), float(lv["height_loss_pct"]))
                for lab, lv in truth.levels.items()}
        seg = oracle_segmentation(study.labels, study.geometry, grades)
    else:
        seg = auto_segmentation(study.name, vols)
    regions = None
    if args.regions == "vertebrae":
        from analysis.signs import regions_from_levels
        from analysis.vertebrae import reference_regions

        ref = vols.get(Sequence.T1) or next(iter(vols.values()))
        regions = regions_from_levels(reference_regions(seg, ref))
    return assess_signs(vols, seg, regions, thresholds)


def _misses(signs: tuple[LevelSigns, ...], truth: TruthView | None) -> str:
    """Signs called differently from the truth, as "L3 cortical_destruction t=p/c=a"."""
    out = []
    for ls in signs:
        tv = truth.level(ls.label) if truth is not None else {}
        for sign in SIGNS:
            want, got = str(tv.get(sign, "absent")), str(_state(ls, sign))
            if (want == "present") != (got == "present"):
                out.append(f"{ls.level} {sign} t={want[0]}/c={got[0]}")
    return ("  MISS " + "; ".join(out)) if out else ""


def run(args: argparse.Namespace, out: Callable[[str], None]) -> dict[str, Tally]:
    rng = np.random.default_rng(args.seed)
    thresholds = dataclasses.replace(DEFAULT_THRESHOLDS, **dict(args.set))
    tallies: dict[str, Tally] = defaultdict(Tally)
    sources: list[tuple[str, Iterator[tuple[str, Study, TruthView | None]]]] = []
    real = load_real() if args.real else []
    if args.real:
        sources.append(("real", real_runs(real, args.studies, rng)))
    if args.phantoms:
        sources.append(("phantom", phantom_runs(args.phantoms, rng)))
    pair = (real[0] if real else load_pair()) if args.lateral or args.faint or args.mimics else None
    # generators of their own, so that the other sources draw what they always drew
    if pair is not None and args.lateral:
        side_rng = np.random.default_rng(args.seed + 1)
        sources.append(("real side wall", lateral_runs(pair, args.lateral, side_rng)))
    if pair is not None and args.faint:
        faint_rng = np.random.default_rng(args.seed + 2)
        sources.append(("real faint", faint_runs(pair, args.faint, faint_rng)))
    if pair is not None and args.mimics:
        sources.append(("real mimics", mimic_runs(pair, args.mimics, np.random.default_rng(args.seed + 3))))
    if args.phantom_mimics:
        sources.append(("phantom mimics", phantom_mimic_runs(args.phantom_mimics,
                                                             np.random.default_rng(args.seed + 4))))
    for source, runs in sources:
        for name, study, truth in runs:
            for seqs in SUBSETS[source]:
                if not all(q in study.images for q in seqs):
                    continue
                signs = analyse(study, truth, seqs, args, thresholds)
                key = f"{source} {'+'.join(seqs)}"
                tally = tallies[key]
                score(tally, signs, truth, name)
                if truth is not None:
                    n = sum(s.suspicious_for_malignancy == SignState.PRESENT for s in signs)
                    want = int(truth.study["suspicious_level_count"])
                    tally.study["count_exact"]["right" if n == want else "wrong"] += 1
                if args.verbose:
                    out(f"{key} {name}: " + " ".join(
                        f"{s.level}:{s.suspicious_for_malignancy[0]}" for s in signs) + _misses(signs, truth))
    for key, tally in tallies.items():
        report(tally, key, args.segmentation, args.heights, args.regions, out)
    return tallies


def _pct(a: int, b: int) -> str:
    return f"{100.0 * a / b:5.1f}% ({a}/{b})" if b else "  n/a (0/0)"


def report(tally: Tally, key: str, segmentation: str, heights: str, regions: str,
           out: Callable[[str], None]) -> None:
    seg = "oracle segmentation" if segmentation == "oracle" else "auto segmentation"
    seg += f", {heights} heights, {regions} regions"
    title = f"{key} studies"
    out(f"\n== {title}, {seg}; indeterminate counts as not flagged ==")
    out(f"{'sign':30s} {'sensitivity':>18s} {'specificity':>18s}  indeterminate(P/N)")
    for sign in SIGNS:
        c = tally.counts[sign]
        pos = c["Pp"] + c["Pn"] + c["Pi"]
        neg = c["Np"] + c["Nn"] + c["Ni"]
        out(f"{sign:30s} {_pct(c['Pp'], pos):>18s} {_pct(c['Nn'] + c['Ni'], neg):>18s}  {c['Pi']}/{c['Ni']}")
    p = tally.pattern
    right = _pct(p["right"], p["right"] + p["wrong"])
    out(f"fracture pattern right: {right}, indeterminate {p['indeterminate']}")
    cnt = tally.study["count_exact"]
    out(f"suspicious level count exact: {_pct(cnt['right'], cnt['right'] + cnt['wrong'])}")
    out(f"suspicious levels on untouched volumes: {len(tally.untouched_flagged)} {tally.untouched_flagged}")


def sct_check(out: Callable[[str], None]) -> int:
    """The real thoracolumbar T2 (no masks): auto segmentation, then no level may be suspicious."""
    from analysis.findings import summarize

    vol = volume_from_image(sitk.ReadImage(str(DATA / "sct-t2-lumbar" / "t2_lumbar.nii.gz")))
    vol = take_every_nth_sagittal(vol, SLICE_STEP)
    seg = auto_segmentation("sct-t2-lumbar", {Sequence.T2: vol})
    signs = assess_signs({Sequence.T2: vol}, seg)
    flagged = [ls.level for ls in signs if ls.suspicious_for_malignancy == SignState.PRESENT]
    out(f"sct-t2-lumbar (auto segmentation, {len(seg.bodies)} bodies: "
        f"{' '.join(b.level for b in seg.bodies)}): suspicious levels {flagged or 'none'}")
    for ls in signs:
        out(f"  {ls.level}: marrow {ls.marrow_infiltration}, cortex {ls.cortical_destruction}, "
            f"STE {ls.soft_tissue_extension}, VCF {ls.compression_fracture} (Genant {ls.genant_grade}), "
            f"canal {ls.canal_diameter_mm} mm, suspicious {ls.suspicious_for_malignancy}")
    out(summarize("sct-t2-lumbar", {Sequence.T2: "sct"}, signs, seg.notes).study.impression)
    return 1 if flagged else 0


def threshold_setting(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    fields = {f.name for f in dataclasses.fields(SignThresholds)}
    if not sep or name not in fields:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=VALUE with NAME a field of SignThresholds")
    try:
        return name, float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: VALUE must be a number") from None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--studies", type=int, default=24, help="implanted real-volume studies")
    ap.add_argument("--phantoms", type=int, default=16, help="phantom studies (a quarter normal)")
    ap.add_argument("--no-real", dest="real", action="store_false", help="skip the shared real volumes")
    ap.add_argument("--lateral", type=int, default=0,
                    help="real T1+STIR studies with a lesion through a body's side wall")
    ap.add_argument("--faint", type=int, default=0,
                    help="real T1+STIR pair studies with a faint lesion, most with a mass (own generator)")
    ap.add_argument("--mimics", type=int, default=0,
                    help="real T1+STIR pair studies with benign mimics and no lesion (own generator)")
    ap.add_argument("--phantom-mimics", type=int, default=0,
                    help="normal phantom studies (T1, T2, STIR) with benign mimics (own generator)")
    ap.add_argument("--seed", type=int, default=20261126)
    ap.add_argument("--segmentation", choices=("oracle", "auto"), default="oracle")
    ap.add_argument("--heights", choices=("truth", "measured"), default="truth",
                    help="Genant grade from the implant truth or from analysis.vertebrae.measure")
    ap.add_argument("--regions", choices=("derived", "vertebrae"), default="derived",
                    help="disc/muscle references: derived from the labels, or analysis.vertebrae")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", type=threshold_setting,
                    help="run with this threshold of SignThresholds at VALUE (repeatable)")
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--sct", action="store_true", help="only the sct-t2-lumbar check (auto segmentation)")
    args = ap.parse_args(argv)
    if args.sct:
        return sct_check(print)
    run(args, print)
    return 0


if __name__ == "__main__":
    sys.exit(main())
