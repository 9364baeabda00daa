"""The trained vertebral-body model: an ensemble of U-Nets, and its class probabilities on a volume.

``model_from_bytes`` reads the weights written by ``scripts/train_vertebrae.py``
(xz is the caller's business: this module does no file I/O). ``predict_work``
turns a canonical volume into class probabilities (background, body, L5 body)
on the working grid, slice by slice with each slice's neighbours as context.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import torch

from analysis.vertebrae.features import FloatArray, volume_to_work
from analysis.vertebrae.net import UNet, neighbour_step, predict_slices, stack_inputs

__all__ = ["BodyModel", "ensemble", "model_from_bytes", "model_to_bytes", "predict_work"]


@dataclass(frozen=True)
class BodyModel:
    """Trained networks (one per cross-validation fold) whose softmax outputs are averaged."""

    nets: tuple[UNet, ...]
    held_out: tuple[str, ...] = ()  # real cases no member ever saw (a single fold's network)
    meta: dict[str, str] = field(default_factory=dict)
    # section refiners the heights are measured on (analysis.vertebrae.refine); none: the masks
    refiners: tuple[UNet, ...] = ()

    def __post_init__(self) -> None:
        if not self.nets or not all(isinstance(n, UNet) for n in self.nets):
            raise TypeError("nets must be a non-empty tuple of UNet")
        if len({n.channels for n in self.nets}) != 1:
            raise ValueError("nets must all have the same channels")
        if not all(isinstance(n, UNet) for n in self.refiners):
            raise TypeError("refiners must be a tuple of UNet")


def ensemble(models: Sequence[BodyModel]) -> BodyModel:
    """One model averaging every network of ``models`` (the cross-validation folds: the product's model)."""
    if not models:
        raise ValueError("models must not be empty")
    nets = tuple(n for m in models for n in m.nets)
    return BodyModel(nets, (), {"members": str(len(nets))})


def model_to_bytes(model: BodyModel) -> bytes:
    """Half-precision state dicts: the weights stay small enough to version in the repository."""
    states = [{k: v.detach().to(torch.float16) for k, v in n.state_dict().items()} for n in model.nets]
    buf = io.BytesIO()
    channels = list(model.nets[0].channels)
    payload = {"states": states, "held_out": list(model.held_out), "meta": model.meta, "channels": channels}
    torch.save(payload, buf)
    return buf.getvalue()


def model_from_bytes(data: bytes) -> BodyModel:
    """Load weights produced by the training script (tensors and plain types only: ``weights_only``)."""
    if not isinstance(data, bytes | bytearray):
        raise TypeError(f"data must be bytes, got {type(data).__name__}")
    obj = torch.load(io.BytesIO(bytes(data)), map_location="cpu", weights_only=True)
    nets = []
    for state in obj["states"]:
        net = UNet(tuple(obj["channels"]))
        net.load_state_dict({k: v.to(torch.float32) for k, v in state.items()})
        net.eval()
        nets.append(net)
    if not nets:
        raise ValueError("data holds no network")
    return BodyModel(tuple(nets), tuple(obj["held_out"]), dict(obj["meta"]))


def predict_work(
    model: BodyModel, canonical: npt.NDArray[np.generic], spacing: tuple[float, float, float]
) -> FloatArray:
    """Class probabilities (LR, SI, AP, 3) on the working grid of a canonical volume."""
    work = volume_to_work(canonical, spacing)
    return predict_slices(model.nets, stack_inputs(work, neighbour_step(spacing[0])))
