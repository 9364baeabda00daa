"""Running the vertebral-body networks: ONNX Runtime in the product, no PyTorch.

The networks are trained with PyTorch (:mod:`~analysis.vertebrae.net`, an
optional extra) and exported to ONNX by ``scripts/export_onnx.py``, each
graph ending in the softmax, with the fold's held-out cases in its metadata.
Both kinds of network answer :class:`Network`, so the same code runs the
product's ONNX graphs and the training's PyTorch modules.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import onnxruntime as ort

from analysis.vertebrae.features import FloatArray

N_CLASSES = 3  # 0 background, 1 body, 2 L5 body
IN_CHANNELS = 3  # the slice, the slice before, the slice after
NEIGHBOUR_MM = 3.5

# ONNX metadata keys written by scripts/export_onnx.py
META_CHANNELS = "channels"
META_HELD_OUT = "held_out"
META_INFO = "meta"


@runtime_checkable
class Network(Protocol):
    """A U-Net's class probabilities: (N, IN_CHANNELS, H, W) float32 in, softmax (N, classes, H, W) out.

    H and W must be multiples of ``2 ** (len(channels) - 1)`` (the pooling depth).
    """

    @property
    def channels(self) -> tuple[int, ...]: ...

    def probabilities(self, x: FloatArray) -> FloatArray: ...


class OnnxNetwork:
    """One exported network in an ONNX Runtime session (CPU)."""

    def __init__(self, onnx_model: bytes, threads: int | None = None) -> None:
        if not isinstance(onnx_model, bytes | bytearray):
            raise TypeError(f"onnx_model must be bytes, got {type(onnx_model).__name__}")
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        options = ort.SessionOptions()
        # the CPUs this process may run on (taskset, cgroups), not every CPU of the machine
        options.intra_op_num_threads = threads or len(os.sched_getaffinity(0))
        options.inter_op_num_threads = 1
        # no spinning threads waiting for work: on a shared machine they take CPU from everyone else
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # ten sessions each keeping an arena of their largest activations cost 400 MB more peak memory
        options.enable_cpu_mem_arena = False
        options.log_severity_level = 3
        self._session = ort.InferenceSession(bytes(onnx_model), options, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        metadata = self._session.get_modelmeta().custom_metadata_map
        try:
            self._channels = tuple(int(c) for c in json.loads(metadata[META_CHANNELS]))
            self.held_out: tuple[str, ...] = tuple(json.loads(metadata.get(META_HELD_OUT, "[]")))
            self.meta: dict[str, str] = dict(json.loads(metadata.get(META_INFO, "{}")))
        except (KeyError, ValueError) as exc:
            raise ValueError(f"onnx_model lacks the metadata scripts/export_onnx.py writes: {exc}") from exc

    @property
    def channels(self) -> tuple[int, ...]:
        return self._channels

    def probabilities(self, x: FloatArray) -> FloatArray:
        out: FloatArray = self._session.run(None, {self._input: np.ascontiguousarray(x, dtype=np.float32)})[0]
        return out


def neighbour_step(spacing_lr: float) -> int:
    """How many slices apart the neighbour channels are (1 on a clinical 3-4 mm series)."""
    return max(1, round(NEIGHBOUR_MM / spacing_lr))


def stack_inputs(work: FloatArray, step: int) -> FloatArray:
    """(LR, H, W) -> (LR, 3, H, W): each slice with the slices ``step`` before and after (edge repeated)."""
    lr = work.shape[0]
    before = np.clip(np.arange(lr) - step, 0, lr - 1)
    after = np.clip(np.arange(lr) + step, 0, lr - 1)
    return np.stack([work, work[before], work[after]], axis=1).astype(np.float32)


def _pad_to_multiple(x: FloatArray, multiple: int) -> FloatArray:
    h, w = x.shape[-2:]
    padded: FloatArray = np.pad(x, ((0, 0), (0, 0), (0, (-h) % multiple), (0, (-w) % multiple)), mode="edge")
    return padded


def predict_slices(nets: Sequence[Network], inputs: FloatArray, batch: int = 8) -> FloatArray:
    """Softmax class probabilities (LR, H, W, 3) of stacked inputs (LR, 3, H, W), averaged over ``nets``."""
    if inputs.ndim != 4 or inputs.shape[1] != IN_CHANNELS:
        raise ValueError(f"inputs must have shape (LR, {IN_CHANNELS}, H, W), got {inputs.shape}")
    if not nets:
        raise ValueError("nets must not be empty")
    multiple = 2 ** (len(nets[0].channels) - 1)
    h, w = inputs.shape[2:]
    out = np.zeros((inputs.shape[0], N_CLASSES, h, w), dtype=np.float32)
    for start in range(0, inputs.shape[0], batch):
        x = _pad_to_multiple(inputs[start : start + batch], multiple)
        total = np.zeros((x.shape[0], N_CLASSES, h, w), dtype=np.float32)
        for net in nets:
            total += net.probabilities(x)[..., :h, :w]
        out[start : start + batch] = total / np.float32(len(nets))
    return np.moveaxis(out, 1, -1)
