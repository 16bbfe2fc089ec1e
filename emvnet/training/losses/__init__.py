"""Training losses of EMVNet (Sec. 4.1-4.2): content, ordinal, perceptual, adversarial, composite.

from emvnet.training.losses import GeneratorLoss, LossConfig
loss_fn = GeneratorLoss(LossConfig.for_task("hdr"))
terms = loss_fn([y2, y1, y], target)      # {"perceptual", "adversarial", "content", "ordinal", "total"}
terms["total"].backward()
d_loss = loss_fn.adversarial.discriminator_loss(y, target)   # the discriminator's step
"""

from emvnet.training.losses.composite import GeneratorLoss, LossConfig
from emvnet.training.losses.content import ContentLoss, mu_tonemap
from emvnet.training.losses.gan import (
    AdversarialLoss,
    PatchDiscriminator,
    relativistic_discriminator_loss,
    relativistic_generator_loss,
)
from emvnet.training.losses.ordinal import C_PAT, C_PIX, OrdinalLoss, continuity_constant, ordinal_penalty
from emvnet.training.losses.perceptual import (
    EfficientNetLite0,
    PerceptualLoss,
    VGG19Features,
    WeightsUnavailableError,
)

__all__ = [
    "C_PAT",
    "C_PIX",
    "AdversarialLoss",
    "ContentLoss",
    "EfficientNetLite0",
    "GeneratorLoss",
    "LossConfig",
    "OrdinalLoss",
    "PatchDiscriminator",
    "PerceptualLoss",
    "VGG19Features",
    "WeightsUnavailableError",
    "continuity_constant",
    "mu_tonemap",
    "ordinal_penalty",
    "relativistic_discriminator_loss",
    "relativistic_generator_loss",
]
