"""Tonemappers and transfer curves: the metric's mu-law, a display curve for pleasant 8-bit output,
and the sRGB, PQ (SMPTE ST 2084) and HLG (ITU-R BT.2100) curves.

`mu_law` is the compressor used by the HDR literature's PSNR-mu / SSIM-mu (Kalantari et al. 2017,
mu = 5000), applied after normalizing by the ground truth's maximum. `display` makes an sRGB 8-bit
picture from linear HDR: automatic exposure on the log-average luminance, extended Reinhard on
luminance with a white point (colour ratios kept), then the sRGB transfer function.
"""

from __future__ import annotations

import functools

import numpy as np

MU = 5000.0
# The power law that display-encoded frames are assumed to follow (the paper's default inverse camera
# response and the networks' training convention): linear = code ** ENCODING_GAMMA. Every module
# that moves between code values and linear values without a fitted response uses it.
ENCODING_GAMMA = 2.2

# Rec. 709 / sRGB luminance weights for linear RGB.
LUMA = (0.2126, 0.7152, 0.0722)
_LUMA = np.array(LUMA, dtype=np.float32)
# `display`'s white point: this percentile of the exposed luminance maps to 1.0.
WHITE_PERCENTILE = 99.5


def mu_law(hdr: np.ndarray, mu: float = MU) -> np.ndarray:
    """log(1 + mu x) / log(1 + mu) for x in [0, 1]; negative values are clipped to 0."""
    if mu <= 0:
        raise ValueError(f"mu must be positive, got {mu}")
    x = np.clip(hdr, 0.0, None)
    return (np.log1p(mu * x) / np.log1p(mu)).astype(np.float32)


def srgb_encode(lin: np.ndarray) -> np.ndarray:
    """Linear [0, 1] -> sRGB-encoded [0, 1] (IEC 61966-2-1 piecewise curve)."""
    x = np.clip(lin, 0.0, 1.0)
    out = np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1.0 / 2.4) - 0.055)
    return out.astype(np.float32)


def srgb_decode(enc: np.ndarray) -> np.ndarray:
    """sRGB-encoded [0, 1] -> linear [0, 1]."""
    x = np.clip(enc, 0.0, 1.0)
    out = np.where(x <= 0.04045, x / 12.92, np.power((x + 0.055) / 1.055, 2.4))
    return out.astype(np.float32)


# SMPTE ST 2084 (PQ) constants; PQ codes absolute luminance, 1.0 = 10000 cd/m2.
PQ_PEAK_NITS = 10000.0
_PQ_M1, _PQ_M2 = 2610.0 / 16384.0, 2523.0 / 4096.0 * 128.0
_PQ_C1, _PQ_C2, _PQ_C3 = 3424.0 / 4096.0, 2413.0 / 4096.0 * 32.0, 2392.0 / 4096.0 * 32.0
# ITU-R BT.2100 HLG OETF constants.
_HLG_A = 0.17883277
_HLG_B = 1.0 - 4.0 * _HLG_A
_HLG_C = 0.5 - _HLG_A * float(np.log(4.0 * _HLG_A))


def pq_encode(nits: np.ndarray) -> np.ndarray:
    """Absolute luminance (cd/m2) -> PQ signal in [0, 1] (ST 2084 inverse EOTF)."""
    y = np.power(np.clip(nits / PQ_PEAK_NITS, 0.0, 1.0), _PQ_M1)
    return np.power((_PQ_C1 + _PQ_C2 * y) / (1.0 + _PQ_C3 * y), _PQ_M2).astype(np.float32)


def pq_decode(signal: np.ndarray) -> np.ndarray:
    """PQ signal in [0, 1] -> absolute luminance (cd/m2) (ST 2084 EOTF)."""
    e = np.power(np.clip(signal, 0.0, 1.0), 1.0 / _PQ_M2)
    y = np.power(np.maximum(e - _PQ_C1, 0.0) / (_PQ_C2 - _PQ_C3 * e), 1.0 / _PQ_M1)
    return (y * PQ_PEAK_NITS).astype(np.float32)


def hlg_encode(scene: np.ndarray) -> np.ndarray:
    """Scene-linear [0, 1] -> HLG signal in [0, 1] (BT.2100 OETF)."""
    e = np.clip(scene, 0.0, 1.0)
    log = _HLG_A * np.log(np.maximum(12.0 * e - _HLG_B, 1e-12)) + _HLG_C
    return np.where(e <= 1.0 / 12.0, np.sqrt(3.0 * e), log).astype(np.float32)


def hlg_decode(signal: np.ndarray) -> np.ndarray:
    """HLG signal in [0, 1] -> scene-linear [0, 1] (BT.2100 inverse OETF)."""
    x = np.clip(signal, 0.0, 1.0)
    return np.where(x <= 0.5, x * x / 3.0, (np.exp((x - _HLG_C) / _HLG_A) + _HLG_B) / 12.0).astype(np.float32)


def luminance(rgb_lin: np.ndarray) -> np.ndarray:
    """Relative luminance (H, W) of linear RGB (H, W, 3)."""
    assert rgb_lin.shape[-1] == 3, f"luminance needs RGB, got shape {rgb_lin.shape}"
    return np.asarray(rgb_lin @ _LUMA, dtype=np.float32)


def clean_linear(hdr: np.ndarray) -> np.ndarray:
    """float32 copy of linear RGB with NaN/inf as 0 and negative values clipped to 0."""
    rgb = np.nan_to_num(np.asarray(hdr, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    return np.clip(rgb, 0.0, None)


def auto_exposure(lum: np.ndarray, key: float = 0.18) -> float:
    """The multiplier that puts the log-average of luminance `lum` at middle grey `key`.

    `display` maps dark tones linearly with this slope, so it is also the factor that takes the
    HDR's units to the SDR picture's (1.0 = SDR white) where the two agree.
    """
    log_avg = float(np.exp(np.mean(np.log(lum + 1e-6))))
    return key / max(log_avg, 1e-6)


def display(
    hdr: np.ndarray,
    key: float = 0.18,
    white_percentile: float = WHITE_PERCENTILE,
    exposure: float | None = None,
) -> np.ndarray:
    """Linear HDR (H, W, 3) -> sRGB uint8 (H, W, 3) for viewing.

    `key` is the target middle grey of the log-average luminance (Reinhard et al. 2002);
    `exposure` (a multiplier) overrides that automatic choice. The white point, the luminance that
    maps to 1.0, is the given percentile of the exposed luminance so a few specular pixels do not
    wash the picture out.
    """
    rgb = clean_linear(hdr)
    lum = luminance(rgb)
    if exposure is None:
        exposure = auto_exposure(lum, key)
    scaled = lum * exposure
    white = max(float(np.percentile(scaled, white_percentile)), 1.0)
    mapped = scaled * (1.0 + scaled / (white * white)) / (1.0 + scaled)
    ratio = np.where(lum > 1e-8, mapped / np.maximum(lum, 1e-8), exposure).astype(np.float32)
    out = rgb * ratio[..., None]
    # Colours brighter than white in one channel desaturate towards white instead of hue-shifting.
    peak = np.maximum(np.maximum(out[..., 0], out[..., 1]), out[..., 2])  # 10x faster than max(-1)
    over = np.clip(peak - 1.0, 0.0, None)[..., None]
    out = (out + over * (1.0 - out.clip(0.0, 1.0)) * 0.5).astype(np.float32)
    index = (np.clip(out, 0.0, 1.0) * (_LUT_SIZE - 1) + 0.5).astype(np.uint16)
    return _srgb8_lut()[index]


# 8-bit sRGB codes for linear values quantized to 14 bits: 4x faster than the power function on
# a 12 MP image, and no code differs from the exact curve by more than one step.
_LUT_SIZE = 1 << 14


@functools.cache
def _srgb8_lut() -> np.ndarray:
    lin = np.linspace(0.0, 1.0, _LUT_SIZE, dtype=np.float32)
    return np.round(srgb_encode(lin) * 255.0).astype(np.uint8)
