"""Train the vertebral-body pixel classifier (auto-context, two stages): real cases and phantoms.

Training images:

- the 25 shared real cases (3 mm sagittal slices);
- one contrast-remapped copy of each (``--augment``, default 1): a random smooth
  intensity curve, so unseen contrasts (T1, STIR, other scanners) are not out of
  reach; the copy shares its case's patient group;
- ``--phantoms`` synthetic studies (default 12, seeds 1000+, disjoint from the
  evaluation phantoms' 5000+), each with random fractures (Genant 1-3, benign or
  malignant) and lesions, on a random clinical grid; T1, T2 and STIR each a
  separate image. Phantoms are in every fold's training set (no real patient).

Reproducible: fixed seeds, deterministic patient-grouped folds (VB1_02/VB1_03
and VB1_10/VB1_11 are one patient each and always share a fold). Writes, under
``--weights-dir`` (default ``analysis/vertebrae/weights``):

- ``body_model.pkl.xz``: trained on every case (production);
- ``folds/fold_<k>.pkl.xz``: one model per fold, each never trained on the real
  cases it lists in ``held_out``; ``scripts/evaluate_vertebrae.py`` evaluates every
  real case with the fold model that never saw it.

Stage 2 is trained on stage-1 probabilities predicted out-of-sample (two inner
halves of the training patients), so it learns how much to trust an unseen
image's stage-1 map. Six HistGradientBoosting pairs, about 0.6 MB each (xz). Run:
``.venv/bin/python scripts/train_vertebrae.py`` (35 min on 2 cores shared with other jobs: preparing
3 min, the production model 10 min, each fold 1-7 min).
"""

from __future__ import annotations

import argparse
import lzma
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from phantom_cases import phantom_cases
from scipy import ndimage
from sklearn.ensemble import HistGradientBoostingClassifier
from vertebrae_cases import REPO, Case, fold_of_groups, list_cases, load_case

from analysis.vertebrae.features import FloatArray, resample_2d, volume_to_work
from analysis.vertebrae.geometry import canonical_of
from analysis.vertebrae.model import (
    BodyModel,
    model_to_bytes,
    roi_of,
    stage1_features,
    stage1_probability,
    stage2_features,
)
from analysis.volume import LEVEL_LABELS

SEED = 20261126
N_FOLDS = 5
POS_PER_CASE = 4000
NEG_PER_CASE = 6000
# contrast-remapped copies and phantom images: smaller samples (many, and similar to each other)
POS_PER_EXTRA = 1500
NEG_PER_EXTRA = 2500
N_PHANTOMS = 12


@dataclass
class Prepared:
    case: Case
    feats1: list[FloatArray]  # per slice (H, W, F), float16 to save memory
    target: np.ndarray  # (LR, H, W) int8: -1 ignore, 0 bg, 1 body, 2 L5
    spacing_lr: float
    sample: np.ndarray  # flat indices into (LR, H, W) used for training


def remap_contrast(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random smooth, possibly non-monotonic intensity curve (contrast augmentation).

    The training cases are mostly T2-like; remapping tissue intensities at random
    makes the classifier lean on shape, edges and context rather than on which
    tissue is bright, so that T1, STIR and Dixon images are not out of reach.
    """
    lo, hi = np.percentile(image, [1, 99.5])
    x = np.clip((image.astype(np.float32) - lo) / max(hi - lo, 1e-6), 0, 1)
    knots = np.linspace(0, 1, 6)
    values = rng.uniform(0, 1, knots.size)
    values[0] = 0.0  # air stays dark: the foreground statistics stay meaningful
    return np.interp(x, knots, values).astype(np.float32)


def prepare(
    case: Case,
    rng: np.random.Generator,
    augment: bool = False,
    n_pos: int = POS_PER_CASE,
    n_neg: int = NEG_PER_CASE,
) -> Prepared:
    volume = next(iter(case.volumes.values()))
    can = canonical_of(volume)
    image = can.to_canonical(np.asarray(volume.array))
    if augment:
        image = remap_contrast(image, rng)
    labels = can.to_canonical(np.asarray(case.truth.array))
    work = volume_to_work(image, can.spacing)
    h, w = work.shape[1:]
    lab = np.stack([np.rint(resample_2d(s, (h, w), order=0)).astype(np.int16) for s in labels])
    target = np.zeros(lab.shape, dtype=np.int8)
    target[lab > 0] = 1
    target[lab == LEVEL_LABELS["L5"]] = 2
    rows = np.where(lab.any(axis=(0, 2)))[0]
    # bodies above the top labelled one are unlabelled in the truth: do not call them background
    target[:, : max(0, rows.min() - 2), :] = -1
    feats1 = [f.astype(np.float16) for f in stage1_features(work)]
    flat = target.ravel()
    body = np.flatnonzero(flat > 0)
    near_mask = ndimage.binary_dilation(target > 0, iterations=12, structure=np.ones((1, 3, 3), bool))
    near = np.flatnonzero(near_mask.ravel() & (flat == 0))
    far = np.flatnonzero(flat == 0)
    pick = [
        rng.choice(body, min(n_pos, body.size), replace=False),
        rng.choice(near, min(n_neg // 2, near.size), replace=False),
        rng.choice(far, min(n_neg // 2, far.size), replace=False),
    ]
    return Prepared(case, feats1, target, can.spacing[0], np.concatenate(pick))


def _rows(feats: list[FloatArray], idx: np.ndarray) -> np.ndarray:
    h, w, nf = feats[0].shape
    lr_idx, pix = np.divmod(idx, h * w)
    out = np.empty((idx.size, nf), dtype=np.float32)
    for s in np.unique(lr_idx):
        sel = lr_idx == s
        out[sel] = feats[s].reshape(-1, nf)[pix[sel]]
    return out


def _clf(seed: int, iters: int) -> HistGradientBoostingClassifier:
    return HistGradientBoostingClassifier(
        max_iter=iters,
        learning_rate=0.15,
        max_leaf_nodes=31,
        min_samples_leaf=80,
        l2_regularization=1.0,
        early_stopping=False,
        random_state=seed,
    )


def fit_stage1(items: list[Prepared], seed: int) -> HistGradientBoostingClassifier:
    x = np.concatenate([_rows(p.feats1, p.sample) for p in items])
    y = np.concatenate([(p.target.ravel()[p.sample] > 0).astype(np.int8) for p in items])
    return _clf(seed, 80).fit(x, y)


def stage1_prob(clf: HistGradientBoostingClassifier, p: Prepared) -> FloatArray:
    return stage1_probability(clf, p.feats1)


def fit_model(items: list[Prepared], held_out: tuple[str, ...], seed: int) -> BodyModel:
    t0 = time.time()
    full1 = fit_stage1(items, seed)
    # two inner halves by patient (a case's augmented copies, a phantom's sequences stay together)
    groups = list(dict.fromkeys(p.case.group for p in items))
    in_a = set(groups[0::2])
    half_a = [p for p in items if p.case.group in in_a]
    half_b = [p for p in items if p.case.group not in in_a]
    probs: dict[int, FloatArray] = {}
    for train, test in ((half_a, half_b), (half_b, half_a)):
        inner = fit_stage1(train, seed + 1)
        for p in test:
            probs[id(p)] = stage1_prob(inner, p)
    xs, ys = [], []
    for p in items:
        prob = probs[id(p)]
        feats2 = stage2_features(p.feats1, prob, p.spacing_lr)
        # stage 2 only ever runs inside the stage-1 region of interest
        sample = p.sample[roi_of(prob).ravel()[p.sample]]
        xs.append(_rows(feats2, sample))
        ys.append(p.target.ravel()[sample])
    x, y = np.concatenate(xs), np.concatenate(ys)
    keep = y >= 0
    stage2 = _clf(seed + 2, 100).fit(x[keep], y[keep])
    print(f"  model held_out={list(held_out)} trained in {time.time() - t0:.0f}s", flush=True)
    return BodyModel(full1, stage2, held_out, {"seed": str(seed), "trained_on": str(len(items))})


def save(model: BodyModel, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(lzma.compress(model_to_bytes(model)))
    print(f"  wrote {path} ({path.stat().st_size / 1e6:.2f} MB)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--weights-dir", type=Path, default=REPO / "analysis" / "vertebrae" / "weights")
    parser.add_argument("--folds", type=int, nargs="*", default=list(range(N_FOLDS)))
    parser.add_argument("--no-full", action="store_true", help="skip the production model")
    parser.add_argument("--augment", type=int, default=1, help="contrast-remapped copies per case")
    parser.add_argument(
        "--phantoms", type=int, default=N_PHANTOMS, help="phantom studies (T1, T2, STIR each an image)"
    )
    parser.add_argument("--full-first", action="store_true", help="train the production model first")
    args = parser.parse_args()
    rng = np.random.default_rng(SEED)
    entries = list_cases()
    folds = fold_of_groups(entries, N_FOLDS)
    t0 = time.time()
    cases = [load_case(e) for e in entries]
    items = [prepare(c, rng) for c in cases]
    if args.augment:
        # one contrast-remapped copy per case; it shares the case's patient group (fold)
        items += [
            prepare(c, rng, True, POS_PER_EXTRA, NEG_PER_EXTRA) for c in cases for _ in range(args.augment)
        ]
    # phantoms: seeds disjoint from the evaluation's; in every fold's training set (no real patient)
    extra = [prepare(c, rng, False, POS_PER_EXTRA, NEG_PER_EXTRA) for c in phantom_cases(args.phantoms)]
    print(
        f"prepared {len(items)} real and {len(extra)} phantom images in {time.time() - t0:.0f}s", flush=True
    )
    full = args.weights_dir / "body_model.pkl.xz"
    if args.full_first and not args.no_full:
        save(fit_model(items + extra, (), SEED), full)
    for k in args.folds:
        train = [p for p in items if folds[p.case.group] != k] + extra
        held = tuple(dict.fromkeys(p.case.name for p in items if folds[p.case.group] == k))
        save(fit_model(train, held, SEED + 10 * k), args.weights_dir / "folds" / f"fold_{k}.pkl.xz")
    if not args.full_first and not args.no_full:
        save(fit_model(items + extra, (), SEED), full)


if __name__ == "__main__":
    main()
