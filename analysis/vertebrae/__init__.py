"""Find, segment, name and measure the vertebral bodies of a sagittal lumbar MRI study.

Public API::

    from analysis.vertebrae import load_body_model, segment_spine, reference_regions

    model = load_body_model(weights_bytes)          # once, in main()
    seg = segment_spine({Sequence.T2: t2, Sequence.T1: t1}, model)
    regions = reference_regions(seg, t1_on_label_grid)   # per level: body, discs, muscle, canal

Modules: :mod:`~analysis.vertebrae.pipeline` (entry point),
:mod:`~analysis.vertebrae.geometry` (canonical sagittal layout),
:mod:`~analysis.vertebrae.features` and :mod:`~analysis.vertebrae.model`
(auto-context pixel classifier), :mod:`~analysis.vertebrae.segment` (spine axis,
disc cuts, one mask per body), :mod:`~analysis.vertebrae.levels` (naming from
the sacrum up), :mod:`~analysis.vertebrae.measure` (heights, Genant grade),
:mod:`~analysis.vertebrae.regions` (reference regions for the signs step).

The weights (``weights/body_model.pkl.xz``, produced by
``scripts/train_vertebrae.py``) are read by the caller and handed in as bytes:
this package does no file I/O.
"""

from __future__ import annotations

import lzma

from analysis.vertebrae.model import BodyModel, model_from_bytes
from analysis.vertebrae.pipeline import segment_spine
from analysis.vertebrae.regions import LevelRegions, canal_centreline, reference_regions

WEIGHTS_RESOURCE = "weights/body_model.pkl.xz"


def load_body_model(data: bytes) -> BodyModel:
    """The classifier from the bytes of ``weights/body_model.pkl.xz`` (xz-compressed)."""
    if not isinstance(data, bytes | bytearray):
        raise TypeError(f"data must be bytes, got {type(data).__name__}")
    return model_from_bytes(lzma.decompress(data))


__all__ = [
    "WEIGHTS_RESOURCE",
    "BodyModel",
    "LevelRegions",
    "canal_centreline",
    "load_body_model",
    "reference_regions",
    "segment_spine",
]
