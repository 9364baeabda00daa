"""The trained vertebral-body model: an ensemble of U-Nets, and its class probabilities on a volume.

``model_from_onnx`` reads one network exported by ``scripts/export_onnx.py``
(xz is the caller's business: this module does no file I/O). ``predict_work``
turns a canonical volume into class probabilities (background, body, L5 body)
on the working grid, slice by slice with each slice's neighbours as context.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from analysis.vertebrae.features import FloatArray, volume_to_work
from analysis.vertebrae.inference import Network, OnnxNetwork, neighbour_step, predict_slices, stack_inputs

__all__ = ["BodyModel", "ensemble", "model_from_onnx", "predict_work"]


@dataclass(frozen=True)
class BodyModel:
    """Trained networks (one per cross-validation fold) whose softmax outputs are averaged."""

    nets: tuple[Network, ...]
    held_out: tuple[str, ...] = ()  # real cases no member ever saw (a single fold's network)
    meta: dict[str, str] = field(default_factory=dict)
    # section refiners the heights are measured on (analysis.vertebrae.refine); none: the masks
    refiners: tuple[Network, ...] = ()

    def __post_init__(self) -> None:
        if not self.nets or not all(isinstance(n, Network) for n in self.nets):
            raise TypeError("nets must be a non-empty tuple of networks (ONNX graphs or UNets)")
        if len({n.channels for n in self.nets}) != 1:
            raise ValueError("nets must all have the same channels")
        if not all(isinstance(n, Network) for n in self.refiners):
            raise TypeError("refiners must be a tuple of networks (ONNX graphs or UNets)")


def ensemble(models: Sequence[BodyModel]) -> BodyModel:
    """One model averaging every network of ``models`` (the cross-validation folds: the product's model)."""
    if not models:
        raise ValueError("models must not be empty")
    nets = tuple(n for m in models for n in m.nets)
    return BodyModel(nets, (), {"members": str(len(nets))})


def model_from_onnx(data: bytes, threads: int | None = None) -> BodyModel:
    """One exported network (``scripts/export_onnx.py``) with the held-out cases of its fold."""
    net = OnnxNetwork(data, threads)
    return BodyModel((net,), net.held_out, net.meta)


def predict_work(
    model: BodyModel, canonical: npt.NDArray[np.generic], spacing: tuple[float, float, float]
) -> FloatArray:
    """Class probabilities (LR, SI, AP, 3) on the working grid of a canonical volume."""
    work = volume_to_work(canonical, spacing)
    return predict_slices(model.nets, stack_inputs(work, neighbour_step(spacing[0])))
