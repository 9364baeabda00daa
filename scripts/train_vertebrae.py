"""Train the vertebral-body U-Net (``analysis/vertebrae/net.py``): real cases and phantoms, on the CPU.

Training images, all put on the working grid (``WORK_MM`` pixels) the way the
analysis does it:

- the 25 shared real cases at their full 1 mm slice spacing (the neighbour
  channels are taken 3 or 4 slices away, as on a 3-4 mm clinical series), plus
  ``--remaps`` contrast-remapped copies of each (a random smooth, possibly
  non-monotonic intensity curve, so T1, STIR and other scanners are not out of
  reach);
- ``--phantoms`` synthetic studies (seeds 1000+, disjoint from the evaluation
  phantoms' 5000+), T1, T2 and STIR each an image, with random fractures and
  lesions. Phantoms are in every fold's training set (no real patient).

Two phases per fold: phase 1 (``--iterations``) from scratch on all of the
above; phase 2 (``--finetune-iterations``, lower rate) adds
``--fracture-phantoms`` fracture-rich phantom studies (2-3 fractures each,
seeds 3000+), because collapsed bodies are rare in phase 1 and a network that
has seldom seen one fills the collapse in. Phase 3 (``--implant-iterations``,
lower rate still) adds ``--implanted`` copies of each real training case with
fractures and lesions implanted (``phantom.implants``, seeds 9000+): a
lesion-bearing or collapsed real body looked like no training body before, and
the network lost part of it or merged it with its neighbour. A fold's implanted
copies come from its own training patients only. ``--phase1-dir`` keeps the
phase-1 networks (or starts from them); ``--start-dir`` starts phase 3 from
fold networks made by phases 1 and 2. The shipped weights were made in those
steps with the same seeds as one run: phase 2 after a saved phase 1, phase 3
from the phase-2 networks of commit 14f65a7.

Truth: body (S1 included) / L5 body / background; rows above the top labelled
body are ignored (those bodies are not labelled), and so is everything below L5
where the truth does not label S1 (VB2, VB3). Each batch is augmented on the fly: rotation,
scale, crop position, intensity gamma and noise.

Deterministic patient-grouped folds (VB1_02/VB1_03 and VB1_10/VB1_11 share a
fold). Writes, under ``--weights-dir`` (default ``analysis/vertebrae/weights``):
``folds/fold_<k>.pt.xz``: one network each, ``held_out`` lists the real
cases it never saw (the evaluation uses it for those); the product averages
all of them (``node.pipeline.model.shipped_model``). Run:
``.venv/bin/python scripts/train_vertebrae.py`` (about 11 min per fold on 2 cores).
"""

from __future__ import annotations

import argparse
import lzma
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from phantom_cases import FRACTURE_PHANTOM_SEED, implanted_real_cases, phantom_cases
from torch.nn import functional as F
from vertebrae_cases import REPO, Case, fold_of_groups, list_cases, load_case

from analysis.vertebrae.features import resample_2d, volume_to_work
from analysis.vertebrae.geometry import canonical_of
from analysis.vertebrae.inference import neighbour_step, predict_slices, stack_inputs
from analysis.vertebrae.model import BodyModel
from analysis.vertebrae.net import UNet, model_from_bytes, model_to_bytes
from analysis.volume import LEVEL_LABELS

SEED = 20261126
N_FOLDS = 5
CROP = 128
BATCH = 12
ITERATIONS = 1300
N_PHANTOMS = 24
N_FRACTURE_PHANTOMS = 30
FINETUNE_ITERATIONS = 400
N_IMPLANTED = 2
IMPLANT_ITERATIONS = 300
REAL_SHARE = 0.6


@dataclass
class Image:
    name: str
    group: str
    real: bool
    work: np.ndarray  # (LR, H, W) float16, normalised
    target: np.ndarray  # (LR, H, W) int8: -1 ignore, 0 background, 1 body, 2 L5
    spacing_lr: float
    body_slices: np.ndarray  # slice indices holding body


def remap_contrast(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random smooth, possibly non-monotonic intensity curve over the image's range."""
    lo, hi = np.percentile(image, [1, 99.5])
    x = np.clip((image.astype(np.float32) - lo) / max(hi - lo, 1e-6), 0, 1)
    knots = np.linspace(0, 1, 6)
    values = rng.uniform(0, 1, knots.size)
    values[0] = 0.0  # air stays dark: the foreground statistics stay meaningful
    return np.interp(x, knots, values).astype(np.float32)


def prepare(case: Case, rng: np.random.Generator | None) -> Image:
    volume = next(iter(case.volumes.values()))
    can = canonical_of(volume)
    image = can.to_canonical(np.asarray(volume.array))
    if rng is not None:
        image = remap_contrast(image, rng)
    work = volume_to_work(image, can.spacing)
    labels = can.to_canonical(np.asarray(case.truth.array))
    h, w = work.shape[1:]
    lab = np.stack([np.rint(resample_2d(s, (h, w), order=0)).astype(np.int16) for s in labels])
    target = np.zeros(lab.shape, dtype=np.int8)
    target[lab > 0] = 1
    target[lab == LEVEL_LABELS["L5"]] = 2
    rows = np.where((lab > 0).any(axis=(0, 2)))[0]
    # bodies above the top labelled one are unlabelled in the truth: do not call them background
    target[:, : max(0, rows.min() - 2), :] = -1
    if not (lab == LEVEL_LABELS["S1"]).any():
        target[:, below_l5(lab == LEVEL_LABELS["L5"])] = -1
    body_slices = np.where((target > 0).any(axis=(1, 2)))[0]
    real = case.dataset != "phantom"
    if real:  # keep the slices near the column; far lateral slices teach little
        keep = np.arange(max(0, body_slices.min() - 8), min(work.shape[0], body_slices.max() + 9))
        work, target = work[keep], target[keep]
        body_slices = body_slices - keep[0]
    return Image(case.name, case.group, real, work.astype(np.float16), target, can.spacing[0], body_slices)


def below_l5(l5: np.ndarray) -> np.ndarray:
    """(H, W): what lies below L5 along each column (the unlabelled sacrum of VB2 and VB3)."""
    proj = np.asarray(l5.any(axis=0), dtype=bool)
    h, w = proj.shape
    cols = np.nonzero(proj.any(axis=0))[0]
    if cols.size == 0:
        return np.zeros((h, w), dtype=bool)
    bottom = np.empty(w)
    for c in range(w):
        cc = int(np.clip(c, cols.min(), cols.max()))
        rows = np.nonzero(proj[:, cc])[0]
        bottom[c] = rows.max() if rows.size else np.nonzero(proj.any(axis=1))[0].max()
    return np.asarray(np.arange(h)[:, None] > bottom[None, :] + 1)


def _sample(img: Image, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    lr = img.work.shape[0]
    s = int(rng.choice(img.body_slices)) if rng.random() < 0.85 else int(rng.integers(lr))
    step = max(1, round(rng.uniform(3.0, 4.0) / img.spacing_lr)) if img.real else 1
    idx = np.clip([s, s - step, s + step], 0, lr - 1)
    x = img.work[idx].astype(np.float32)
    y = img.target[s].astype(np.int64)
    return x, y


def _crop(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A CROP x CROP window, near the bodies most of the time; padding is ignored in the loss."""
    _, h, w = x.shape
    pad_h, pad_w = max(0, CROP - h), max(0, CROP - w)
    if pad_h or pad_w:
        fill = float(np.percentile(x[0], 1))
        x = np.pad(x, ((0, 0), (0, pad_h), (0, pad_w)), constant_values=fill)
        y = np.pad(y, ((0, pad_h), (0, pad_w)), constant_values=-1)
        h, w = y.shape
    body = np.argwhere(y > 0)
    if body.size and rng.random() < 0.8:
        cy, cx = body[rng.integers(len(body))] + rng.normal(0, 20, 2)
    else:
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
    top = int(np.clip(cy - CROP / 2, 0, h - CROP))
    left = int(np.clip(cx - CROP / 2, 0, w - CROP))
    return x[:, top : top + CROP, left : left + CROP], y[top : top + CROP, left : left + CROP]


def random_affine_grid(
    rng: np.random.Generator, shape: list[int], max_angle: float, scale_range: tuple[float, float]
) -> torch.Tensor:
    """Sampling grid of a random rotation (radians) and isotropic scale about each image's centre."""
    batch = shape[0]
    ang = torch.from_numpy(rng.uniform(-max_angle, max_angle, batch)).float()
    scale = torch.from_numpy(rng.uniform(*scale_range, batch)).float()
    theta = torch.zeros(batch, 2, 3)
    theta[:, 0, 0] = torch.cos(ang) / scale
    theta[:, 0, 1] = -torch.sin(ang) / scale
    theta[:, 1, 0] = torch.sin(ang) / scale
    theta[:, 1, 1] = torch.cos(ang) / scale
    return F.affine_grid(theta, shape, align_corners=False)


def make_batch(images: list[Image], rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    real = [i for i in images if i.real]
    synth = [i for i in images if not i.real]
    xs, ys = [], []
    for _ in range(BATCH):
        pool = real if (rng.random() < REAL_SHARE or not synth) else synth
        x, y = _crop(*_sample(pool[int(rng.integers(len(pool)))], rng), rng)
        # intensity: gamma on the robust range, shift and scale, noise
        if rng.random() < 0.5:
            lo, hi = np.percentile(x, [1, 99])
            t = np.clip((x - lo) / max(hi - lo, 1e-6), 0, 1) ** rng.uniform(0.6, 1.6)
            x = (lo + t * (hi - lo)).astype(np.float32)
        x = x * rng.uniform(0.85, 1.15) + rng.uniform(-0.15, 0.15)
        x = x + rng.normal(0, rng.uniform(0, 0.08), x.shape).astype(np.float32)
        xs.append(x)
        ys.append(y)
    xt = torch.from_numpy(np.stack(xs).astype(np.float32))
    yt = torch.from_numpy(np.stack(ys))
    grid = random_affine_grid(rng, list(xt.shape), 0.25, (0.85, 1.2))
    xt = F.grid_sample(xt, grid, mode="bilinear", padding_mode="border", align_corners=False)
    yt = F.grid_sample(
        (yt + 1).unsqueeze(1).float(), grid, mode="nearest", padding_mode="zeros", align_corners=False
    )
    return xt, yt.squeeze(1).long() - 1


def loss_fn(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    ce = F.cross_entropy(logits, y, weight=torch.tensor([1.0, 1.0, 2.0]), ignore_index=-1)
    valid = (y >= 0).float()
    prob = torch.softmax(logits, dim=1)
    body_p = (prob[:, 1] + prob[:, 2]) * valid
    body_t = (y > 0).float()
    dice = 1 - (2 * (body_p * body_t).sum() + 1) / (body_p.sum() + body_t.sum() + 1)
    return ce + dice


def train(
    images: list[Image], seed: int, iterations: int, net: UNet | None = None, max_lr: float = 3e-3
) -> UNet:
    """Phase 1 from scratch (``net`` None), or phase 2 continuing ``net`` at a lower rate."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = UNet() if net is None else net
    opt = torch.optim.AdamW(net.parameters(), lr=max_lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=max_lr, total_steps=iterations, pct_start=0.1)
    net.train()
    t0, running = time.time(), 0.0
    for it in range(1, iterations + 1):
        x, y = make_batch(images, rng)
        opt.zero_grad()
        loss = loss_fn(net(x), y)
        loss.backward()
        opt.step()
        sched.step()
        running += loss.item()
        if it % 100 == 0:
            print(f"    iter {it}: loss {running / 100:.3f} ({time.time() - t0:.0f}s)", flush=True)
            running = 0.0
    net.eval()
    return net


def held_out_dice(net: UNet, images: list[Image]) -> list[tuple[str, float]]:
    """Quick check: body Dice on every 3rd slice of each held-out real image (working grid)."""
    out = []
    for img in images:
        sel = np.arange(0, img.work.shape[0], 3)
        work = img.work[sel].astype(np.float32)
        prob = predict_slices([net], stack_inputs(work, neighbour_step(3 * img.spacing_lr)))
        pred = (prob[..., 1] + prob[..., 2]) >= 0.5
        t = img.target[sel]
        valid = t >= 0
        truth = t > 0
        inter = (pred & truth & valid).sum()
        out.append((img.name, float(2 * inter / max(1, (pred & valid).sum() + truth.sum()))))
    return out


def load_model(path: Path) -> BodyModel:
    return model_from_bytes(lzma.decompress(path.read_bytes()))


def load_unet(path: Path) -> UNet:
    """The trainable network of a saved fold (phase 1, or phases 1 and 2) to continue from."""
    net = load_model(path).nets[0]
    if not isinstance(net, UNet):
        raise TypeError(f"{path} holds an exported graph, not a trainable UNet")
    return net


def save(model: BodyModel, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(lzma.compress(model_to_bytes(model)))
    print(f"  wrote {path} ({path.stat().st_size / 1e6:.2f} MB)", flush=True)


def phases_1_and_2(
    args: argparse.Namespace,
    k: int,
    held: tuple[str, ...],
    train_set: list[Image],
    fracture_images: list[Image],
) -> UNet:
    phase1 = None if args.phase1_dir is None else args.phase1_dir / f"fold_{k}.pt.xz"
    if phase1 is not None and phase1.exists():
        net = load_unet(phase1)
        print(f"  phase 1 from {phase1}", flush=True)
    else:
        net = train(train_set, SEED + k, args.iterations)
        if phase1 is not None:
            save(BodyModel((net,), held, {}), phase1)
    # phase 2: collapsed bodies are rare in phase 1; fracture-rich phantoms join at a lower rate
    return train(train_set + fracture_images, SEED + 100 + k, args.finetune_iterations, net, 1e-3)


def training_parser(doc: str | None, iterations: int) -> argparse.ArgumentParser:
    """The options every training script takes: where the weights go, which folds, how long."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights-dir", type=Path, default=REPO / "analysis" / "vertebrae" / "weights")
    parser.add_argument("--folds", type=int, nargs="*", default=list(range(N_FOLDS)))
    parser.add_argument("--iterations", type=int, default=iterations)
    return parser


def main() -> None:
    parser = training_parser(__doc__, ITERATIONS)
    parser.add_argument("--remaps", type=int, default=2, help="contrast-remapped copies per real case")
    parser.add_argument("--phantoms", type=int, default=N_PHANTOMS)
    parser.add_argument("--fracture-phantoms", type=int, default=N_FRACTURE_PHANTOMS)
    parser.add_argument("--finetune-iterations", type=int, default=FINETUNE_ITERATIONS)
    parser.add_argument("--implanted", type=int, default=N_IMPLANTED, help="implanted copies per real case")
    parser.add_argument("--implant-iterations", type=int, default=IMPLANT_ITERATIONS)
    parser.add_argument(
        "--start-dir", type=Path, help="fold networks after phases 1 and 2: only phase 3 runs from them"
    )
    parser.add_argument(
        "--phase1-dir",
        type=Path,
        help="phase-1 fold networks: loaded from here when present (then only phase 2 runs), "
        "else trained and saved here",
    )
    args = parser.parse_args()
    folds_dir = args.weights_dir / "folds"
    rng = np.random.default_rng(SEED)
    entries = list_cases()
    folds = fold_of_groups(entries, N_FOLDS)
    t0 = time.time()
    cases = [load_case(e, step=1) for e in entries]
    images = [prepare(c, None) for c in cases]
    images += [prepare(c, rng) for c in cases for _ in range(args.remaps)]
    images += [prepare(c, None) for c in phantom_cases(args.phantoms)]
    fracture_images = [
        prepare(c, None) for c in phantom_cases(args.fracture_phantoms, FRACTURE_PHANTOM_SEED, fractures=True)
    ]
    implanted_images = [prepare(c, None) for c in implanted_real_cases(cases, args.implanted)]
    n_images = len(images) + len(fracture_images) + len(implanted_images)
    print(f"prepared {n_images} images in {time.time() - t0:.0f}s", flush=True)
    for k in args.folds:
        held = tuple(e["case"] for e in entries if folds[e["group"]] == k)
        train_set = [i for i in images if not (i.real and folds[i.group] == k)]
        print(f"fold {k}: held out {list(held)}", flush=True)
        if args.start_dir is not None:
            net = load_unet(args.start_dir / f"fold_{k}.pt.xz")
            print(f"  phases 1 and 2 from {args.start_dir}", flush=True)
        else:
            net = phases_1_and_2(args, k, held, train_set, fracture_images)
        # phase 3: implanted copies of this fold's own training patients join at a lower rate still
        own = [i for i in implanted_images if folds[i.group] != k]
        net = train(train_set + fracture_images + own, SEED + 200 + k, args.implant_iterations, net, 5e-4)
        # the first image of each held-out case is the one without a contrast remap
        plain = {i.name: i for i in reversed(images) if i.real and i.name in held}
        for name, d in held_out_dice(net, list(plain.values())):
            print(f"    held-out {name}: body Dice (work grid) {d:.3f}", flush=True)
        meta = {
            "seed": str(SEED + k),
            "iterations": f"{args.iterations}+{args.finetune_iterations}+{args.implant_iterations}",
            "fold": str(k),
        }
        save(BodyModel((net,), held, meta), folds_dir / f"fold_{k}.pt.xz")
    print(f"the product averages the {len(list(folds_dir.glob('fold_*.pt.xz')))} networks in {folds_dir}")


if __name__ == "__main__":
    main()
