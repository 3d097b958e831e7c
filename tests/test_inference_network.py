"""The network layout: `base.`-prefixed state dicts load strictly, anything else fails."""

from __future__ import annotations

import io

import pytest
import torch

from app.inference.network import EyeDiseaseClassifier, load_network, seeded_state_dict


def test_state_dict_layout_matches_the_earlier_back_end() -> None:
    keys = list(seeded_state_dict(4, seed=1))
    assert keys[0] == "base.conv1.weight"
    assert keys[-1] == "base.fc.3.bias"
    assert all(k.startswith("base.") for k in keys)
    assert {"base.fc.0.weight", "base.fc.0.bias", "base.fc.3.weight"} <= set(keys)


def test_strict_load_round_trip_through_a_pth_file() -> None:
    state = seeded_state_dict(4, seed=1)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, map_location="cpu", weights_only=True)
    network = load_network(loaded, 4)
    assert not network.training
    for name, tensor in network.state_dict().items():
        assert torch.equal(tensor, state[name])
    with torch.inference_mode():
        logits = network(torch.zeros(2, 3, 224, 224))
    assert logits.shape == (2, 4)


@pytest.mark.parametrize("damage", ["unprefixed", "missing", "unexpected", "class_count"])
def test_wrong_keys_or_shapes_fail(damage: str) -> None:
    state = seeded_state_dict(4, seed=1)
    num_classes = 4
    if damage == "unprefixed":  # a bare resnet18 state dict
        state = {k.removeprefix("base."): v for k, v in state.items()}
    elif damage == "missing":
        del state["base.fc.3.bias"]
    elif damage == "unexpected":
        state["base.fc.4.weight"] = torch.zeros(1)
    else:
        num_classes = 5
    with pytest.raises(RuntimeError, match="state_dict"):
        load_network(state, num_classes)


def test_seeded_weights_are_deterministic_and_leave_the_global_rng_alone() -> None:
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    first = seeded_state_dict(4, seed=7)
    assert torch.equal(torch.rand(3), expected_next)
    second = seeded_state_dict(4, seed=7)
    assert all(torch.equal(first[k], second[k]) for k in first)
    other = seeded_state_dict(4, seed=8)
    assert not torch.equal(first["base.conv1.weight"], other["base.conv1.weight"])


def test_forward_returns_logits_not_probabilities() -> None:
    network = EyeDiseaseClassifier(3).eval()
    with torch.inference_mode():
        out = network(torch.randn(1, 3, 224, 224))
    assert out.shape == (1, 3)
    assert not torch.allclose(out.sum(), torch.tensor(1.0))
