"""Reading our HDR outputs back with the reference decoders, and the boxes they must carry.

Ultra HDR decodes through libultrahdr (`imagecodecs.ultrahdr_decode`), AVIF through libavif
(`imagecodecs.avif_decode`); both come back in SDR-white units (`emvnet.io.rendition`) so that a test
compares them with `render(hdr).lin`. The box walkers read what a file claims, independently of the
encoders: JPEG APP markers (per image of an MPF file) and the ISO BMFF `colr` box of an AVIF.
"""

from __future__ import annotations

import struct

import imagecodecs
import numpy as np

from emvnet.io.avif import HLG_SDR_WHITE, SDR_WHITE_NITS
from emvnet.io.rendition import BT709_TO_BT2020
from emvnet.io.tonemap import hlg_decode, luminance, pq_decode

ISO_21496_URN = b"urn:iso:std:iso:ts:21496:-1"


def decode_ultrahdr(data: bytes) -> np.ndarray:
    """Linear BT.709 RGB (H, W, 3) in SDR-white units, at the gain map's full boost."""
    return imagecodecs.ultrahdr_decode(data).astype(np.float32)[..., :3]


def decode_avif(data: bytes, transfer: str = "pq", bits: int = 10) -> np.ndarray:
    """Linear BT.709 RGB (H, W, 3) in SDR-white units of an HDR AVIF (PQ or scene-linear HLG)."""
    signal = imagecodecs.avif_decode(data).astype(np.float32) / ((1 << bits) - 1)
    bt2020 = pq_decode(signal) / SDR_WHITE_NITS if transfer == "pq" else hlg_decode(signal) / HLG_SDR_WHITE
    return bt2020 @ np.linalg.inv(BT709_TO_BT2020).T


def assert_within_tolerance(decoded: np.ndarray, expected: np.ndarray) -> None:
    """The tolerance of both HDR formats, over the gain map's range (from 5 % of SDR white up to the
    headroom): luminance within 2 % at the median and 6 % for 95 % of pixels, colour channels within
    3 % at the median. What is left is lossy coding (JPEG base and gain map, AV1)."""
    lum = luminance(expected)
    inside = lum > 0.05
    lum_err = np.abs(luminance(decoded) - lum)[inside] / lum[inside]
    assert np.median(lum_err) < 0.02, f"median luminance error {np.median(lum_err):.3f}"
    assert np.percentile(lum_err, 95) < 0.06, f"p95 luminance error {np.percentile(lum_err, 95):.3f}"
    chan_err = np.abs(decoded - expected)[inside] / np.maximum(expected[inside], 0.05)
    assert np.median(chan_err) < 0.03, f"median channel error {np.median(chan_err):.3f}"


def jpeg_images(data: bytes) -> list[list[tuple[int, bytes]]]:
    """The (marker, payload) of the APPn segments of each JPEG (SOI .. EOI) in the file, in order."""
    images, pos = [], 0
    while (start := data.find(b"\xff\xd8\xff", pos)) >= 0:
        segments, at = [], start + 2
        while at + 4 <= len(data) and data[at] == 0xFF and data[at + 1] != 0xDA:  # up to start of scan
            marker, length = data[at + 1], struct.unpack(">H", data[at + 2 : at + 4])[0]
            if 0xE0 <= marker <= 0xEF:
                segments.append((marker, data[at + 4 : at + 2 + length]))
            at += 2 + length
        images.append(segments)
        end = data.find(b"\xff\xd9", at)
        pos = len(data) if end < 0 else end + 2
        # A gain map JPEG follows its base image's EOI directly; entropy data cannot hold FFD8FF.
    return images


def _boxes(data: bytes, start: int, end: int) -> dict[bytes, tuple[int, int]]:
    found, at = {}, start
    while at + 8 <= end:
        size, kind = struct.unpack(">I4s", data[at : at + 8])
        size = end - at if size == 0 else size
        found.setdefault(kind, (at + 8, at + size))
        at += max(size, 8)
    return found


def avif_cicp(data: bytes) -> tuple[int, int, int, bool]:
    """(primaries, transfer, matrix, full range) of the nclx `colr` box: meta > iprp > ipco > colr."""
    meta = _boxes(data, 0, len(data))[b"meta"]
    iprp = _boxes(data, meta[0] + 4, meta[1])[b"iprp"]  # meta is a full box: 4 bytes version/flags
    ipco = _boxes(data, *iprp)[b"ipco"]
    colr = _boxes(data, *ipco)[b"colr"]
    assert data[colr[0] : colr[0] + 4] == b"nclx", "colr box should be nclx (CICP), not an ICC profile"
    primaries, transfer, matrix = struct.unpack(">HHH", data[colr[0] + 4 : colr[0] + 10])
    return primaries, transfer, matrix, bool(data[colr[0] + 10] & 0x80)
