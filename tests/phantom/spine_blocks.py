"""A minimal, untilted block spine for testing the implants independently of the phantom."""

from __future__ import annotations

import numpy as np

from analysis.volume import Sequence

SPACING = (3.0, 1.0, 1.0)
# (k, j, i) voxels; bodies 26 mm tall, 35 mm deep, 45 mm wide, discs 9 mm.
SHAPE = (24, 200, 110)
BODY_LABELS = (20, 21, 22, 23, 24)
BODY_TOP = {lb: 20 + n * 35 for n, lb in enumerate(BODY_LABELS)}
BODY_HEIGHT = 26
I0, I1 = 30, 65  # anterior, posterior wall
K0, K1 = 4, 19
# Signal of (marrow, disc, muscle, csf, fat) per sequence.
TISSUE = {
    Sequence.T1: (600.0, 300.0, 280.0, 120.0, 900.0),
    Sequence.T2: (450.0, 800.0, 250.0, 1400.0, 700.0),
    Sequence.STIR: (150.0, 500.0, 150.0, 1300.0, 60.0),
    Sequence.T1C: (650.0, 320.0, 300.0, 120.0, 900.0),
}


def block_spine(dtype: type = np.uint16, seed: int = 0) -> tuple[dict[Sequence, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.zeros(SHAPE, dtype=np.int16)
    for lb, top in BODY_TOP.items():
        labels[K0:K1, top : top + BODY_HEIGHT, I0:I1] = lb
    disc = np.zeros(SHAPE, dtype=bool)
    disc[K0:K1, 10:195, I0:I1] = True
    disc &= labels == 0
    canal = np.zeros(SHAPE, dtype=bool)
    canal[8:16, :, I1 + 2 : I1 + 17] = True
    muscle = np.zeros(SHAPE, dtype=bool)
    muscle[:, :, I1 + 20 : I1 + 40] = True
    images = {}
    for seq, (marrow, dsc, mus, csf, fat) in TISSUE.items():
        im = np.full(SHAPE, fat)
        im[muscle] = mus
        im[canal] = csf
        im[disc] = dsc
        body = labels > 0
        im[body] = marrow
        rim = body & ~_erode(body)
        im[rim] = 0.3 * marrow
        im *= 1.0 + 0.03 * rng.standard_normal(SHAPE)
        images[seq] = np.clip(im, 0, None).astype(dtype)
    return images, labels


def _erode(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = ndimage.generate_binary_structure(2, 1)
    return ndimage.binary_erosion(mask, structure)


def mid_heights(labels: np.ndarray, label: int) -> tuple[float, float, float]:
    """Anterior, middle and posterior heights in voxels on the mid slice (untilted bodies)."""
    k = (K0 + K1) // 2
    body = labels[k] == label
    cols = np.flatnonzero(body.any(axis=0))
    i_min, i_max = cols.min(), cols.max()
    out = []
    for f in (0.2, 0.5, 0.8):  # where the analysis measures
        i = round(i_min + f * (i_max - i_min))
        out.append(float(body[:, i - 1 : i + 2].sum(axis=0).mean()))
    return out[0], out[1], out[2]
