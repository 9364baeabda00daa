"""Loading the vertebral-body networks shipped with the package (file I/O stays in node/).

The product runs the ONNX graphs under ``weights/onnx`` (ONNX Runtime, no
PyTorch); they are exported from the training's ``weights/*/fold_<k>.pt.xz`` by
``scripts/export_onnx.py``, which also checks they give the same probabilities.
"""

from __future__ import annotations

import logging
import lzma
from dataclasses import replace
from functools import cache
from pathlib import Path

import analysis.vertebrae
from analysis.vertebrae.model import BodyModel, ensemble, model_from_onnx

WEIGHTS_DIR = Path(analysis.vertebrae.__file__).resolve().parent / "weights"
log = logging.getLogger(__name__)

ONNX_DIR = WEIGHTS_DIR / "onnx"
FOLDS_DIR = ONNX_DIR / "folds"
REFINE_DIR = ONNX_DIR / "refine"
ONNX_SUFFIX = ".onnx.xz"


def load_model(path: Path, threads: int | None = None) -> BodyModel:
    """Read and unpack one exported network; a clear error when it is missing."""
    try:
        packed = path.read_bytes()
    except FileNotFoundError as exc:
        raise FileNotFoundError(
            f"vertebral-body network not found at {path}; run scripts/export_onnx.py"
        ) from exc
    return model_from_onnx(lzma.decompress(packed), threads)


def fold_paths(fold_dir: Path = FOLDS_DIR) -> list[Path]:
    return sorted(fold_dir.glob(f"fold_*{ONNX_SUFFIX}"))


def _load_folds(fold_dir: Path, what: str, script: str, threads: int | None) -> list[BodyModel]:
    """Every fold's network in ``fold_dir``; a clear error naming the scripts when none."""
    paths = fold_paths(fold_dir)
    if not paths:
        raise FileNotFoundError(f"no {what} networks (fold_*{ONNX_SUFFIX}) in {fold_dir}; "
                                f"run scripts/{script}, then scripts/export_onnx.py")
    return [load_model(p, threads) for p in paths]


def _refiner_folds(refine_dir: Path, threads: int | None) -> list[BodyModel]:
    return _load_folds(refine_dir, "section-refiner", "train_refiner.py", threads)


def load_ensemble(fold_dir: Path = FOLDS_DIR, refine_dir: Path = REFINE_DIR,
                  threads: int | None = None) -> BodyModel:
    """Every fold's network together, with every fold's section refiner: the product's model.

    ``threads``: ONNX Runtime threads per network run (default: the CPUs this process may use).
    """
    body = _load_folds(fold_dir, "vertebral-body", "train_vertebrae.py", threads)
    refiners = tuple(n for m in _refiner_folds(refine_dir, threads) for n in m.nets)
    return replace(ensemble(body), refiners=refiners)


@cache
def shipped_model() -> BodyModel:
    """The package's model, loaded once per process (it is read-only)."""
    model = load_ensemble()
    # the first analysis of a process pays for this; the log shows where its time went
    log.info("vertebral-body model loaded from %s", WEIGHTS_DIR)
    return model


def fold_models(fold_dir: Path = FOLDS_DIR, refine_dir: Path = REFINE_DIR,
                threads: int | None = None) -> dict[str, BodyModel]:
    """Real case name -> the cross-validation model (and refiner) that never saw it (evaluations, tests)."""
    refiner_of = {case: m.nets for m in _refiner_folds(refine_dir, threads) for case in m.held_out}
    out: dict[str, BodyModel] = {}
    for path in fold_paths(fold_dir):
        model = load_model(path, threads)
        for case in model.held_out:
            if case not in refiner_of:
                raise ValueError(f"no section-refiner fold holds out {case}: run scripts/train_refiner.py")
            out[case] = replace(model, refiners=refiner_of[case])
    return out
