"""A small 2.5-D U-Net for vertebral bodies: one sagittal slice and its neighbours in, three classes out.

Input: the normalised slice on the working grid (``WORK_MM`` pixels) with the
slices on either side as two more channels (about 3.5 mm away, the spacing of a
clinical sagittal series), so the network sees where the body ends laterally.
Output per pixel: background, vertebral body, L5 body. The L5 class is what
lets the later steps anchor the level names on the lumbosacral junction.

The weights are trained here by ``scripts/train_vertebrae.py`` from the shared
real cases and phantom studies (no pretrained weights). One model per
cross-validation fold; the product averages all folds (an ensemble), the
evaluation uses the fold that never saw a case (:mod:`~analysis.vertebrae.model`).

PyTorch is only for training (the ``train`` extra): ``scripts/export_onnx.py``
turns each network into the ONNX graph the product runs
(:mod:`~analysis.vertebrae.inference`); nothing else imports this module.
"""

from __future__ import annotations

import io
import json

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from analysis.vertebrae.features import FloatArray
from analysis.vertebrae.inference import IN_CHANNELS, META_CHANNELS, META_HELD_OUT, META_INFO, N_CLASSES
from analysis.vertebrae.model import BodyModel

CHANNELS = (12, 24, 48, 96, 144)
ONNX_OPSET = 17


class _Block(nn.Sequential):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
        )


class UNet(nn.Module):
    """Plain U-Net: double 3x3 convolutions, max-pool down, bilinear up, skip concatenation."""

    def __init__(self, channels: tuple[int, ...] = CHANNELS) -> None:
        super().__init__()
        self.channels = tuple(int(c) for c in channels)
        self.down = nn.ModuleList()
        c_prev = IN_CHANNELS
        for c in channels:
            self.down.append(_Block(c_prev, c))
            c_prev = c
        self.up = nn.ModuleList()
        for c_skip in reversed(channels[:-1]):
            self.up.append(_Block(c_prev + c_skip, c_skip))
            c_prev = c_skip
        self.head = nn.Conv2d(c_prev, N_CLASSES, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips: list[torch.Tensor] = []
        for i, block in enumerate(self.down):
            if i:
                x = F.max_pool2d(x, 2)
            x = block(x)
            skips.append(x)
        skips.pop()
        for block in self.up:
            skip = skips.pop()
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return self.head(x)

    def probabilities(self, x: FloatArray) -> FloatArray:
        """Softmax class probabilities of a float32 batch (the ``inference.Network`` protocol)."""
        with torch.inference_mode():
            out: FloatArray = torch.softmax(self(torch.from_numpy(np.ascontiguousarray(x))), dim=1).numpy()
        return out


def model_to_bytes(model: BodyModel) -> bytes:
    """Half-precision state dicts: the weights stay small enough to version in the repository."""
    nets = [n for n in model.nets if isinstance(n, UNet)]
    if len(nets) != len(model.nets):
        raise TypeError("model_to_bytes needs a model of PyTorch UNets")
    states = [{k: v.detach().to(torch.float16) for k, v in n.state_dict().items()} for n in nets]
    buf = io.BytesIO()
    channels = list(nets[0].channels)
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


class _WithSoftmax(nn.Module):
    def __init__(self, net: UNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(x), dim=1)


def onnx_bytes(net: UNet, held_out: tuple[str, ...] = (), meta: dict[str, str] | None = None) -> bytes:
    """The network and its softmax as an ONNX graph (batch, height and width free), metadata attached."""
    import onnx

    # the wrapper is put in eval mode, not only the net: the exporter restores the wrapper's mode
    # on everything under it afterwards
    buf = io.BytesIO()
    multiple = 2 ** (len(net.channels) - 1)
    example = torch.zeros((1, IN_CHANNELS, 4 * multiple, 4 * multiple))
    axes = {0: "batch", 2: "height", 3: "width"}
    torch.onnx.export(_WithSoftmax(net).eval(), (example,), buf,  # type: ignore[arg-type]
                      input_names=["x"], output_names=["p"],
                      dynamic_axes={"x": axes, "p": axes}, opset_version=ONNX_OPSET, dynamo=False)
    graph = onnx.load_from_string(buf.getvalue())
    for key, value in ((META_CHANNELS, list(net.channels)), (META_HELD_OUT, list(held_out)),
                       (META_INFO, meta or {})):
        graph.metadata_props.add(key=key, value=json.dumps(value))
    return bytes(graph.SerializeToString())
