"""The two-stage auto-context pixel classifier for vertebral bodies.

Stage 1 (binary: body / not body) sees image features; stage 2 (three classes:
not body, body, L5) sees the image features plus the stage-1 probability
around each pixel. Both are scikit-learn ``HistGradientBoostingClassifier``
trained by ``scripts/train_vertebrae.py`` on the shared real cases (and phantoms) with
patient-grouped folds. The weights are bytes handed in by the caller
(:func:`model_from_bytes`); this module does no file I/O.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from analysis.vertebrae.features import (
    FloatArray,
    context_features,
    image_features,
    neighbour_mean,
    volume_to_work,
)

N_CLASSES = 3  # 0 background, 1 body, 2 L5 body


@dataclass(frozen=True)
class BodyModel:
    stage1: Any  # fitted binary classifier with predict_proba
    stage2: Any  # fitted 3-class classifier with predict_proba
    held_out: tuple[str, ...] = ()  # cases this model never saw (cross-validation folds)
    meta: dict[str, str] = field(default_factory=dict)


def model_to_bytes(model: BodyModel) -> bytes:
    buf = io.BytesIO()
    pickle.dump(
        {"stage1": model.stage1, "stage2": model.stage2, "held_out": model.held_out, "meta": model.meta},
        buf,
        protocol=pickle.HIGHEST_PROTOCOL,
    )
    return buf.getvalue()


def model_from_bytes(data: bytes) -> BodyModel:
    """Load weights produced by the training script (trusted, shipped with the package)."""
    if not isinstance(data, bytes | bytearray):
        raise TypeError(f"data must be bytes, got {type(data).__name__}")
    obj = pickle.loads(data)
    return BodyModel(obj["stage1"], obj["stage2"], tuple(obj["held_out"]), dict(obj["meta"]))


def stage1_features(work: FloatArray) -> list[FloatArray]:
    return [image_features(s) for s in work]


def lateral_position(prob1: FloatArray, spacing_lr: float) -> tuple[FloatArray, FloatArray]:
    """Per slice: distance (mm) from the column's left-right centre, and body mass relative to the most."""
    mass = (prob1 >= 0.5).sum(axis=(1, 2)).astype(np.float32)
    if mass.sum() == 0:
        return np.full(mass.shape, 100.0, np.float32), np.zeros(mass.shape, np.float32)
    idx = np.arange(mass.size, dtype=np.float32)
    centre = float((idx * mass**2).sum() / (mass**2).sum())
    return (np.abs(idx - centre) * spacing_lr).astype(np.float32), (mass / mass.max()).astype(np.float32)


def _stage2_slices(feats1: list[FloatArray], prob1: FloatArray, spacing_lr: float) -> Iterator[FloatArray]:
    neigh = neighbour_mean(prob1, spacing_lr)
    dist, mass = lateral_position(prob1, spacing_lr)
    for f, p, n, d, m in zip(feats1, prob1, neigh, dist, mass, strict=True):
        lateral = np.empty((*p.shape, 2), dtype=np.float32)
        lateral[..., 0] = d
        lateral[..., 1] = m
        yield np.concatenate([f, context_features(p, n), lateral], axis=-1)


def stage2_features(feats1: list[FloatArray], prob1: FloatArray, spacing_lr: float) -> list[FloatArray]:
    """Stage-2 features of every slice, (H, W, F) each (training)."""
    return list(_stage2_slices(feats1, prob1, spacing_lr))


def _predict_rows(clf: Any, feats: list[FloatArray], where: npt.NDArray[np.bool_]) -> FloatArray:
    """Class probabilities of the pixels ``where`` (LR, H, W) is true, zeros elsewhere."""
    nf = feats[0].shape[-1]
    rows = [np.asarray(f[w], dtype=np.float32) for f, w in zip(feats, where, strict=True)]
    flat = np.concatenate(rows, axis=0) if rows else np.zeros((0, nf), np.float32)
    n_classes = len(clf.classes_)
    out = np.zeros((*where.shape, n_classes), dtype=np.float32)
    if flat.shape[0]:
        out[where] = np.asarray(clf.predict_proba(flat), dtype=np.float32)
    return out


def stage1_probability(clf: Any, feats1: list[FloatArray]) -> FloatArray:
    """Stage-1 body probability, predicted every 2nd pixel and interpolated (it is smooth)."""
    lr = len(feats1)
    h, w = feats1[0].shape[:2]
    coarse = np.zeros((lr, h, w), dtype=bool)
    coarse[:, ::2, ::2] = True
    sparse = _predict_rows(clf, feats1, coarse)[:, ::2, ::2, 1]
    rr, cc = np.meshgrid(np.arange(h) / 2.0, np.arange(w) / 2.0, indexing="ij")
    return np.stack([ndimage.map_coordinates(s, [rr, cc], order=1, mode="nearest") for s in sparse]).astype(
        np.float32
    )


def roi_of(prob1: FloatArray) -> npt.NDArray[np.bool_]:
    """Where stage 2 runs: near anything stage 1 finds body-like (the rest is background)."""
    near = ndimage.maximum_filter(prob1, size=(3, 11, 11)) >= 0.1
    return np.asarray(near, dtype=bool)


def predict_work(
    model: BodyModel, canonical: npt.NDArray[np.generic], spacing: tuple[float, float, float]
) -> FloatArray:
    """Class probabilities (LR, SI, AP, 3) on the working grid of a canonical volume."""
    work = volume_to_work(canonical, spacing)
    feats1 = stage1_features(work)
    prob1 = stage1_probability(model.stage1, feats1)
    roi = roi_of(prob1)
    # one slice of stage-2 features at a time: only the region of interest is kept
    rows = [f[r] for f, r in zip(_stage2_slices(feats1, prob1, spacing[0]), roi, strict=True)]
    out = np.zeros((*roi.shape, N_CLASSES), dtype=np.float32)
    out[..., 0] = 1.0
    flat = np.concatenate(rows, axis=0)
    if flat.shape[0]:
        out[roi] = np.asarray(model.stage2.predict_proba(flat), dtype=np.float32)
    return out
