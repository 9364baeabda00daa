"""The U-Net ensemble: inputs, probabilities, weights round trip (small random networks, no training)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis.vertebrae.inference import IN_CHANNELS, N_CLASSES, neighbour_step, predict_slices, stack_inputs
from analysis.vertebrae.model import BodyModel, model_from_onnx, predict_work
from analysis.vertebrae.net import UNet, model_from_bytes, model_to_bytes, onnx_bytes


def _net(seed: int) -> UNet:
    torch.manual_seed(seed)
    net = UNet((4, 8, 8, 8, 8))
    net.eval()
    return net


def test_stack_inputs_takes_the_neighbours_and_repeats_the_edges() -> None:
    work = np.arange(5, dtype=np.float32)[:, None, None] * np.ones((5, 2, 3), np.float32)
    x = stack_inputs(work, 2)
    assert x.shape == (5, IN_CHANNELS, 2, 3)
    assert x[:, 0, 0, 0].tolist() == [0, 1, 2, 3, 4]
    assert x[:, 1, 0, 0].tolist() == [0, 0, 0, 1, 2]
    assert x[:, 2, 0, 0].tolist() == [2, 3, 4, 4, 4]


@pytest.mark.parametrize(("spacing", "step"), [(1.0, 4), (3.0, 1), (4.0, 1), (1.75, 2), (9.0, 1)])
def test_neighbour_step_is_about_three_and_a_half_mm(spacing: float, step: int) -> None:
    assert neighbour_step(spacing) == step


@settings(max_examples=10, deadline=None)
@given(h=st.integers(9, 40), w=st.integers(9, 40), lr=st.integers(1, 5))
def test_probabilities_cover_any_slice_size_and_sum_to_one(h: int, w: int, lr: int) -> None:
    inputs = np.random.default_rng(h * w).normal(size=(lr, IN_CHANNELS, h, w)).astype(np.float32)
    prob = predict_slices([_net(0), _net(1)], inputs)
    assert prob.shape == (lr, h, w, N_CLASSES)
    np.testing.assert_allclose(prob.sum(axis=-1), 1.0, atol=1e-5)
    assert (prob >= 0).all()


def test_ensemble_is_the_mean_of_its_members() -> None:
    inputs = np.random.default_rng(3).normal(size=(2, IN_CHANNELS, 20, 24)).astype(np.float32)
    a, b = _net(0), _net(1)
    both = predict_slices([a, b], inputs)
    np.testing.assert_allclose(
        both, (predict_slices([a], inputs) + predict_slices([b], inputs)) / 2, atol=1e-5
    )


def test_predict_slices_rejects_a_wrong_shape() -> None:
    with pytest.raises(ValueError, match="inputs must have shape"):
        predict_slices([_net(0)], np.zeros((2, 1, 16, 16), np.float32))


def test_weights_round_trip_in_half_precision() -> None:
    model = BodyModel((_net(0), _net(1)), ("VB1_02",), {"seed": "7"})
    # the small test networks have other widths than the shipped ones: keep them in the payload
    loaded = model_from_bytes(model_to_bytes(model))
    assert loaded.held_out == ("VB1_02",)
    assert loaded.meta == {"seed": "7"}
    assert len(loaded.nets) == 2
    canonical = np.random.default_rng(5).integers(0, 255, size=(4, 30, 26)).astype(np.uint8)
    before = predict_work(model, canonical, (3.0, 1.0, 1.0))
    after = predict_work(loaded, canonical, (3.0, 1.0, 1.0))
    np.testing.assert_allclose(before, after, atol=2e-2)


def test_model_from_bytes_rejects_non_bytes() -> None:
    with pytest.raises(TypeError, match="data must be bytes"):
        model_from_bytes("weights")  # type: ignore[arg-type]


def test_body_model_needs_networks() -> None:
    with pytest.raises(TypeError, match="nets must be"):
        BodyModel(())
    with pytest.raises(TypeError, match="refiners must be"):
        BodyModel((_net(0),), refiners=("net",))  # type: ignore[arg-type]


def test_an_exported_graph_gives_the_networks_probabilities_and_keeps_its_fold() -> None:
    net = _net(3)
    graph = model_from_onnx(onnx_bytes(net, ("VB2_04",), {"seed": "3"}), threads=1)
    assert graph.held_out == ("VB2_04",)
    assert graph.meta == {"seed": "3"}
    canonical = np.random.default_rng(6).integers(0, 255, size=(5, 37, 29)).astype(np.uint8)
    want = predict_work(BodyModel((net,)), canonical, (3.0, 1.0, 1.0))
    got = predict_work(graph, canonical, (3.0, 1.0, 1.0))
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-5)
    # the exporter leaves the network as it found it (in eval mode)
    assert not net.training


def test_model_from_onnx_rejects_what_is_not_an_exported_network() -> None:
    with pytest.raises(TypeError, match="onnx_model must be bytes"):
        model_from_onnx("graph")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="threads must be at least 1"):
        model_from_onnx(onnx_bytes(_net(0)), threads=0)
