"""Find, segment, name and measure the vertebral bodies of a sagittal lumbar MRI study.

Public API::

    from analysis.vertebrae import ensemble, model_from_onnx, segment_spine, reference_regions

    model = ensemble([model_from_onnx(b) for b in fold_graphs])   # once, in main()
    seg = segment_spine({Sequence.T2: t2, Sequence.T1: t1}, model)
    regions = reference_regions(seg, t1_on_label_grid)   # per level: body, discs, muscle, canal

Modules: :mod:`~analysis.vertebrae.pipeline` (entry point),
:mod:`~analysis.vertebrae.geometry` (canonical sagittal layout),
:mod:`~analysis.vertebrae.features` (working grid), :mod:`~analysis.vertebrae.net`
(the U-Net, PyTorch, training only), :mod:`~analysis.vertebrae.inference` (its
ONNX graphs in ONNX Runtime) and :mod:`~analysis.vertebrae.model` (the ensemble
and its probabilities),
:mod:`~analysis.vertebrae.segment` (spine axis, disc cuts, one mask per body),
:mod:`~analysis.vertebrae.levels` (naming from the sacrum up),
:mod:`~analysis.vertebrae.measure` (heights, Genant grade),
:mod:`~analysis.vertebrae.regions` (reference regions for the signs step).

The weights (``weights/folds/fold_<k>.pt.xz``, one network per
cross-validation fold, produced by ``scripts/train_vertebrae.py``) are exported
to ``weights/onnx/`` by ``scripts/export_onnx.py``; those graphs are read by
the caller (``node.pipeline.model``) and handed in as bytes: this package does
no file I/O.
"""

from __future__ import annotations

from analysis.vertebrae.model import BodyModel, ensemble, model_from_onnx
from analysis.vertebrae.pipeline import segment_spine
from analysis.vertebrae.regions import LevelRegions, canal_centreline, reference_regions

__all__ = [
    "BodyModel",
    "LevelRegions",
    "canal_centreline",
    "ensemble",
    "model_from_onnx",
    "reference_regions",
    "segment_spine",
]
