"""Which format a byte string holds, from its magic bytes (never from a file name).

TIFF is a container: a DNG or a Nikon/Sony/Canon raw starts with the same eight bytes as a plain
TIFF, and only its directories tell them apart. Given the whole file (or at least the directories),
`sniff_format` says "dng" or "raw"; given only a short head it may say "tiff" for such a file, which
is still the right family for a gateway's accept/reject decision.

HEIF (HEIC) and AVIF are ISO base media files: an `ftyp` box whose brands name the codec. Canon's
CR3 shares the box (brand `crx `) and is a camera raw.
"""

from __future__ import annotations

from typing import Literal

from emvnet.io import tiffmeta

ImageFormat = Literal["jpeg", "png", "tiff", "dng", "raw", "exr", "hdr", "heic", "avif"]

SNIFF_BYTES = 64  # enough for every magic below; TIFF-based raws need more (their directories)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EXR_MAGIC = b"\x76\x2f\x31\x01"
RADIANCE_MAGICS = (b"#?RADIANCE", b"#?RGBE")

# Camera raws that are not TIFF-structured, or renamed TIFF magic numbers (ORF, RW2).
_RAW_MAGICS: tuple[tuple[int, bytes], ...] = (
    (0, b"FUJIFILMCCD-RAW"),  # Fujifilm RAF
    (4, b"ftypcrx "),  # Canon CR3 (ISO base media file)
    (0, b"IIRO"),  # Olympus ORF
    (0, b"IIRS"),
    (0, b"MMOR"),
    (0, b"IIU\x00"),  # Panasonic RW2 / RAW
    (0, b"FOVb"),  # Sigma X3F
    (0, b"\x00MRM"),  # Minolta MRW
    (6, b"HEAPCCDR"),  # Canon CRW
)

# ftyp brands: HEVC-coded HEIF (iPhone photos and their bursts), AV1-coded AVIF, and the generic
# image brands both list, which alone leave the codec to the item data (libheif decides).
_HEIC_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs"})
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
_GENERIC_HEIF_BRANDS = frozenset({b"mif1", b"msf1", b"miaf"})

# Vendor compression schemes that only camera raws use (Sony ARW, Samsung SRW, Nikon NEF,
# Kodak DCR, Pentax PEF): a TIFF directory with one of these is not a plain TIFF.
_RAW_COMPRESSIONS = frozenset({32767, 32769, 32770, 32772, 34713, 65000, 65535})

# Human-readable names, used in error messages.
FORMAT_NAMES: dict[str, str] = {
    "jpeg": "JPEG",
    "png": "PNG",
    "tiff": "TIFF",
    "dng": "DNG",
    "raw": "camera raw",
    "exr": "OpenEXR",
    "hdr": "Radiance HDR",
    "heic": "HEIC",
    "avif": "AVIF",
}

SUPPORTED_INPUTS = "JPEG, PNG, TIFF, DNG/camera raw, OpenEXR, Radiance HDR, HEIC/HEIF, AVIF"


def sniff_format(head: bytes) -> ImageFormat | None:
    """The image format the bytes start with, or None when they are not one we read.

    Pass the first `SNIFF_BYTES` bytes for a quick family check, or the whole file to tell DNG and
    other TIFF-based camera raws from plain TIFF.
    """
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(PNG_SIGNATURE):
        return "png"
    if head.startswith(EXR_MAGIC):
        return "exr"
    if head.startswith(RADIANCE_MAGICS):
        return "hdr"
    for offset, magic in _RAW_MAGICS:
        if head[offset : offset + len(magic)] == magic:
            return "raw"
    if head[4:8] == b"ftyp":
        return _classify_ftyp(head)
    if tiffmeta.is_tiff_header(head):
        return classify_tiff(head)
    return None


def _classify_ftyp(head: bytes) -> Literal["heic", "avif"] | None:
    """HEIC or AVIF from the brands of an `ftyp` box (major brand, then the compatible ones)."""
    size = int.from_bytes(head[:4], "big")
    end = min(len(head), size) if size >= 16 else min(len(head), 16)
    brands = [head[8:12]] + [head[i : i + 4] for i in range(16, end - 3, 4)]
    if brands[0] in _AVIF_BRANDS or (brands[0] not in _HEIC_BRANDS and _AVIF_BRANDS & set(brands)):
        return "avif"
    if _HEIC_BRANDS & set(brands) or _GENERIC_HEIF_BRANDS & set(brands):
        return "heic"
    return None


def classify_tiff(data: bytes) -> Literal["tiff", "dng", "raw"]:
    """Tell a DNG or a TIFF-based camera raw from a plain TIFF by its directories."""
    if data[8:10] == b"CR":  # Canon CR2 marks itself right after the header
        return "raw"
    try:
        layout = tiffmeta.parse_tiff(data)
    except tiffmeta.TiffStructureError:
        return "tiff"  # too short to see the directories (or broken): the TIFF reader will judge
    if any(tiffmeta.DNG_VERSION in ifd.tags for ifd in layout.ifds):
        return "dng"
    for ifd in layout.ifds:
        photometric = ifd.integer(tiffmeta.PHOTOMETRIC, -1)
        if photometric in (tiffmeta.PHOTOMETRIC_CFA, tiffmeta.PHOTOMETRIC_LINEAR_RAW):
            return "raw"
        if ifd.integer(tiffmeta.COMPRESSION, 1) in _RAW_COMPRESSIONS:
            return "raw"
    return "tiff"
