"""Build the frozen challenge studies: series to write and the truth per level.

``load_recipes(path)`` reads ``frozen.toml``; ``build_study(recipe, data_dir)``
draws one study (real volume from ``../shared/data`` or a synthetic spine),
implants its lesions and look-alikes on the 1 mm grid, then cuts thick
slices with gaps. Truth per level: ``suspicious`` (tumour at the level),
``extension_mm`` (measured depth of lesion tissue beyond the body's outline,
0 without a mass), ``epidural`` (the mass lies in the canal: canal
compromise), the lesion's ``contrast`` and ``shape``, and any ``mimic``.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from analysis.volume import LABEL_LEVELS, LEVEL_LABELS, Sequence, Volume
from challenge import lesions as les
from challenge import slicing
from challenge.spine import build_spine, render
from phantom.acquisition import ACQUISITIONS
from phantom.study import ImageSeries

FROZEN = Path(__file__).resolve().parent / "frozen.toml"
# set "a" frozen before any tuning; set "b" drawn later, committed before it was run (challenge.draw)
FROZEN_SETS = {"a": FROZEN, "b": FROZEN.with_name("frozen-b.toml")}
REAL_SEQUENCE = {"VB1_02": Sequence.T1, "VB1_03": Sequence.STIR}


@dataclass
class LevelTruth:
    suspicious: bool = False
    extension_mm: float = 0.0
    epidural: bool = False
    contrast: float | None = None
    shape: str | None = None
    mimic: str | None = None


@dataclass
class ChallengeStudy:
    name: str
    kind: str  # "real" | "synthetic"
    sequences: tuple[Sequence, ...]
    series: tuple[ImageSeries, ...]
    labels: Volume | None  # VerSe truth on the written grid; None when the source has no masks
    truth: dict[str, LevelTruth] = field(default_factory=dict)

    @property
    def normal(self) -> bool:
        return not any(t.suspicious for t in self.truth.values())


def load_recipes(path: Path = FROZEN) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    return data["set"], list(data["study"])


def _read(path: Path) -> npt.NDArray[np.generic]:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def _verse(labels: npt.NDArray[np.integer]) -> npt.NDArray[np.int16]:
    """VB1 numbers its bodies from the top; its lowest body is S1 (see the data's README)."""
    if not (labels >= 100).any():
        return labels.astype(np.int16)
    out = np.zeros(labels.shape, dtype=np.int16)
    present = sorted((int(v) for v in np.unique(labels) if v >= 100), reverse=True)
    for rank, v in enumerate(present):
        out[labels == v] = LEVEL_LABELS["S1"] if rank == 0 else LEVEL_LABELS["L5"] + 1 - rank
    return out


def _real(
    source: str, data: Path
) -> tuple[dict[Sequence, npt.NDArray[np.float64]], npt.NDArray[np.int16] | None]:
    if source == "sct":
        arr = _read(data / "sct-t2-lumbar" / "t2_lumbar.nii.gz").astype(np.float64)
        # stored [si (superior up), ap (anterior up), lr]: to [lr, si down, ap back]
        canon = np.flip(np.transpose(arr, (2, 0, 1)), axis=(1, 2))
        return {Sequence.T2: np.ascontiguousarray(canon)}, None
    real = data / "real-lumbar-mri"
    images: dict[Sequence, npt.NDArray[np.float64]] = {}
    labels: npt.NDArray[np.int16] | None = None
    for case in source.split("+"):
        images[REAL_SEQUENCE.get(case, Sequence.T2)] = _read(real / f"{case}_image.nii.gz").astype(np.float64)
        lab = _verse(_read(real / f"{case}_labels.nii.gz").astype(np.int16))
        labels = lab if labels is None else np.where(labels == lab, labels, 0).astype(np.int16)
    assert labels is not None
    box = _crop(labels)
    return {q: np.ascontiguousarray(img[box]) for q, img in images.items()}, np.ascontiguousarray(labels[box])


def _crop(labels: npt.NDArray[np.int16]) -> tuple[slice, slice, slice]:
    """The spine with a clinical field of view around it (40 mm above and below the labelled
    bodies, 50 mm in front of and 110 mm behind them): a smaller grid, a faster evaluation."""
    idx = np.nonzero(labels > 0)
    si = slice(max(0, int(idx[1].min()) - 40), min(labels.shape[1], int(idx[1].max()) + 41))
    ap = slice(max(0, int(idx[2].min()) - 50), min(labels.shape[2], int(idx[2].max()) + 111))
    return (slice(0, labels.shape[0]), si, ap)


def _synthetic(
    sequences: tuple[Sequence, ...], rng: np.random.Generator
) -> tuple[dict[Sequence, npt.NDArray[np.float64]], npt.NDArray[np.int16]]:
    spine = build_spine(rng, (50, 280, 200))
    return {q: render(spine, q, rng) for q in sequences}, spine.labels


def build_study(recipe: dict[str, Any], data: Path) -> ChallengeStudy:
    rng = np.random.default_rng(int(recipe["seed"]))
    wanted = tuple(Sequence(s) for s in recipe["sequences"])
    synthetic = recipe["source"] == "synthetic"
    labels: npt.NDArray[np.int16] | None
    if synthetic:
        images, labels = _synthetic(wanted, rng)
    else:
        images, labels = _real(recipe["source"], data)
    images = {q: images[q] for q in wanted}
    truth: dict[str, LevelTruth] = {}
    if labels is not None:
        truth = {LABEL_LEVELS[int(v)]: LevelTruth() for v in np.unique(labels) if int(v) in LABEL_LEVELS}
        ref = les.marrow_reference(images, labels)
        for mimic in recipe.get("mimics", []):
            kind, _, level = str(mimic).partition(":")
            if kind == "heterogeneous":
                les.heterogeneous_marrow(images, labels, rng)
                continue
            mask = les.draw_mimic(labels, LEVEL_LABELS[level], rng)
            les.paint(images, mask, les.MIMIC_RATIO[kind], ref, rng)
            truth[level].mimic = kind
        for item in recipe.get("lesion", []):
            plan = les.LesionPlan(
                level=item["level"],
                label=LEVEL_LABELS[item["level"]],
                shape=item["shape"],
                contrast=float(item["contrast"]),
                extension=item["extension"],
                extension_mm=float(item["extension_mm"]),
                side=item["side"],
            )
            drawn = les.draw_lesion(labels, plan, rng)
            les.paint(images, drawn.mask, les.tumour_ratios(plan.contrast, rng), ref, rng)
            t = truth[plan.level]
            t.suspicious, t.contrast, t.shape = True, plan.contrast, plan.shape
            t.extension_mm = max(t.extension_mm, drawn.extension_mm)
            t.epidural = t.epidural or drawn.epidural
    n_lr = next(iter(images.values())).shape[0]
    weights, centres = slicing.slab_weights(n_lr, float(recipe["thickness"]), float(recipe["gap"]))
    step = float(recipe["thickness"]) + float(recipe["gap"])
    out: list[ImageSeries] = []
    geometry: Volume | None = None
    for q, img in images.items():
        thick = slicing.thick_slices(img, weights)
        if synthetic:
            thick = slicing.add_noise(thick, 0.02 * float(np.percentile(thick, 99)), rng)
        geometry = slicing.grid((thick.shape[0], thick.shape[1], thick.shape[2]), step)
        acq = ACQUISITIONS[q]
        out.append(slicing.series(q, slicing.to_12bit(thick), geometry, float(recipe["thickness"]), acq))
    assert geometry is not None
    lab_vol = None if labels is None else geometry.with_array(labels[centres].astype(np.int16))
    return ChallengeStudy(
        recipe["name"], "synthetic" if synthetic else "real", wanted, tuple(out), lab_vol, truth
    )


def truth_json(study: ChallengeStudy) -> dict[str, Any]:
    return {
        "name": study.name,
        "kind": study.kind,
        "sequences": [q.value for q in study.sequences],
        "levels": {lv: vars(t) for lv, t in study.truth.items()},
    }


__all__ = [
    "FROZEN",
    "LEVEL_LABELS",
    "ChallengeStudy",
    "LevelTruth",
    "build_study",
    "load_recipes",
    "truth_json",
]
