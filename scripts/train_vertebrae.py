"""Train the vertebral-body pixel classifier (auto-context, two stages) on the shared real cases.

Reproducible: fixed seeds, deterministic patient-grouped folds (VB1_02/VB1_03
and VB1_10/VB1_11 are one patient each and always share a fold). Writes

- ``analysis/vertebrae/weights/body_model.pkl.xz``: trained on every case (production);
- ``analysis/vertebrae/weights/folds/fold_<k>.pkl.xz``: one model per fold, each never
  trained on the cases it lists in ``held_out``; ``scripts/evaluate_vertebrae.py``
  evaluates every case with the fold model that never saw it.

Stage 2 is trained on stage-1 probabilities predicted out-of-sample (two inner
halves of the training cases), so it learns how much to trust an unseen image's
stage-1 map. Six HistGradientBoosting pairs, about 0.58 MB each (xz). Run:
``.venv/bin/python scripts/train_vertebrae.py`` (about 10 min on 2 idle cores,
up to an hour when the machine is shared). ``--augment N`` adds N
contrast-remapped copies per case (tried on one fold: better on the unseen T1/STIR
patient, slightly worse on VB3; not used for the shipped weights).
"""

from __future__ import annotations

import argparse
import lzma
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from evaluate_vertebrae import REPO, Case, fold_of_groups, list_cases, load_case
from scipy import ndimage
from sklearn.ensemble import HistGradientBoostingClassifier

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
POS_PER_CASE = 5000
NEG_PER_CASE = 9000


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


def prepare(case: Case, rng: np.random.Generator, augment: bool = False) -> Prepared:
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
        rng.choice(body, min(POS_PER_CASE, body.size), replace=False),
        rng.choice(near, min(NEG_PER_CASE // 2, near.size), replace=False),
        rng.choice(far, min(NEG_PER_CASE // 2, far.size), replace=False),
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
    # two inner halves by case (a case's augmented copies stay with it)
    names = list(dict.fromkeys(p.case.name for p in items))
    in_a = set(names[0::2])
    half_a = [p for p in items if p.case.name in in_a]
    half_b = [p for p in items if p.case.name not in in_a]
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
    parser.add_argument(
        "--fold-dir", type=Path, default=REPO / "analysis" / "vertebrae" / "weights" / "folds"
    )
    parser.add_argument("--folds", type=int, nargs="*", default=list(range(N_FOLDS)))
    parser.add_argument("--no-full", action="store_true", help="skip the production model")
    parser.add_argument("--augment", type=int, default=0, help="contrast-remapped copies per case")
    args = parser.parse_args()
    rng = np.random.default_rng(SEED)
    entries = list_cases()
    folds = fold_of_groups(entries, N_FOLDS)
    t0 = time.time()
    cases = [load_case(e) for e in entries]
    items = [prepare(c, rng) for c in cases]
    if args.augment:
        # one contrast-remapped copy per case; it shares the case's patient group (fold)
        items += [prepare(c, rng, augment=True) for c in cases for _ in range(args.augment)]
    print(f"prepared {len(items)} cases in {time.time() - t0:.0f}s", flush=True)
    for k in args.folds:
        train = [p for p in items if folds[p.case.group] != k]
        held = tuple(dict.fromkeys(p.case.name for p in items if folds[p.case.group] == k))
        save(fit_model(train, held, SEED + 10 * k), args.fold_dir / f"fold_{k}.pkl.xz")
    if not args.no_full:
        save(fit_model(items, (), SEED), REPO / "analysis" / "vertebrae" / "weights" / "body_model.pkl.xz")


if __name__ == "__main__":
    main()
