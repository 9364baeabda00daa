"""Loading the vertebral-body networks shipped with the package (file I/O stays in node/)."""

from __future__ import annotations

import logging
import lzma
from dataclasses import replace
from functools import cache
from pathlib import Path

import analysis.vertebrae
from analysis.vertebrae.model import BodyModel, ensemble, model_from_bytes

WEIGHTS_DIR = Path(analysis.vertebrae.__file__).resolve().parent / "weights"
log = logging.getLogger(__name__)

FOLDS_DIR = WEIGHTS_DIR / "folds"
REFINE_DIR = WEIGHTS_DIR / "refine"


def load_model(path: Path) -> BodyModel:
    """Read and unpack one weights file; a clear error when it is missing."""
    try:
        packed = path.read_bytes()
    except FileNotFoundError as exc:
        raise FileNotFoundError(
            f"vertebral-body model not found at {path}; run scripts/train_vertebrae.py"
        ) from exc
    return model_from_bytes(lzma.decompress(packed))


def fold_paths(fold_dir: Path = FOLDS_DIR) -> list[Path]:
    return sorted(fold_dir.glob("fold_*.pt.xz"))


def _load_folds(fold_dir: Path, what: str, script: str) -> list[BodyModel]:
    """Every fold's weights file in ``fold_dir``; a clear error naming the training script when none."""
    paths = fold_paths(fold_dir)
    if not paths:
        raise FileNotFoundError(f"no {what} weights (fold_*.pt.xz) in {fold_dir}; run scripts/{script}")
    return [load_model(p) for p in paths]


def _refiner_folds(refine_dir: Path) -> list[BodyModel]:
    return _load_folds(refine_dir, "section-refiner", "train_refiner.py")


def load_ensemble(fold_dir: Path = FOLDS_DIR, refine_dir: Path = REFINE_DIR) -> BodyModel:
    """Every fold's network together, with every fold's section refiner: the product's model."""
    body = _load_folds(fold_dir, "vertebral-body", "train_vertebrae.py")
    refiners = tuple(n for m in _refiner_folds(refine_dir) for n in m.nets)
    return replace(ensemble(body), refiners=refiners)


@cache
def shipped_model() -> BodyModel:
    """The package's model, loaded once per process (it is read-only)."""
    model = load_ensemble()
    # the first analysis of a process pays for this; the log shows where its time went
    log.info("vertebral-body model loaded from %s", WEIGHTS_DIR)
    return model


def fold_models(fold_dir: Path = FOLDS_DIR, refine_dir: Path = REFINE_DIR) -> dict[str, BodyModel]:
    """Real case name -> the cross-validation model (and refiner) that never saw it (evaluations, tests)."""
    refiner_of = {case: m.nets for m in _refiner_folds(refine_dir) for case in m.held_out}
    out: dict[str, BodyModel] = {}
    for path in fold_paths(fold_dir):
        model = load_model(path)
        for case in model.held_out:
            if case not in refiner_of:
                raise ValueError(f"no section-refiner fold holds out {case}: run scripts/train_refiner.py")
            out[case] = replace(model, refiners=refiner_of[case])
    return out
