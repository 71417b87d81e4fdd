"""The reference networks: shapes, and the two layers bsopt writes for speed (dropout, flatten)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bsopt.training.models import Dropout, Flatten, build_model


@pytest.mark.parametrize("shape", [(1, 28, 28), (1, 8, 8), (3, 32, 32)])
@pytest.mark.parametrize("name", ["cnn", "mlp"])
def test_models_map_any_input_shape_to_class_scores(name, shape):
    model = build_model(name, shape, 10)
    assert model(torch.randn(4, *shape)).shape == (4, 10)


def test_dropout_keeps_each_element_with_probability_1_minus_p_and_rescales():
    torch.manual_seed(0)
    layer = Dropout(0.25)
    x = torch.ones(200_000)
    y = layer(x)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.75) < 0.005
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / 0.75))
    layer.eval()
    assert torch.equal(layer(x), x)


def test_dropout_gradient_is_the_mask():
    torch.manual_seed(1)
    x = torch.randn(64, 32, requires_grad=True)
    y = Dropout(0.5)(x)
    y.sum().backward()
    assert torch.equal(x.grad, (y != 0).float() * 2)


def test_dropout_keeps_the_channels_last_layout_and_edge_probabilities_behave_like_torch():
    x = torch.randn(4, 8, 6, 6).contiguous(memory_format=torch.channels_last)
    y = Dropout(0.25)(x)
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(Dropout(0.0)(x), x)
    assert torch.equal(Dropout(1.0)(x), torch.zeros_like(x))


def test_flatten_returns_channels_last_gradient_with_the_same_values():
    torch.manual_seed(2)
    base = torch.randn(4, 8, 6, 6)
    weights = torch.randn(4, 8 * 6 * 6)
    x_cl = base.clone().contiguous(memory_format=torch.channels_last).requires_grad_()
    x_ref = base.clone().requires_grad_()
    out = Flatten()(x_cl)
    ref = nn.Flatten()(x_ref)
    assert torch.equal(out, ref)
    (out * weights).sum().backward()
    (ref * weights).sum().backward()
    assert torch.equal(x_cl.grad, x_ref.grad)
    assert x_cl.grad.is_contiguous(memory_format=torch.channels_last)


def test_flatten_of_an_nchw_input_is_torchs_flatten():
    leaf = torch.randn(2, 3, 4, 4, requires_grad=True)
    out = Flatten()(leaf * 2)
    out.add_(1)  # like nn.Flatten's output of a non-leaf, it may be modified in place
    out.sum().backward()
    assert torch.equal(leaf.grad, torch.full_like(leaf, 2.0))


def test_cnn_gradients_agree_in_both_memory_formats():
    torch.manual_seed(3)
    model = build_model("cnn", (1, 28, 28), 10).eval()  # eval: no dropout randomness
    twin = build_model("cnn", (1, 28, 28), 10).eval()
    twin.load_state_dict(model.state_dict())
    twin.to(memory_format=torch.channels_last)
    x = torch.randn(5, 1, 28, 28)
    model(x).square().sum().backward()
    twin(x.contiguous(memory_format=torch.channels_last)).square().sum().backward()
    for a, b in zip(model.parameters(), twin.parameters(), strict=True):
        assert torch.allclose(a.grad, b.grad, rtol=1e-4, atol=1e-5)


def test_a_users_factory_is_built_with_its_arguments(tmp_path, monkeypatch) -> None:
    from bsopt.training.models import model_factory

    monkeypatch.chdir(tmp_path)
    (tmp_path / "factories.py").write_text(
        "from torch import nn\n"
        "def wide(input_shape, num_classes, width=4):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(input_shape[1] * input_shape[2], "
        "width), nn.Linear(width, num_classes))\n")
    network = model_factory("factories:wide", {"width": 7})((1, 8, 8), 3)
    assert network[1].out_features == 7 and network[2].out_features == 3
    assert network(torch.zeros(2, 1, 8, 8)).shape == (2, 3)
    assert isinstance(model_factory("mlp")((1, 8, 8), 10), nn.Module)
