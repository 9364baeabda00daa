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
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from analysis.vertebrae.features import FloatArray

N_CLASSES = 3  # 0 background, 1 body, 2 L5 body
IN_CHANNELS = 3  # the slice, the slice before, the slice after
NEIGHBOUR_MM = 3.5
CHANNELS = (12, 24, 48, 96, 144)
_MULTIPLE = 2 ** (len(CHANNELS) - 1)


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


def neighbour_step(spacing_lr: float) -> int:
    """How many slices apart the neighbour channels are (1 on a clinical 3-4 mm series)."""
    return max(1, round(NEIGHBOUR_MM / spacing_lr))


def stack_inputs(work: FloatArray, step: int) -> FloatArray:
    """(LR, H, W) -> (LR, 3, H, W): each slice with the slices ``step`` before and after (edge repeated)."""
    lr = work.shape[0]
    before = np.clip(np.arange(lr) - step, 0, lr - 1)
    after = np.clip(np.arange(lr) + step, 0, lr - 1)
    return np.stack([work, work[before], work[after]], axis=1).astype(np.float32)


def _pad_to_multiple(x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    h, w = x.shape[-2:]
    ph, pw = (-h) % _MULTIPLE, (-w) % _MULTIPLE
    return F.pad(x, (0, pw, 0, ph), mode="replicate"), h, w


def predict_slices(nets: Sequence[UNet], inputs: FloatArray, batch: int = 8) -> FloatArray:
    """Softmax class probabilities (LR, H, W, 3) of stacked inputs (LR, 3, H, W), averaged over ``nets``."""
    if inputs.ndim != 4 or inputs.shape[1] != IN_CHANNELS:
        raise ValueError(f"inputs must have shape (LR, {IN_CHANNELS}, H, W), got {inputs.shape}")
    out = np.zeros((inputs.shape[0], N_CLASSES, *inputs.shape[2:]), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, inputs.shape[0], batch):
            x, h, w = _pad_to_multiple(torch.from_numpy(inputs[start : start + batch]))
            total = torch.zeros((x.shape[0], N_CLASSES, h, w))
            for net in nets:
                total += torch.softmax(net(x)[..., :h, :w], dim=1)
            out[start : start + batch] = (total / len(nets)).numpy()
    return np.moveaxis(out, 1, -1)
