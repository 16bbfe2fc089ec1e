"""Adversarial loss L_a with a relativistic average discriminator (Sec. 4.2, Eq. 6; ESRGAN).

With C the discriminator's raw output (logits) and sigma the logistic function, the relativistic
average discriminator says how much more realistic x is than the average of the other kind:

    D(x_r, x_f) = sigma(C(x_r) - E[C(x_f)])

Generator (Eq. 6):      L_a = -E_real[log(1 - D(x_r, x_f))] - E_fake[log D(x_f, x_r)]
Discriminator (ESRGAN): L_D = -E_real[log D(x_r, x_f)]      - E_fake[log(1 - D(x_f, x_r))]

both computed as binary cross-entropies on logits (numerically stable). Eq. 6 sums the two terms
(ESRGAN's code averages them, a factor of 2 that the weight lambda absorbs; we follow the paper).

The discriminator is a small VGG-style patch discriminator (stride-2 conv stages, LeakyReLU) that
returns one logit per receptive-field patch, so any image size works. The paper uses VGG-19 as the
discriminator; this smaller network is a deliberate change for CPU-sized training. Both images are
mu-law tonemapped with the ground truth's peak (what the content loss compares), and raw packed
RGGB images are demosaiced first (Sec. 4.3) with `packed_to_rgb`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from emvnet.io.tonemap import MU
from emvnet.merge.isp_prior import packed_to_rgb
from emvnet.training.losses.content import check_pair, mu_tonemap, target_peak


class PatchDiscriminator(nn.Module):
    """VGG-style: per stage conv3x3 + conv4x4 stride 2 (BatchNorm, LeakyReLU 0.2); logits (B, 1, h, w)."""

    def __init__(self, in_channels: int = 3, widths: Sequence[int] = (32, 64, 128, 256)) -> None:
        super().__init__()
        if in_channels not in (3, 4):
            raise ValueError(f"in_channels must be 3 (RGB) or 4 (packed RGGB), got {in_channels}")
        if not widths or any(w < 1 for w in widths):
            raise ValueError(f"widths must be positive channel counts, got {widths}")
        self.in_channels = in_channels
        layers: list[nn.Module] = []
        c_in = 3  # packed raw is demosaiced to RGB before the first layer
        for k, width in enumerate(widths):
            layers += [nn.Conv2d(c_in, width, 3, padding=1, bias=k == 0)]
            if k > 0:
                layers.append(nn.BatchNorm2d(width))
            layers += [
                nn.LeakyReLU(0.2),
                nn.Conv2d(width, width, 4, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.LeakyReLU(0.2),
            ]
            c_in = width
        layers.append(nn.Conv2d(c_in, 1, 3, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, mu_img: torch.Tensor) -> torch.Tensor:
        """Logits (B, 1, H / 2^n, W / 2^n) of tonemapped images (B, in_channels, H, W)."""
        if mu_img.ndim != 4 or mu_img.shape[1] != self.in_channels:
            shape = tuple(mu_img.shape)
            raise ValueError(f"discriminator expects (B, {self.in_channels}, H, W), got {shape}")
        x = packed_to_rgb(mu_img) if self.in_channels == 4 else mu_img
        return self.body(x)


def relativistic_generator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Eq. 6: real images should look *less* real than the average fake, fakes more than the real."""
    real_rel = real_logits - fake_logits.mean()
    fake_rel = fake_logits - real_logits.mean()
    return F.binary_cross_entropy_with_logits(
        real_rel, torch.zeros_like(real_rel)
    ) + F.binary_cross_entropy_with_logits(fake_rel, torch.ones_like(fake_rel))


def relativistic_discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """The discriminator's side: real more real than the average fake, and the reverse."""
    real_rel = real_logits - fake_logits.mean()
    fake_rel = fake_logits - real_logits.mean()
    return F.binary_cross_entropy_with_logits(
        real_rel, torch.ones_like(real_rel)
    ) + F.binary_cross_entropy_with_logits(fake_rel, torch.zeros_like(fake_rel))


@contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """Parameters of `module` take no gradient inside the block (the generator's step)."""
    flags = [p.requires_grad for p in module.parameters()]
    for p in module.parameters():
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(module.parameters(), flags, strict=True):
            p.requires_grad_(flag)


class AdversarialLoss(nn.Module):
    """L_a for the generator and L_D for the discriminator, on linear prediction / ground truth.

    The trainer optimizes `self.discriminator` with `discriminator_loss` (which detaches the
    prediction) and adds `forward` (= `generator_loss`) to the generator's objective; during the
    generator's term the discriminator's parameters are frozen so no gradient accumulates on them.
    """

    def __init__(self, discriminator: PatchDiscriminator | None = None, mu: float | None = MU) -> None:
        super().__init__()
        if mu is not None and mu <= 0:
            raise ValueError(f"mu must be positive, got {mu}")
        self.discriminator = discriminator if discriminator is not None else PatchDiscriminator()
        self.mu = mu

    def _tonemapped(self, pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_pair(pred, target, "AdversarialLoss")
        peak = target_peak(target)
        return mu_tonemap(pred, peak, self.mu), mu_tonemap(target, peak, self.mu)

    def generator_loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        fake, real = self._tonemapped(pred, target)
        with frozen(self.discriminator):
            real_logits = self.discriminator(real).detach()
            fake_logits = self.discriminator(fake)
        return relativistic_generator_loss(real_logits, fake_logits)

    def discriminator_loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        fake, real = self._tonemapped(pred.detach(), target)
        return relativistic_discriminator_loss(self.discriminator(real), self.discriminator(fake))

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.generator_loss(pred, target)
