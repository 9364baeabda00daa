"""Calibrate the marrow seed thresholds of ``analysis.thresholds`` on real data.

For each fluid-sensitive / T1 seed ratio on a grid, runs the marrow assessment
on every body of the untouched shared real volumes (3 mm series) and on the
same volumes with one focal lesion implanted (``phantom.implants``,
radius 4-10 mm), and prints per ratio: bodies flagged on untouched volumes
and beside the implanted lesion (false positives) and implanted focal
lesions found (sensitivity). The chosen threshold is the smallest ratio
with no false positive of either kind, printed at the end.

Usage: python scripts/calibrate_signs.py [--lesions N] [--seed S] [--only NAME]
                                         [--segmentation oracle|auto] [--set NAME=VALUE]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
from evaluate_signs import Study, auto_segmentation, load_real, oracle_segmentation, threshold_setting

from analysis.results import SignState
from analysis.signs.context import BodyCrop, StudyContext, build_context, crop_body
from analysis.signs.fracture import band_like
from analysis.signs.marrow import assess_marrow
from analysis.thresholds import DEFAULT_THRESHOLDS, SignThresholds
from analysis.volume import Sequence
from phantom.implants import ImplantSpec, LesionKind, LesionSpec, implant

GRIDS: dict[str, tuple[Sequence, ...]] = {
    "t2_alone_focal_ratio": (Sequence.T2,),
    "stir_alone_focal_ratio": (Sequence.STIR,),
    "t1_alone_max": (Sequence.T1,),
    "stir_focal_ratio": (Sequence.T1, Sequence.STIR),
    "t1_focal_marrow_max": (Sequence.T1, Sequence.STIR),
    "stir_t1_diffuse_quotient": (Sequence.T1, Sequence.STIR),
    "stir_t1_focal_quotient": (Sequence.T1, Sequence.STIR),
}
# Implanted lesions' conspicuity (phantom.implants LesionSpec.conspicuity) per grid: faint
# lesions only where the threshold is about them.
CONSPICUITY: dict[str, tuple[float, float]] = {"t1_focal_marrow_max": (0.25, 1.0),
                                                "stir_t1_diffuse_quotient": (0.1, 0.6),
                                                "stir_t1_focal_quotient": (0.1, 0.6)}
# Implanted lesions are focal but where the threshold is about a whole body.
KIND: dict[str, LesionKind] = {"stir_t1_diffuse_quotient": LesionKind.DIFFUSE}
VALUES: dict[str, list[float]] = {
    "t2_alone_focal_ratio": [1.4, 1.5, 1.6, 1.7, 1.8, 1.9, 2.0],
    "stir_alone_focal_ratio": [1.6, 1.8, 2.0, 2.2],
    "t1_alone_max": [0.8, 0.75, 0.7, 0.65, 0.6],
    "stir_focal_ratio": [1.2, 1.4, 1.6, 1.8],
    "t1_focal_marrow_max": [0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.0],
    "stir_t1_diffuse_quotient": [1.3, 1.4, 1.5, 1.6, 1.7, 1.8, 2.0, 0.0],
    "stir_t1_focal_quotient": [1.0, 1.2, 1.4, 1.6, 1.8, 2.0, 2.2, 2.5, 3.0, 0.0],
}


Prepared = list[tuple[StudyContext, BodyCrop, int]]


def _prepared(study: Study, images: dict[Sequence, np.ndarray], labels: np.ndarray,
              auto: bool = False) -> Prepared:
    """Context and body crops (with their labels) once per study; only the thresholds change per
    grid value. ``auto``: the bodies as the fold network that never saw the patient draws them
    (as ``evaluate_signs.py --segmentation auto``), not the truth masks."""
    vols = {q: study.geometry.with_array(a) for q, a in images.items()}
    seg = auto_segmentation(study.name, vols) if auto else oracle_segmentation(labels, study.geometry)
    ctx = build_context(vols, seg, None, DEFAULT_THRESHOLDS)
    out = []
    for level, label in ctx.order:
        crop = crop_body(ctx, level, label)
        if crop is not None:
            out.append((ctx, crop, label))
    return out


def _flagged(prepared: Prepared, th: SignThresholds) -> int:
    """Bodies with marrow infiltration, a benign subendplate band not counted (as in assess_signs)."""
    n = 0
    for ctx, crop, _ in prepared:
        m = assess_marrow(dataclasses.replace(ctx, thresholds=th), crop)
        band = m.pattern == "focal" and band_like(m.lesion, crop.body, th.band_max_height_frac,
                                                  th.band_min_ap_frac)
        n += m.state == SignState.PRESENT and not band
    return n


def sweep(name: str, values: list[float], n_lesions: int, rng: np.random.Generator,
          out: Callable[[str], None], auto: bool = False,
          base: SignThresholds = DEFAULT_THRESHOLDS) -> float | None:
    seqs = GRIDS[name]
    studies = []
    for st in load_real():
        imgs = {q: a for q, a in st.images.items() if q in seqs}
        if len(imgs) == len(seqs):
            studies.append(Study(st.name, imgs, st.labels, st.geometry))
    untouched = [_prepared(st, st.images, st.labels, auto) for st in studies]
    implanted = []
    neighbours = []
    low, high = CONSPICUITY.get(name, (1.0, 1.0))
    conspicuity = []
    for i in range(n_lesions):
        st = studies[i % len(studies)]
        labs = [int(v) for v in np.unique(st.labels) if v > 0]
        lab = int(rng.choice(labs))
        conspicuity.append(float(rng.uniform(low, high)) if high > low else high)
        kind = KIND.get(name, LesionKind.FOCAL)
        # drawn for every kind, so that the focal grids draw what they always drew
        radius = float(rng.uniform(4.0, 10.0))
        spec = ImplantSpec((LesionSpec(lab, kind, radius_mm=radius if kind == LesionKind.FOCAL else None,
                                       conspicuity=conspicuity[-1]),))
        res = implant(st.images, st.labels, st.spacing_kji, spec, rng)
        # the lesion's own body, and the bodies beside it (whose study the implant changed)
        prep = _prepared(Study(f"{st.name}#{i}", st.images, st.labels, st.geometry), res.images,
                         res.labels, auto)
        implanted.append([p for p in prep if p[2] == lab])
        neighbours.append([p for p in prep if p[2] != lab])
    faint = [i for i, c in enumerate(conspicuity) if c < 0.6]
    n_bodies = sum(len(p) for p in untouched)
    n_beside = sum(len(p) for p in neighbours)
    out(f"\n{name} ({'+'.join(seqs)}): {len(studies)} untouched studies ({n_bodies} bodies), "
        f"{n_lesions} implanted {KIND.get(name, LesionKind.FOCAL).value} lesions "
        f"(focal: radius 4-10 mm; conspicuity {low:g}-{high:g})")
    out(f"{'value':>7s} {'FP bodies':>12s} {'FP beside':>12s} {'found':>10s} {'conspicuity < 0.6':>18s}")
    chosen = None
    for v in values:
        change: dict[str, Any] = {name: v}
        th = dataclasses.replace(base, **change)
        fp = sum(_flagged(p, th) for p in untouched)
        fp_beside = sum(_flagged(p, th) for p in neighbours)
        hits = [_flagged(p, th) for p in implanted]
        found = sum(hits)
        out(f"{v:7.2f} {fp:5d}/{n_bodies:<6d} {fp_beside:5d}/{n_beside:<6d} {found:4d}/{len(implanted):<4d} "
            f"{sum(hits[i] for i in faint):8d}/{len(faint)}")
        # grids run from most to least sensitive: keep the first with no false positive, on the
        # untouched studies or beside an implant
        if fp == 0 and fp_beside == 0 and chosen is None:
            chosen = v
    out(f"chosen {name} = {chosen} (smallest effect with no false positive, untouched or beside an implant)")
    return chosen


def diffuse_ratios(out: Callable[[str], None]) -> None:
    """Body median / study median body on T2 and STIR of untouched volumes (diffuse-ratio bar)."""
    out("\nbody/study median ratio on untouched volumes (stir_/t2_diffuse_ratio must stay above):")
    worst: dict[Sequence, float] = {}
    for st in load_real():
        for seq in (Sequence.T2, Sequence.STIR):
            if seq not in st.images:
                continue
            prep = _prepared(st, {seq: st.images[seq]}, st.labels)
            ratios = [float(np.median(crop.images[seq][crop.core])) / ctx.marrow_ref[seq]
                      for ctx, crop, _ in prep]
            out(f"  {st.name:10s} {seq:5s} max {max(ratios):.2f}")
            worst[seq] = max(worst.get(seq, 0.0), max(ratios))
    out("  worst: " + ", ".join(f"{q} {v:.2f}" for q, v in worst.items()))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lesions", type=int, default=20)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--only", choices=[*sorted(GRIDS), "diffuse"], default=None)
    ap.add_argument("--segmentation", choices=("oracle", "auto"), default="oracle",
                    help="bodies from the truth masks, or as the pipeline draws them (slower)")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", type=threshold_setting,
                    help="another threshold to hold at VALUE for every sweep (repeatable)")
    args = ap.parse_args(argv)
    base = dataclasses.replace(DEFAULT_THRESHOLDS, **dict(args.set))
    rng = np.random.default_rng(args.seed)
    for name, values in VALUES.items():
        if args.only is None or args.only == name:
            sweep(name, values, args.lesions, rng, print, args.segmentation == "auto", base)
    if args.only is None or args.only == "diffuse":
        diffuse_ratios(print)
    return 0


if __name__ == "__main__":
    sys.exit(main())
