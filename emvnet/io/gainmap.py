"""Ultra HDR (ISO 21496-1 gain-map JPEG) output through Google's libultrahdr.

The file is an ordinary sRGB JPEG, our display tonemap, that every viewer shows, plus a second JPEG
(the gain map, found through MPF) and ISO 21496-1 metadata that tell HDR displays how much brighter
each pixel may be shown, up to the headroom. The encoder is libultrahdr's "API-1": it takes both
intents, the SDR picture and the linear HDR (half-float, SDR-white units, `rendition.render`),
computes the gain map between them and writes every box itself.

`imagecodecs.ultrahdr_encode` only passes the HDR intent (libultrahdr then tonemaps the SDR base
with its own curve), so this module calls the libultrahdr that imagecodecs ships, through ctypes,
with the few entry points of its public C API (`ultrahdr_api.h`, 1.4) that API-1 needs. Decoding,
for tests and clients, is `imagecodecs.ultrahdr_decode`.
"""

from __future__ import annotations

import ctypes
import functools
from typing import Any

import numpy as np

from emvnet.errors import UnsupportedFormatError
from emvnet.io.rendition import MAX_HEADROOM, Rendition
from emvnet.io.tonemap import srgb_decode

# ultrahdr_api.h enumerations (values fixed by the C API).
_FMT_RGBA8888, _FMT_RGBA_HALF = 3, 4
_CG_BT709 = 0
_CT_LINEAR, _CT_SRGB = 0, 3
_CR_FULL = 1
_HDR_IMG, _SDR_IMG, _BASE_IMG, _GAIN_MAP_IMG = 0, 1, 2, 3
_BEST_QUALITY = 1

# Gain-map resolution divisor: 1 keeps edges of bright regions exact (halos are what viewers notice
# first); the map is a small, smooth JPEG, so full size costs little.
GAIN_MAP_SCALE = 1
MIN_SIDE = 8  # libultrahdr refuses smaller images
# ISO 21496-1's recommended offsets (libultrahdr's defaults): gains of near-black pixels stay finite.
_GAIN_OFFSET = 1.0 / 64.0
_MIN_BOOST_FLOOR = 1.0 / 16.0


class _Error(ctypes.Structure):
    _fields_ = [("error_code", ctypes.c_int), ("has_detail", ctypes.c_int), ("detail", ctypes.c_char * 256)]


class _RawImage(ctypes.Structure):
    _fields_ = [
        ("fmt", ctypes.c_int),
        ("cg", ctypes.c_int),
        ("ct", ctypes.c_int),
        ("range", ctypes.c_int),
        ("w", ctypes.c_uint),
        ("h", ctypes.c_uint),
        ("planes", ctypes.c_void_p * 3),
        ("stride", ctypes.c_uint * 3),
    ]


class _Compressed(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("data_sz", ctypes.c_size_t),
        ("capacity", ctypes.c_size_t),
        ("cg", ctypes.c_int),
        ("ct", ctypes.c_int),
        ("range", ctypes.c_int),
    ]


_SIGNATURES: dict[str, tuple[Any, list[Any]]] = {
    "uhdr_create_encoder": (ctypes.c_void_p, []),
    "uhdr_release_encoder": (None, [ctypes.c_void_p]),
    "uhdr_enc_set_raw_image": (_Error, [ctypes.c_void_p, ctypes.POINTER(_RawImage), ctypes.c_int]),
    "uhdr_enc_set_quality": (_Error, [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]),
    "uhdr_enc_set_preset": (_Error, [ctypes.c_void_p, ctypes.c_int]),
    "uhdr_enc_set_gainmap_scale_factor": (_Error, [ctypes.c_void_p, ctypes.c_int]),
    "uhdr_enc_set_min_max_content_boost": (_Error, [ctypes.c_void_p, ctypes.c_float, ctypes.c_float]),
    "uhdr_encode": (_Error, [ctypes.c_void_p]),
    "uhdr_get_encoded_stream": (ctypes.POINTER(_Compressed), [ctypes.c_void_p]),
}


@functools.cache
def _libuhdr() -> ctypes.CDLL:
    # The imagecodecs extension links libultrahdr (and the libjpeg it needs) from the wheel; symbols
    # looked up through the extension's handle resolve in that already-loaded copy.
    from imagecodecs import _ultrahdr

    lib = ctypes.CDLL(_ultrahdr.__file__)
    for name, (restype, argtypes) in _SIGNATURES.items():
        func = getattr(lib, name)
        func.restype, func.argtypes = restype, argtypes
    return lib


def _check(error: _Error, call: str) -> None:
    if error.error_code != 0:
        detail = error.detail.decode(errors="replace") if error.has_detail else f"code {error.error_code}"
        raise RuntimeError(f"libultrahdr {call} failed: {detail}")


def _raw(pixels: np.ndarray, fmt: int, transfer: int) -> _RawImage:
    height, width = pixels.shape[:2]
    image = _RawImage(fmt=fmt, cg=_CG_BT709, ct=transfer, range=_CR_FULL, w=width, h=height)
    image.planes[0] = pixels.ctypes.data
    image.stride[0] = width  # in pixels
    return image


def gain_range(rendition: Rendition) -> tuple[float, float]:
    """(min, max) content boost: the gains, HDR over SDR, that the map must span.

    Not just (1, headroom): the tonemap compresses tones just under white (a pixel at 3x SDR white
    may show at 0.7 in SDR, a gain of 4.3) and desaturates bright colours channel by channel.
    """
    sdr_lin = srgb_decode(np.arange(256, dtype=np.float32) / 255.0)[rendition.sdr]  # 8-bit: a table
    gain = (rendition.lin + _GAIN_OFFSET) / (sdr_lin + _GAIN_OFFSET)
    low = float(np.clip(gain.min(), _MIN_BOOST_FLOOR, 1.0))
    high = float(np.clip(gain.max(), 1.0, MAX_HEADROOM))
    return low, max(high, low * 1.001)  # a flat image still needs max > min


def encode_ultrahdr(rendition: Rendition, quality: int) -> bytes:
    """Ultra HDR JPEG bytes: SDR base `rendition.sdr`, gain map up to `rendition.headroom`."""
    height, width = rendition.sdr.shape[:2]
    if min(height, width) < MIN_SIDE:
        raise UnsupportedFormatError(
            f"Ultra HDR needs an image of at least {MIN_SIDE}x{MIN_SIDE} pixels, not {width}x{height}"
        )
    sdr = np.empty((height, width, 4), dtype=np.uint8)  # RGBA8888, alpha ignored
    sdr[..., :3], sdr[..., 3] = rendition.sdr, 255
    hdr = np.empty((height, width, 4), dtype=np.float16)  # RGBA half float, linear
    hdr[..., :3], hdr[..., 3] = rendition.lin, 1.0
    lib = _libuhdr()
    encoder = lib.uhdr_create_encoder()
    if not encoder:
        raise MemoryError("libultrahdr could not create an encoder")
    try:
        hdr_raw, sdr_raw = _raw(hdr, _FMT_RGBA_HALF, _CT_LINEAR), _raw(sdr, _FMT_RGBA8888, _CT_SRGB)
        _check(lib.uhdr_enc_set_raw_image(encoder, ctypes.byref(hdr_raw), _HDR_IMG), "set HDR image")
        _check(lib.uhdr_enc_set_raw_image(encoder, ctypes.byref(sdr_raw), _SDR_IMG), "set SDR image")
        _check(lib.uhdr_enc_set_preset(encoder, _BEST_QUALITY), "set preset")
        _check(lib.uhdr_enc_set_quality(encoder, quality, _BASE_IMG), "set base quality")
        _check(lib.uhdr_enc_set_quality(encoder, quality, _GAIN_MAP_IMG), "set gain map quality")
        _check(lib.uhdr_enc_set_gainmap_scale_factor(encoder, GAIN_MAP_SCALE), "set gain map scale")
        _check(lib.uhdr_enc_set_min_max_content_boost(encoder, *gain_range(rendition)), "set boost range")
        _check(lib.uhdr_encode(encoder), "encode")
        stream = lib.uhdr_get_encoded_stream(encoder)
        if not stream:
            raise RuntimeError("libultrahdr returned no encoded stream")
        return ctypes.string_at(stream.contents.data, stream.contents.data_sz)
    finally:
        lib.uhdr_release_encoder(encoder)
