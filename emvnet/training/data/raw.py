"""Raw data for raw HDR and E2E-ISP (Sec. 4.3, 4.4, 5.1.1): Bayer pack/unpack, unprocess, process.

Packed layout matches `emvnet.io.raw`: a full-resolution RGGB mosaic (H, W) becomes (H/2, W/2, 4)
with channels R, G1 (R's row), G2 (B's row), B, black-subtracted and normalized so that 1.0 = the
white level, clipped to [0, 1] (noise below black is lost, as in files read by `emvnet.io`).

Unprocessing follows the idea of Brooks et al. 2019 ("Unprocessing images for learned raw
denoising"), written here from the description: linear sRGB radiance -> camera RGB through the
inverse of a colour correction matrix drawn from a few real cameras -> inverse white balance ->
mosaic -> exposure -> shot/read noise -> clipping at the white level -> quantization above a black
level. `process` runs the forward ISP (white balance, CCM, tonemap, sRGB) for E2E-ISP targets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emvnet.io.tonemap import display
from emvnet.training.data.camera import Noise

# XYZ (D65) -> camera RGB of a few widely used sensors, as published in their DNG ColorMatrix2
# (x 10000). A random convex combination of them is a plausible new camera.
_XYZ_TO_CAM = (
    (4716, 603, -830, -7798, 15474, 2480, -1496, 1937, 6651),  # Canon EOS 5D Mark II
    (6722, -635, -963, -4287, 12460, 2028, -908, 2162, 5668),  # Canon EOS 5D Mark III
    (8139, -2171, -663, -8747, 16541, 2295, -1925, 2008, 8093),  # Nikon D700
    (5271, -712, -347, -6153, 13653, 2763, -1601, 2366, 7242),  # Sony ILCE-7
)
_SRGB_TO_XYZ = np.array(
    [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]]
)


def pack_rggb(mosaic: np.ndarray) -> np.ndarray:
    """RGGB mosaic (H, W), H and W even -> (H/2, W/2, 4) as R, G1, G2, B (same dtype)."""
    assert mosaic.ndim == 2 and mosaic.shape[0] % 2 == 0 and mosaic.shape[1] % 2 == 0, "need an even (H, W)"
    return np.stack([mosaic[0::2, 0::2], mosaic[0::2, 1::2], mosaic[1::2, 0::2], mosaic[1::2, 1::2]], axis=-1)


def unpack_rggb(packed: np.ndarray) -> np.ndarray:
    """(H/2, W/2, 4) as R, G1, G2, B -> RGGB mosaic (H, W)."""
    assert packed.ndim == 3 and packed.shape[2] == 4, f"need (H/2, W/2, 4), got {packed.shape}"
    h2, w2 = packed.shape[:2]
    mosaic = np.empty((2 * h2, 2 * w2), dtype=packed.dtype)
    mosaic[0::2, 0::2] = packed[..., 0]
    mosaic[0::2, 1::2] = packed[..., 1]
    mosaic[1::2, 0::2] = packed[..., 2]
    mosaic[1::2, 1::2] = packed[..., 3]
    return mosaic


def mosaic_packed(rgb: np.ndarray) -> np.ndarray:
    """Full-resolution (H, W, 3) -> the packed RGGB samples (H/2, W/2, 4) a Bayer sensor would take."""
    assert rgb.ndim == 3 and rgb.shape[2] == 3, f"need (H, W, 3), got {rgb.shape}"
    h, w = rgb.shape[0] // 2 * 2, rgb.shape[1] // 2 * 2
    rgb = rgb[:h, :w]
    return np.stack([rgb[0::2, 0::2, 0], rgb[0::2, 1::2, 1], rgb[1::2, 0::2, 1], rgb[1::2, 1::2, 2]], axis=-1)


@dataclass(frozen=True, eq=False)
class CameraModel:
    """Colour and sensor facts of one simulated camera."""

    rgb_to_cam: np.ndarray  # (3, 3): linear sRGB -> camera RGB, rows sum to 1 (white stays white)
    wb_gains: tuple[float, float, float]  # as-shot white-balance multipliers (R, G, B), G = 1
    black_level: int  # sensor codes
    white_level: int  # sensor codes

    @property
    def cam_to_rgb(self) -> np.ndarray:
        return np.linalg.inv(self.rgb_to_cam)

    @property
    def bits(self) -> int:
        return int(self.white_level).bit_length()


@dataclass(frozen=True)
class RawConfig:
    """Ranges for `sample_camera` (white-balance ranges as in Brooks et al. for daylight scenes)."""

    red_gain_range: tuple[float, float] = (1.9, 2.4)
    blue_gain_range: tuple[float, float] = (1.5, 1.9)
    sensor_bits: tuple[int, ...] = (10, 12, 14)
    black_fraction_range: tuple[float, float] = (0.0, 0.07)  # black level / white level


def sample_camera(rng: np.random.Generator, config: RawConfig) -> CameraModel:
    weights = rng.dirichlet(np.ones(len(_XYZ_TO_CAM)))
    xyz_to_cam = sum(
        w * np.asarray(m, dtype=np.float64).reshape(3, 3) / 10000
        for w, m in zip(weights, _XYZ_TO_CAM, strict=True)
    )
    rgb_to_cam = np.asarray(xyz_to_cam) @ _SRGB_TO_XYZ
    rgb_to_cam = rgb_to_cam / rgb_to_cam.sum(axis=1, keepdims=True)
    bits = int(rng.choice(config.sensor_bits))
    white = 2**bits - 1
    black = round(white * rng.uniform(*config.black_fraction_range))
    gains = (float(rng.uniform(*config.red_gain_range)), 1.0, float(rng.uniform(*config.blue_gain_range)))
    return CameraModel(rgb_to_cam, gains, black, white)


def unprocess(lin_rgb: np.ndarray, camera: CameraModel) -> np.ndarray:
    """Linear sRGB (H, W, 3) -> white-balance-inverted camera RGB (H, W, 3), float32, same scale.

    What the sensor records before mosaicking; green is the unscaled channel, so its clipping
    level equals the sensor's (red and blue are divided by their gains).
    """
    cam = lin_rgb.astype(np.float32, copy=False) @ camera.rgb_to_cam.T.astype(np.float32)  # (H, W, 3)
    cam /= np.asarray(camera.wb_gains, dtype=np.float32)
    return np.asarray(cam, dtype=np.float32)


def process(cam_lin: np.ndarray, camera: CameraModel) -> np.ndarray:
    """Inverse of `unprocess`: camera RGB (H, W, 3) -> white-balanced linear sRGB (H, W, 3), float32."""
    wb = cam_lin.astype(np.float32, copy=False) * np.asarray(camera.wb_gains, dtype=np.float32)
    return np.asarray(wb @ camera.cam_to_rgb.T.astype(np.float32), dtype=np.float32)


def finish(lin_rgb: np.ndarray) -> np.ndarray:
    """The ISP's last stage for E2E-ISP targets: linear sRGB -> display sRGB (H, W, 3) in [0, 1].

    The house display curve (`emvnet.io.tonemap.display`) at unit exposure: extended Reinhard with a
    white point at the 99.5th percentile, then the sRGB transfer, quantized to 8 bits like a JPEG.
    """
    return display(np.clip(lin_rgb, 0.0, None), exposure=1.0).astype(np.float32) / np.float32(255.0)


def sensor_packed(
    cam_lin: np.ndarray, camera: CameraModel, noise: Noise, rng: np.random.Generator
) -> np.ndarray:
    """Exposed camera RGB (H, W, 3), 1.0 = white level -> normalized packed raw (H/2, W/2, 4).

    Mosaic, add noise, clip at the white level, quantize to sensor codes above the black level,
    subtract black and normalize: exactly what `emvnet.io` returns for a DNG of this capture.
    """
    packed = noise.apply(mosaic_packed(cam_lin), rng)  # (H/2, W/2, 4)
    levels = np.float32(camera.white_level - camera.black_level)
    return (np.rint(np.clip(packed, 0.0, 1.0) * levels) / levels).astype(np.float32)
