"""EMVNet forward/backward over every registered network variant, heads, outputs and the prior."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from emvnet import registry
from emvnet.merge import fusion
from emvnet.net import engine
from emvnet.net.config import VARIANTS, variant
from emvnet.net.model import EMVNet, build_model

NETWORKS = [spec.name for spec in engine.SPECS]


def _perturb_heads(model: EMVNet, std: float = 0.05) -> EMVNet:
    """Random output convolutions, so the residual is not zero and every weight gets a gradient."""
    gen = torch.Generator().manual_seed(1)
    for dec in model.decoders:
        with torch.no_grad():
            dec.out.weight.copy_(torch.randn(dec.out.weight.shape, generator=gen) * std)
    return model


def _inputs(model: EMVNet, n: int, h: int, w: int, blind: bool = False, seed: int = 0) -> tuple:
    gen = torch.Generator().manual_seed(seed)
    c = model.config.in_channels
    base = torch.rand(1, 1, c, h, w, generator=gen)
    ratios = torch.tensor([[1.0, 0.25, 4.0, 16.0, 0.0625][:n]])
    lin = (base * ratios.view(1, n, 1, 1, 1)).clamp(0, 1)  # static scene, frame i at t_i / t_ref
    sat = (lin >= 0.9).float()
    return lin, sat, ratios, model.gains(ratios, blind)


def test_every_variant_is_registered() -> None:
    """Each named variant of the config table is a network in the model registry."""
    for name in VARIANTS:
        spec = registry.get(name)
        assert spec.kind == "network"
        assert spec.input_layout == ("rgb" if variant(name).task == "rgb" else "rggb")


@pytest.mark.parametrize("name", NETWORKS)
@pytest.mark.parametrize("n", [2, 3, 4])
def test_forward_backward_shapes(name: str, n: int) -> None:
    """Y'', Y', Y have the head's channels and size for n frames of odd size, and gradients flow."""
    model = _perturb_heads(build_model(name, seed=0)).train()
    lin, sat, ratios, gains = _inputs(model, n, 17, 23)
    outs = model(lin, sat, ratios, gains, all_outputs=True)
    s = model.config.out_scale
    assert [tuple(y.shape) for y in outs] == [(1, model.config.out_channels, 17 * s, 23 * s)] * 3
    sum(y.mean() for y in outs).backward()
    grads = [p.grad for p in model.features.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(float(g.abs().sum()) > 0 for g in grads if g is not None)


@pytest.mark.parametrize("name", NETWORKS)
def test_inference_returns_final_output_only(name: str) -> None:
    """In inference only Y is decoded; it equals the last of the training outputs."""
    model = _perturb_heads(build_model(name, seed=0))
    args = _inputs(model, 3, 20, 28, blind=True)
    with torch.no_grad():
        (y,) = model(*args)
        outs = model(*args, all_outputs=True)
    torch.testing.assert_close(y, outs[-1])


@pytest.mark.parametrize(
    ("task", "cin", "cout", "scale"), [("rgb", 3, 3, 1), ("raw", 4, 4, 1), ("isp", 4, 3, 2)]
)
def test_heads_channels_and_size(task: str, cin: int, cout: int, scale: int) -> None:
    """RGB: 3 -> 3; raw: packed RGGB 4 -> 4; E2E-ISP: packed RGGB in, RGB at twice the size out."""
    config = variant(f"emvnet-fast-{task}")
    assert (config.in_channels, config.out_channels, config.out_scale) == (cin, cout, scale)
    model = build_model(config, seed=0)
    with torch.no_grad():
        (y,) = model(*_inputs(model, 2, 15, 21))
    assert y.shape == (1, cout, 15 * scale, 21 * scale)


def _still(model: EMVNet) -> EMVNet:
    """Zero score heads: a uniform choice over the symmetric motion grid, so every flow is 0."""
    with torch.no_grad():
        for head in model.scores:
            head.weight.zero_()
            head.bias.zero_()
    return model


def test_untrained_network_returns_the_weighted_merge() -> None:
    """With the zero-initialized output layer (and no motion) Y is `fusion.merge` of the frames."""
    model = _still(build_model("emvnet-fast-rgb", seed=0))
    assert model.config.prior == "weighted"
    lin, sat, ratios, gains = _inputs(model, 3, 24, 32)
    with torch.no_grad():
        (y,) = model(lin, sat, ratios, gains)
    expected = fusion.merge(lin, sat, ratios)  # each colour channel masked on its own
    torch.testing.assert_close(y, expected, rtol=1e-3, atol=1e-4)
    assert (y >= 0).all()


def test_reference_prior_returns_the_reference() -> None:
    """The "reference" prior (of checkpoints whose JSON names no prior): the reference wherever it
    does not clip."""
    model = build_model(replace(variant("emvnet-fast-raw"), prior="reference"), seed=0)
    lin, sat, ratios, gains = _inputs(model, 3, 24, 32)
    with torch.no_grad():
        (y,) = model(lin, sat, ratios, gains)
    ok = sat[:, 0].amax(1, keepdim=True).expand_as(y) == 0
    torch.testing.assert_close(y[ok], lin[:, 0][ok], rtol=1e-3, atol=1e-4)
    assert (y >= 0).all()


def test_output_is_non_negative_with_random_heads() -> None:
    """Large random residuals still give finite, non-negative linear HDR."""
    model = _perturb_heads(build_model("emvnet-fast-raw", seed=3), std=1.0)
    with torch.no_grad():
        (y,) = model(*_inputs(model, 2, 16, 16))
    assert torch.isfinite(y).all() and (y >= 0).all()


def test_unknown_variant_lists_the_known_ones() -> None:
    """Asking for an unknown variant names the ones that exist."""
    with pytest.raises(KeyError, match="emvnet-fast-rgb"):
        variant("emvnet-huge")


def test_cpu_feature_passes_give_the_batch_its_own_values(monkeypatch: pytest.MonkeyPatch) -> None:
    from emvnet.net.layers import rrdb

    model = build_model("emvnet-fast-rgb", seed=0)
    features, features_config = model.features, model.config.features
    cin = features.entry[0].in_channels // features_config.unshuffle**2  # before the pixel unshuffle
    x = torch.rand(5, cin, 32, 48, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        whole = features(x)
        monkeypatch.setattr(rrdb, "CPU_PASS_PIXELS", 2 * 32 * 48)  # passes of 2, 2 and 1 frames
        parts = features(x)
    assert parts.shape == whole.shape
    torch.testing.assert_close(parts, whole, rtol=0, atol=1e-6)
