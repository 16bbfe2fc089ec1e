"""Encoding a linear HDR result: OpenEXR, Radiance and float TIFF keep the linear values; PNG and JPEG
get the tonemapped 8-bit sRGB picture from `emvnet.io.tonemap.display`; Ultra HDR JPEG (that picture
plus a gain map, `gainmap`) and AVIF (BT.2020 PQ or HLG, `avif`) get the picture HDR displays show,
in SDR-white units up to a headroom (`rendition`).

Input is float (H, W, 3) linear RGB; OpenEXR and TIFF also take (H, W, 4) packed raw (R, G1, G2, B).
NaN and inf are written as 0 in every format. Negative values survive in OpenEXR and TIFF (both store
signed floats); Radiance cannot store them and gets 0.
"""

from __future__ import annotations

import io
import os
import secrets
import struct
import zlib
from typing import Any, Literal

import cv2
import numpy as np
import tifffile

from emvnet.errors import UnsupportedFormatError
from emvnet.io.avif import AvifBits, HdrTransfer, encode_avif
from emvnet.io.exr import ExrPrecision, encode_exr
from emvnet.io.gainmap import encode_ultrahdr
from emvnet.io.rendition import check_headroom, render
from emvnet.io.tiff import RGGB_MARKER
from emvnet.io.tonemap import display

# "uhdr" is an Ultra HDR (ISO 21496-1 gain-map) JPEG; "jpeg" stays the plain SDR picture.
OutputFormat = Literal["exr", "hdr", "tiff", "png", "jpeg", "uhdr", "avif"]

_EXTENSIONS: dict[str, OutputFormat] = {
    ".exr": "exr",
    ".hdr": "hdr",
    ".pic": "hdr",
    ".tif": "tiff",
    ".tiff": "tiff",
    ".png": "png",
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".uhdr.jpg": "uhdr",
    ".uhdr.jpeg": "uhdr",
    ".avif": "avif",
}
FORMATS: tuple[OutputFormat, ...] = ("exr", "hdr", "tiff", "png", "jpeg", "uhdr", "avif")
HDR_DISPLAY_FORMATS: frozenset[OutputFormat] = frozenset({"uhdr", "avif"})


def output_format_for(path: str | os.PathLike[str]) -> OutputFormat:
    """The output format a file name asks for, by its extension (case-insensitive).

    A double extension wins over the last one: `x.uhdr.jpg` is Ultra HDR, `x.jpg` plain JPEG.
    """
    stem, ext = os.path.splitext(os.fspath(path))
    double = (os.path.splitext(stem)[1] + ext).lower()
    if double in _EXTENSIONS:
        return _EXTENSIONS[double]
    ext = ext.lower()
    if ext not in _EXTENSIONS:
        allowed = " ".join(_EXTENSIONS)
        raise UnsupportedFormatError(
            f"{os.fspath(path)}: cannot write '{ext or 'no extension'}' files; use one of {allowed}"
        )
    return _EXTENSIONS[ext]


def encode_image(
    hdr: np.ndarray,
    fmt: OutputFormat,
    *,
    exr_precision: ExrPrecision = "half",
    jpeg_quality: int = 95,
    headroom: float | None = None,
    hdr_transfer: HdrTransfer = "pq",
    avif_bits: AvifBits = 10,
) -> bytes:
    """The file bytes of `hdr` (linear float, (H, W, 3) RGB or (H, W, 4) packed RGGB) in `fmt`.

    `jpeg_quality` applies to JPEG and Ultra HDR; `headroom` (times SDR white, None = from the
    image) to Ultra HDR and AVIF; `hdr_transfer` and `avif_bits` to AVIF.
    """
    if fmt not in FORMATS:
        raise UnsupportedFormatError(f"cannot encode to {fmt!r}; use one of {', '.join(FORMATS)}")
    if exr_precision not in ("half", "float"):
        raise ValueError(f"exr_precision must be 'half' or 'float', got {exr_precision!r}")
    if not 1 <= jpeg_quality <= 100:
        raise ValueError(f"jpeg_quality must be in 1..100, got {jpeg_quality}")
    check_headroom(headroom)
    arr = np.asarray(hdr)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4) or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"expected a non-empty (H, W, 3) or (H, W, 4) image, got shape {arr.shape}")
    if arr.dtype.kind not in "fiu":
        raise ValueError(f"expected a numeric image, got dtype {arr.dtype}")
    if arr.shape[2] == 4 and fmt not in ("exr", "tiff"):
        raise UnsupportedFormatError(
            f"packed raw (4-channel R, G1, G2, B) output needs OpenEXR or TIFF, not {fmt}; "
            "demosaic it to RGB first"
        )
    # One private copy, cleaned in place: callers keep their array, and no format stores NaN/inf.
    lin = np.nan_to_num(arr.astype(np.float32), copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    if fmt == "exr":
        return encode_exr(lin, exr_precision)
    if fmt == "hdr":
        return _encode_radiance(lin)
    if fmt == "tiff":
        return _encode_tiff(lin)
    if fmt == "uhdr":
        return encode_ultrahdr(render(lin, headroom), jpeg_quality)
    if fmt == "avif":
        return encode_avif(render(lin, headroom), hdr_transfer, avif_bits)
    return _encode_ldr(display(lin), fmt, jpeg_quality)


def write_image(
    path: str | os.PathLike[str],
    hdr: np.ndarray,
    *,
    fmt: OutputFormat | None = None,
    **options: Any,
) -> None:
    """Encode `hdr` (format from the extension unless `fmt` is given) and write it atomically.

    `options` are those of `encode_image`.

    The bytes go to a temporary file in the same directory, which is then renamed over `path`, so
    readers never see a half-written image and a failed write leaves any old file intact.
    """
    fmt = fmt or output_format_for(path)
    payload = encode_image(hdr, fmt, **options)
    target = os.fspath(path)
    folder, base = os.path.split(os.path.abspath(target))
    temp = os.path.join(folder, f".{base}.{secrets.token_hex(4)}.tmp")
    # os.open with 0o666 lets the umask set the mode, as a plain open() would (mkstemp forces 0600).
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temp, target)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise


def _encode_radiance(lin: np.ndarray) -> bytes:
    bgr = np.ascontiguousarray(np.clip(lin[:, :, ::-1], 0.0, None))
    ok, encoded = cv2.imencode(".hdr", bgr)
    assert ok, "OpenCV failed to encode Radiance HDR"
    return encoded.tobytes()


def _encode_tiff(lin: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    # Deflate level 1: float mantissas barely compress at any level (about 80 % of raw size on real
    # merges), so the faster level costs little; 64-row strips let tifffile compress in parallel.
    options: dict[str, Any] = {
        "compression": "zlib",
        "compressionargs": {"level": 1},
        "rowsperstrip": 64,
        "metadata": None,
    }
    if lin.shape[2] == 3:
        tifffile.imwrite(buffer, lin, photometric="rgb", **options)
    else:
        # No TIFF photometric means "Bayer planes"; the marker lets our reader return them packed.
        tifffile.imwrite(
            buffer, lin, photometric="minisblack", planarconfig="contig", description=RGGB_MARKER, **options
        )
    return buffer.getvalue()


def _encode_ldr(ldr: np.ndarray, fmt: OutputFormat, quality: int) -> bytes:
    # OpenCV rather than Pillow: its PNG encoder is about 10x faster at the same size on 12 MP.
    bgr = np.ascontiguousarray(ldr[:, :, ::-1])
    if fmt == "jpeg":
        ok, encoded = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
        assert ok, "OpenCV failed to encode JPEG"
        return encoded.tobytes()
    ok, encoded = cv2.imencode(".png", bgr)
    assert ok, "OpenCV failed to encode PNG"
    png = encoded.tobytes()
    # Tag the picture as sRGB (perceptual intent): an sRGB chunk right after the 33-byte
    # signature + IHDR, where the PNG spec wants colour-space chunks.
    srgb = struct.pack(">I", 1) + b"sRGB\x00" + struct.pack(">I", zlib.crc32(b"sRGB\x00"))
    return png[:33] + srgb + png[33:]
