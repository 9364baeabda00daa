"""Loading the vertebral-body networks shipped with the package (file I/O stays in node/)."""

from __future__ import annotations

import lzma
from functools import cache
from pathlib import Path

import analysis.vertebrae
from analysis.vertebrae.model import BodyModel, ensemble, model_from_bytes

WEIGHTS_DIR = Path(analysis.vertebrae.__file__).resolve().parent / "weights"
FOLDS_DIR = WEIGHTS_DIR / "folds"


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


def load_ensemble(fold_dir: Path = FOLDS_DIR) -> BodyModel:
    """Every fold's network together: the product's model."""
    paths = fold_paths(fold_dir)
    if not paths:
        raise FileNotFoundError(
            f"no vertebral-body weights (fold_*.pt.xz) in {fold_dir}; run scripts/train_vertebrae.py"
        )
    return ensemble([load_model(p) for p in paths])


@cache
def shipped_model() -> BodyModel:
    """The package's model, loaded once per process (it is read-only)."""
    return load_ensemble()


def fold_models(fold_dir: Path = FOLDS_DIR) -> dict[str, BodyModel]:
    """Real case name -> the cross-validation model that never saw it (for evaluations and tests)."""
    out: dict[str, BodyModel] = {}
    for path in fold_paths(fold_dir):
        model = load_model(path)
        for case in model.held_out:
            out[case] = model
    return out
