"""Export the trained networks to the ONNX graphs the product runs (PyTorch needed: the ``train`` extra).

    .venv/bin/python scripts/export_onnx.py [--weights-dir analysis/vertebrae/weights]

Every ``folds/fold_<k>.pt.xz`` (body networks) and ``refine/fold_<k>.pt.xz``
(section refiners) becomes ``onnx/folds/fold_<k>.onnx.xz`` and
``onnx/refine/fold_<k>.onnx.xz``: the network and its softmax, batch and image
size free, the fold's held-out cases in the metadata. Each graph is checked
against its PyTorch network on inputs from the shared real cases' sizes; the
largest difference of a probability is printed, and the export fails over 1e-4.
Run it after either training script.
"""

from __future__ import annotations

import argparse
import lzma
from pathlib import Path

import numpy as np

from analysis.vertebrae.inference import IN_CHANNELS, OnnxNetwork
from analysis.vertebrae.net import UNet, model_from_bytes, onnx_bytes

WEIGHTS = Path(__file__).resolve().parents[1] / "analysis" / "vertebrae" / "weights"
TOLERANCE = 1e-4


def check(net: UNet, graph: OnnxNetwork, seed: int) -> float:
    """Largest absolute difference of the two probabilities on random inputs of two sizes."""
    rng = np.random.default_rng(seed)
    multiple = 2 ** (len(net.channels) - 1)
    worst = 0.0
    for h, w in ((5 * multiple, 4 * multiple), (11 * multiple, 9 * multiple)):
        x = rng.normal(size=(3, IN_CHANNELS, h, w)).astype(np.float32)
        worst = max(worst, float(np.abs(net.probabilities(x) - graph.probabilities(x)).max()))
    return worst


def export_dir(source: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for k, path in enumerate(sorted(source.glob("fold_*.pt.xz"))):
        model = model_from_bytes(lzma.decompress(path.read_bytes()))
        (net,) = model.nets
        assert isinstance(net, UNet)
        data = onnx_bytes(net, model.held_out, model.meta)
        difference = check(net, OnnxNetwork(data), seed=k)
        if difference > TOLERANCE:
            raise SystemExit(f"{path}: the ONNX graph differs from the network by {difference:.2e}")
        out = target / path.name.replace(".pt.xz", ".onnx.xz")
        out.write_bytes(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME))
        print(f"{path.relative_to(source.parent)} -> {out} ({out.stat().st_size / 1e6:.2f} MB), "
              f"largest probability difference {difference:.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--weights-dir", type=Path, default=WEIGHTS)
    args = parser.parse_args()
    for kind in ("folds", "refine"):
        export_dir(args.weights_dir / kind, args.weights_dir / "onnx" / kind)


if __name__ == "__main__":
    main()
