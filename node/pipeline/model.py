"""Loading the vertebral-body model shipped with the package (file I/O stays in node/)."""

from __future__ import annotations

import lzma
from functools import cache
from pathlib import Path

import analysis.vertebrae
from analysis.vertebrae.model import BodyModel, model_from_bytes

MODEL_FILE = Path(analysis.vertebrae.__file__).resolve().parent / "weights" / "body_model.pkl.xz"


def load_model(path: Path = MODEL_FILE) -> BodyModel:
    """Read and unpack the trained model; a clear error when the file is missing."""
    try:
        packed = path.read_bytes()
    except FileNotFoundError as exc:
        raise FileNotFoundError(
            f"vertebral-body model not found at {path}; run scripts/train_vertebrae.py"
        ) from exc
    return model_from_bytes(lzma.decompress(packed))


@cache
def shipped_model() -> BodyModel:
    """The package's model, loaded once per process (it is read-only)."""
    return load_model()
