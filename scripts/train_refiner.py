"""Train the section refiner (``analysis/vertebrae/refine.py``) that the heights are measured on.

Training sections: every body of the shared real cases (3 mm slices, the
cases of the fold held out) and of 60 fracture-rich phantoms (seeds from
``FRACTURE_PHANTOM_SEED``: two or three compression fractures of any grade,
shape and pattern each, on random clinical grids), on the body's central
section and the ones either side, centred on the body with a 2.5 mm jitter
(the body network's centroid is that far off), one random sequence each.
Targets are the truth resampled linearly (soft edges, no grid rounding).
Each batch is augmented: intensity scale, shift and noise, rotation and scale.

Writes ``refine/fold_<k>.pt.xz`` under ``--weights-dir`` (default
``analysis/vertebrae/weights``), ``held_out`` naming the real cases that fold
never saw, as for the body network. About 5 min per fold on 2 cores:
``.venv/bin/python scripts/train_refiner.py``.
"""

from __future__ import annotations

import lzma
import time

import numpy as np
import torch
from phantom_cases import FRACTURE_PHANTOM_SEED, phantom_study, study_volumes
from torch.nn import functional as F
from train_vertebrae import N_FOLDS, random_affine_grid, training_parser  # the body networks' folds
from vertebrae_cases import fold_of_groups, list_cases, load_case

from analysis.vertebrae.geometry import canonical_of
from analysis.vertebrae.measure import mid_sagittal_slice
from analysis.vertebrae.model import BodyModel
from analysis.vertebrae.net import UNet, model_to_bytes
from analysis.vertebrae.refine import REFINER_CHANNELS, section_input, section_target
from analysis.volume import Volume

N_PHANTOMS = 60
ITERATIONS = 1500
BATCH = 12
JITTER_MM = 2.5
_MIN_BODY_VOXELS = 500

Sections = tuple[np.ndarray, np.ndarray]  # inputs (N, 3, S, S) and soft targets, float16


def sections(images: list[np.ndarray], labels: np.ndarray, spacing: tuple[float, float, float],
             rng: np.random.Generator, jitters: int = 3) -> Sections:
    """Training sections of every body of one canonical study."""
    xs, ys = [], []
    for label in (int(v) for v in np.unique(labels) if v > 0):
        body = labels == label
        if body.sum() < _MIN_BODY_VOXELS:
            continue
        mid = mid_sagittal_slice(body)
        area = body.sum(axis=(1, 2))
        for s in (mid - 1, mid, mid + 1):
            if not 0 <= s < labels.shape[0] or area[s] < 0.6 * area[mid]:
                continue
            rows, cols = np.nonzero(body[s])
            centre = np.array([rows.mean() * spacing[1], cols.mean() * spacing[2]])
            for _ in range(jitters):
                c = centre + rng.normal(0.0, JITTER_MM, 2)
                at = (float(c[0]), float(c[1]))
                xs.append(section_input(images[int(rng.integers(len(images)))], spacing, s, at))
                ys.append(section_target(labels, spacing, s, at, label))
    return np.stack(xs).astype(np.float16), np.stack(ys).astype(np.float16)


def canonical_study(
    volumes: list[Volume], truth: Volume
) -> tuple[list[np.ndarray], np.ndarray, tuple[float, float, float]]:
    can = canonical_of(truth)
    images = [can.to_canonical(np.asarray(v.array)) for v in volumes]
    return images, can.to_canonical(np.asarray(truth.array)), can.spacing


def train(x: np.ndarray, y: np.ndarray, seed: int, iterations: int = ITERATIONS) -> UNet:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = UNet(REFINER_CHANNELS)
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=iterations)
    t0 = time.perf_counter()
    for it in range(iterations):
        idx = rng.integers(len(x), size=BATCH)
        xb = torch.from_numpy(x[idx].astype(np.float32))
        yb = torch.from_numpy(y[idx].astype(np.float32))
        gain = torch.from_numpy(rng.uniform(0.8, 1.25, (BATCH, 1, 1, 1))).float()
        shift = torch.from_numpy(rng.normal(0.0, 0.1, (BATCH, 1, 1, 1))).float()
        xb = xb * gain + shift + 0.05 * torch.randn_like(xb)
        grid = random_affine_grid(rng, list(xb.shape), 0.2, (0.9, 1.1))
        xb = F.grid_sample(xb, grid, align_corners=False, padding_mode="border")
        yb = F.grid_sample(yb, grid, align_corners=False, padding_mode="border")
        yb = yb / yb.sum(1, keepdim=True).clamp_min(1e-6)
        logp = torch.log_softmax(net(xb), dim=1)
        p = logp.exp()
        inter = (p[:, 1] * yb[:, 1]).sum((1, 2))
        dice = 1.0 - (2.0 * inter + 1.0) / (p[:, 1].sum((1, 2)) + yb[:, 1].sum((1, 2)) + 1.0)
        loss = -(yb * logp).sum(1).mean() + dice.mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if it % 250 == 0 or it == iterations - 1:
            took = time.perf_counter() - t0
            print(f"  iter {it:5d} loss {float(loss.detach()):.4f} {took:5.0f}s", flush=True)
    net.eval()
    return net


def main() -> None:
    args = training_parser(__doc__, ITERATIONS).parse_args()
    torch.set_num_threads(2)
    rng = np.random.default_rng(20261127)
    phantom_x, phantom_y = [], []
    for seed in range(FRACTURE_PHANTOM_SEED, FRACTURE_PHANTOM_SEED + N_PHANTOMS):
        study = phantom_study(seed, vary_grid=True, fractures=True)
        vols = study_volumes(study)
        images, labels, spacing = canonical_study(list(vols.values()), study.labels)
        x, y = sections(images, labels, spacing, rng)
        phantom_x.append(x)
        phantom_y.append(y)
    entries = list_cases()
    folds = fold_of_groups(entries, N_FOLDS)
    real: dict[str, Sections] = {}
    for e in entries:
        case = load_case(e)
        images, labels, spacing = canonical_study(list(case.volumes.values()), case.truth)
        real[e["case"]] = sections(images, labels, spacing, rng)
    n_real = sum(len(x) for x, _ in real.values())
    print(f"sections: phantoms {sum(len(x) for x in phantom_x)}, real {n_real}")
    out_dir = args.weights_dir / "refine"
    out_dir.mkdir(parents=True, exist_ok=True)
    for k in args.folds:
        held = tuple(sorted(e["case"] for e in entries if folds[e["group"]] == k))
        seen = [real[e["case"]] for e in entries if e["case"] not in held]
        x = np.concatenate([*phantom_x, *(s[0] for s in seen)])
        y = np.concatenate([*phantom_y, *(s[1] for s in seen)])
        print(f"fold {k}: {len(x)} sections, held out {', '.join(held)}", flush=True)
        net = train(x, y, seed=k, iterations=args.iterations)
        meta = {"fold": str(k), "iterations": str(args.iterations), "sections": str(len(x))}
        path = out_dir / f"fold_{k}.pt.xz"
        path.write_bytes(lzma.compress(model_to_bytes(BodyModel((net,), held, meta))))
        print(f"wrote {path}", flush=True)


if __name__ == "__main__":
    main()
