"""The shipped ONNX graphs: the networks the training wrote, run without PyTorch."""

from __future__ import annotations

import lzma
import subprocess
import sys

import numpy as np
import pytest

from analysis.vertebrae.inference import IN_CHANNELS
from analysis.vertebrae.net import UNet, model_from_bytes
from node.pipeline.model import FOLDS_DIR, REFINE_DIR, WEIGHTS_DIR, fold_paths, load_model


@pytest.mark.parametrize(("kind", "onnx_dir"), [("folds", FOLDS_DIR), ("refine", REFINE_DIR)])
def test_every_trained_network_is_exported_and_gives_its_probabilities(kind: str, onnx_dir: object) -> None:
    trained = sorted((WEIGHTS_DIR / kind).glob("fold_*.pt.xz"))
    exported = fold_paths(onnx_dir)  # type: ignore[arg-type]
    assert [p.name.split(".")[0] for p in exported] == [p.name.split(".")[0] for p in trained], (
        "run scripts/export_onnx.py after training"
    )
    x = np.random.default_rng(0).normal(size=(2, IN_CHANNELS, 80, 64)).astype(np.float32)
    for source, graph_path in zip(trained, exported, strict=True):
        model = model_from_bytes(lzma.decompress(source.read_bytes()))
        graph = load_model(graph_path, threads=1)
        assert graph.held_out == model.held_out
        (net,) = model.nets
        assert isinstance(net, UNet)
        (onnx_net,) = graph.nets
        np.testing.assert_allclose(onnx_net.probabilities(x), net.probabilities(x), atol=1e-4)


def test_the_product_model_loads_and_runs_without_pytorch() -> None:
    code = (
        "import sys, numpy as np\n"
        "from node.pipeline.model import shipped_model\n"
        "m = shipped_model()\n"
        "from analysis.vertebrae.model import predict_work\n"
        "p = predict_work(m, np.zeros((3, 40, 30), np.uint8), (3.0, 1.0, 1.0))\n"
        "assert p.shape[-1] == 3\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "print(len(m.nets), len(m.refiners))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["5", "5"]
