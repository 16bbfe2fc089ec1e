"""The simulated camera: response curves (CRFs), sensor noise, quantization and clipping (Sec. 5.1).

Units: `lin` arrays are linear sensor values with 1.0 = the clipping level of that frame (what
`emvnet.merge.bracket.linearize` returns at inference); `ldr` arrays are display-encoded code values in
[0, 1] (what a camera writes to JPEG/PNG/TIFF). Noise parameters are in the same linear units.

The network assumes a gamma-2.2 response at inference (`emvnet.io.tonemap.ENCODING_GAMMA`), so the
simulator draws gamma 2.2 often and a family of other plausible responses otherwise: a bare power
law (gamma 1.8..2.6), the sRGB curve, and power laws with a film-like toe and shoulder. Training on
mismatched responses teaches the merge to tolerate real cameras' curves.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from emvnet.io.tonemap import ENCODING_GAMMA, srgb_decode, srgb_encode

CrfKind = Literal["gamma", "srgb", "filmic"]

# Entries of the tables through which non-closed-form responses are inverted: 4096 steps keep the
# inversion error below one 12-bit code.
_TABLE_SIZE = 4096


@dataclass(frozen=True)
class Crf:
    """A monotone camera response f: linear [0, 1] -> display [0, 1] with f(0) = 0 and f(1) = 1.

    "gamma": x ** (1 / gamma). "srgb": the IEC 61966-2-1 curve. "filmic": the power law followed by
    a toe (y ** (1 + toe): deeper shadows) and a shoulder (y (1 + s) / (1 + s y): compressed
    highlights), the shape of many in-camera JPEG curves.
    """

    kind: CrfKind = "gamma"
    gamma: float = ENCODING_GAMMA
    toe: float = 0.0
    shoulder: float = 0.0

    def __post_init__(self) -> None:
        assert 1.0 <= self.gamma <= 3.5, f"CRF gamma {self.gamma} is implausible"
        assert self.toe >= 0.0 and self.shoulder >= 0.0, "toe and shoulder must be non-negative"

    @property
    def name(self) -> str:
        if self.kind == "srgb":
            return "srgb"
        if self.kind == "gamma":
            return f"gamma{self.gamma:.2f}"
        return f"filmic(g={self.gamma:.2f},toe={self.toe:.2f},sh={self.shoulder:.2f})"

    def encode(self, lin: np.ndarray) -> np.ndarray:
        """Linear [0, 1] -> display [0, 1], float32 (input clipped to [0, 1] first)."""
        x = np.clip(lin, 0.0, 1.0).astype(np.float32, copy=False)
        if self.kind == "srgb":
            return srgb_encode(x)
        ldr = np.power(x, np.float32(1.0 / self.gamma), dtype=np.float32)
        if self.kind == "filmic":
            if self.toe > 0:
                ldr = np.power(ldr, np.float32(1.0 + self.toe), dtype=np.float32)
            if self.shoulder > 0:
                s = np.float32(self.shoulder)
                ldr = ldr * (1 + s) / (1 + s * ldr)
        return ldr

    def decode(self, ldr: np.ndarray) -> np.ndarray:
        """Display [0, 1] -> linear [0, 1], float32: the inverse response."""
        y = np.clip(ldr, 0.0, 1.0).astype(np.float32, copy=False)
        if self.kind == "srgb":
            return srgb_decode(y)
        if self.kind == "gamma":
            return np.power(y, np.float32(self.gamma), dtype=np.float32)
        codes, lin = _inverse_table(self)
        return np.interp(y, codes, lin).astype(np.float32)


@functools.lru_cache(maxsize=256)
def _inverse_table(crf: Crf) -> tuple[np.ndarray, np.ndarray]:
    """(display codes, linear values) sampled densely near black, where the curves are steep."""
    lin = np.linspace(0.0, 1.0, _TABLE_SIZE, dtype=np.float64) ** 3
    return crf.encode(lin.astype(np.float32)).astype(np.float64), lin


GAMMA_22 = Crf("gamma", ENCODING_GAMMA)


@dataclass(frozen=True)
class CrfConfig:
    """How often each response is drawn and the ranges of its parameters."""

    p_default: float = 0.5  # gamma 2.2 exactly: what inference assumes, so the common case is exact
    p_srgb: float = 0.15
    p_filmic: float = 0.2  # the rest is a bare power law with a random gamma
    gamma_range: tuple[float, float] = (1.8, 2.6)
    toe_range: tuple[float, float] = (0.0, 0.3)
    shoulder_range: tuple[float, float] = (0.0, 1.5)


def sample_crf(rng: np.random.Generator, config: CrfConfig) -> Crf:
    u = rng.random()
    if u < config.p_default:
        return GAMMA_22
    if u < config.p_default + config.p_srgb:
        return Crf("srgb")
    gamma = float(rng.uniform(*config.gamma_range))
    if u < config.p_default + config.p_srgb + config.p_filmic:
        return Crf(
            "filmic", gamma, float(rng.uniform(*config.toe_range)), float(rng.uniform(*config.shoulder_range))
        )
    return Crf("gamma", gamma)


@dataclass(frozen=True)
class Noise:
    """Heteroscedastic sensor noise: variance = shot * lin + read ** 2 (lin: 1.0 = clipping).

    `shot` is the variance per unit signal (1 / full-well electrons), `read` the read-noise
    standard deviation, both in linear units of the frame.
    """

    shot: float = 0.0
    read: float = 0.0

    def apply(self, lin: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Noisy copy of `lin` (float32, same shape); one normal draw per sample."""
        if self.shot <= 0 and self.read <= 0:
            return lin.astype(np.float32, copy=True)
        var = np.maximum(lin, 0.0) * np.float32(self.shot) + np.float32(self.read**2)
        draw = rng.standard_normal(lin.shape, dtype=np.float32)
        return (lin + np.sqrt(var, dtype=np.float32) * draw).astype(np.float32, copy=False)


@dataclass(frozen=True)
class NoiseConfig:
    """Ranges after Brooks et al. 2019 (Unprocessing): log-uniform shot noise, read noise tied to it.

    Their fit (log read variance ~ 2.18 log shot + 1.20, spread 0.26) describes phone and DSLR
    sensors from base ISO up to about ISO 3200.
    """

    log_shot_range: tuple[float, float] = (math.log(1e-4), math.log(1.2e-2))
    read_slope: float = 2.18
    read_intercept: float = 1.20
    read_spread: float = 0.26
    p_clean: float = 0.05  # occasionally noise-free, so the network also sees the ideal case


def sample_noise(rng: np.random.Generator, config: NoiseConfig) -> Noise:
    """Noise of the base (reference) exposure; all frames of a burst share the sensor and ISO."""
    if rng.random() < config.p_clean:
        return Noise()
    log_shot = float(rng.uniform(*config.log_shot_range))
    log_read_var = (
        config.read_slope * log_shot + config.read_intercept + config.read_spread * float(rng.normal())
    )
    return Noise(shot=math.exp(log_shot), read=math.sqrt(math.exp(log_read_var)))


def quantize(x: np.ndarray, bits: int) -> np.ndarray:
    """Round [0, 1] values to `bits`-bit codes and back to [0, 1] (float32)."""
    assert 1 <= bits <= 16, f"unsupported bit depth {bits}"
    levels = np.float32(2**bits - 1)
    return (np.rint(np.clip(x, 0.0, 1.0) * levels) / levels).astype(np.float32, copy=False)


def expose_ldr(lin: np.ndarray, crf: Crf, noise: Noise, bits: int, rng: np.random.Generator) -> np.ndarray:
    """What an RGB camera writes for linear exposure `lin` (unclipped): noise, clip, CRF, quantize."""
    noisy = noise.apply(lin, rng)
    return quantize(crf.encode(noisy), bits)  # encode clips to [0, 1]: the sensor's full well
