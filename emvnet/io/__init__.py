"""Image I/O for brackets and results: JPEG, PNG, TIFF, DNG/camera raw, OpenEXR, Radiance HDR, HEIC
and AVIF in; OpenEXR, Radiance, TIFF, PNG, JPEG, Ultra HDR gain-map JPEG and HDR AVIF out.

Reading returns a `Frame` (float32 (H, W, C), RGB or packed RGGB, with its units named in
`Frame.domain`) plus the capture settings found in EXIF/DNG tags. Every header is checked against a
pixel limit before any pixel buffer exists, and bad input raises one of `UnsupportedFormatError`,
`CorruptImageError`, `ImageTooLargeError` (all `EmvnetError`) with a one-line message.

Writing takes linear HDR: OpenEXR, Radiance and float TIFF store it as is; PNG and JPEG store the
tonemapped 8-bit sRGB picture; Ultra HDR JPEG adds a gain map to that picture, and AVIF stores the
HDR in BT.2020 PQ or HLG, both for HDR displays (`rendition`).

Modules: `sniff` (magic bytes), `tiffmeta` (bounded TIFF directory walker), `exif` (exposure and
orientation), `ldr` (JPEG, PNG), `tiff`, `exr`, `radiance`, `raw` (rawpy), `heif` (HEIC, AVIF),
`readers` (dispatch), `writers`, `rendition` (the HDR display picture), `gainmap` (Ultra HDR),
`avif` (HDR AVIF), and `tonemap` (transfer curves, the metric's mu-law and the display tonemap).
"""

from emvnet.io.common import DEFAULT_MAX_PIXELS, ImageInfo
from emvnet.io.raw import RawMode
from emvnet.io.readers import probe_image, read_image
from emvnet.io.sniff import ImageFormat, sniff_format
from emvnet.io.writers import OutputFormat, encode_image, output_format_for, write_image

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "ImageFormat",
    "ImageInfo",
    "OutputFormat",
    "RawMode",
    "encode_image",
    "output_format_for",
    "probe_image",
    "read_image",
    "sniff_format",
    "write_image",
]
