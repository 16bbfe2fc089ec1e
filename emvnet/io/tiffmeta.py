"""A small, bounded TIFF directory walker.

TIFF is also the container of DNG and of most camera raws (CR2, NEF, ARW, PEF, ORF, RW2), so the
same few tags decide what a file is (plain TIFF, DNG, other raw), how big it claims to be, whether its
strips fit inside the file, and what exposure it was shot at. Reading them here, before any decoder
sees the bytes, is what lets the readers refuse bombs and truncated files without allocating pixels.

Every offset and count is checked against the buffer, and the walk visits a bounded number of
directories, so hostile input costs at most a few thousand small reads.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

# Tags kept by the walker (everything else is skipped without reading its value).
NEW_SUBFILE_TYPE = 254
IMAGE_WIDTH = 256
IMAGE_LENGTH = 257
BITS_PER_SAMPLE = 258
COMPRESSION = 259
PHOTOMETRIC = 262
IMAGE_DESCRIPTION = 270
MAKE = 271
STRIP_OFFSETS = 273
ORIENTATION = 274
SAMPLES_PER_PIXEL = 277
ROWS_PER_STRIP = 278
STRIP_BYTE_COUNTS = 279
PLANAR_CONFIG = 284
TILE_WIDTH = 322
TILE_LENGTH = 323
TILE_OFFSETS = 324
TILE_BYTE_COUNTS = 325
SUB_IFDS = 330
SAMPLE_FORMAT = 339
EXPOSURE_TIME = 33434
F_NUMBER = 33437
EXIF_IFD = 34665
ISO_SPEED = 34855
DNG_VERSION = 50706
WHITE_LEVEL = 50717

_KEPT = frozenset(
    {
        NEW_SUBFILE_TYPE, IMAGE_WIDTH, IMAGE_LENGTH, BITS_PER_SAMPLE, COMPRESSION, PHOTOMETRIC,
        IMAGE_DESCRIPTION, MAKE, STRIP_OFFSETS, ORIENTATION, SAMPLES_PER_PIXEL, ROWS_PER_STRIP,
        STRIP_BYTE_COUNTS,
        PLANAR_CONFIG, TILE_WIDTH, TILE_LENGTH, TILE_OFFSETS, TILE_BYTE_COUNTS, SUB_IFDS, SAMPLE_FORMAT,
        EXPOSURE_TIME, F_NUMBER, EXIF_IFD, ISO_SPEED, DNG_VERSION, WHITE_LEVEL,
    }
)  # fmt: skip

PHOTOMETRIC_CFA = 32803
PHOTOMETRIC_LINEAR_RAW = 34892

# Magic numbers after the byte-order mark: TIFF, BigTIFF, and the TIFF-structured raws that
# renamed it (Panasonic RW2 0x55, Olympus ORF "RO"/"RS").
_CLASSIC_MAGICS = frozenset({42, 0x55, 0x4F52, 0x5352})
_BIGTIFF_MAGIC = 43

# type id -> (struct code, size in bytes); rationals are two LONGs / SLONGs.
_TYPES: dict[int, tuple[str, int]] = {
    1: ("B", 1), 2: ("s", 1), 3: ("H", 2), 4: ("I", 4), 5: ("II", 8), 6: ("b", 1), 7: ("B", 1),
    8: ("h", 2), 9: ("i", 4), 10: ("ii", 8), 11: ("f", 4), 12: ("d", 8), 13: ("I", 4),
    16: ("Q", 8), 17: ("q", 8), 18: ("Q", 8),
}  # fmt: skip

_MAX_IFDS = 64  # real files have a handful; a loop or a forged chain stops here
_MAX_ENTRIES = 4096  # per directory


class TiffStructureError(ValueError):
    """The bytes start like TIFF but a directory or tag points outside them or is malformed."""


TagValue = tuple[float, ...] | str


@dataclass
class TiffIfd:
    """One image file directory: the kept tags, with rationals already divided."""

    offset: int
    tags: dict[int, TagValue] = field(default_factory=dict)
    is_sub: bool = False  # reached through SubIFDs rather than the main chain

    def number(self, tag: int, default: float | None = None) -> float | None:
        value = self.tags.get(tag)
        if isinstance(value, tuple) and value:
            return value[0]
        return default

    def integer(self, tag: int, default: int = 0) -> int:
        value = self.number(tag)
        return default if value is None else int(value)

    def numbers(self, tag: int) -> tuple[float, ...]:
        value = self.tags.get(tag)
        return value if isinstance(value, tuple) else ()

    def text(self, tag: int) -> str:
        value = self.tags.get(tag)
        return value if isinstance(value, str) else ""


@dataclass
class TiffLayout:
    """Directories of a TIFF-structured file: the main chain (IFD0 first), SubIFDs, the EXIF IFD."""

    ifds: list[TiffIfd]
    exif: TiffIfd | None

    @property
    def first(self) -> TiffIfd:
        return self.ifds[0]


def is_tiff_header(head: bytes) -> bool:
    """Whether the bytes start with a TIFF (or TIFF-structured raw) byte order and magic."""
    if len(head) < 8 or head[:2] not in (b"II", b"MM"):
        return False
    endian = "<" if head[:2] == b"II" else ">"
    magic = struct.unpack_from(endian + "H", head, 2)[0]
    return magic in _CLASSIC_MAGICS or magic == _BIGTIFF_MAGIC


def parse_tiff(data: bytes) -> TiffLayout:
    """Walk IFD0's chain, SubIFDs (one level) and the EXIF IFD; raise TiffStructureError if malformed."""
    if not is_tiff_header(data):
        raise TiffStructureError("no TIFF header")
    endian = "<" if data[:2] == b"II" else ">"
    big = struct.unpack_from(endian + "H", data, 2)[0] == _BIGTIFF_MAGIC
    reader = _Reader(data, endian, big)
    first = reader.uint(8 if big else 4, 8 if big else 4)
    ifds: list[TiffIfd] = []
    seen: set[int] = set()
    offset = first
    while offset and len(ifds) < _MAX_IFDS and offset not in seen:
        seen.add(offset)
        ifd, offset = reader.ifd(offset)
        ifds.append(ifd)
    if not ifds:
        raise TiffStructureError("no image directory")
    for parent in list(ifds):
        for sub_offset in parent.numbers(SUB_IFDS):
            if len(ifds) >= _MAX_IFDS or int(sub_offset) in seen:
                break
            seen.add(int(sub_offset))
            sub, _ = reader.ifd(int(sub_offset))
            sub.is_sub = True
            ifds.append(sub)
    exif = None
    exif_offset = ifds[0].integer(EXIF_IFD)
    if exif_offset and exif_offset not in seen:
        try:
            exif, _ = reader.ifd(exif_offset)
        except TiffStructureError:
            exif = None  # a broken EXIF block costs the metadata, not the image
    return TiffLayout(ifds, exif)


def strips_within(ifd: TiffIfd, size: int) -> bool:
    """Whether every strip or tile of the directory lies inside a file of `size` bytes."""
    offsets = ifd.numbers(STRIP_OFFSETS) or ifd.numbers(TILE_OFFSETS)
    counts = ifd.numbers(STRIP_BYTE_COUNTS) or ifd.numbers(TILE_BYTE_COUNTS)
    if not offsets or len(offsets) != len(counts):
        return False
    return all(o >= 0 and c >= 0 and o + c <= size for o, c in zip(offsets, counts, strict=True))


def segment_count(ifd: TiffIfd) -> int:
    """How many strips or tiles the directory's size and layout call for."""
    width, height = ifd.integer(IMAGE_WIDTH), ifd.integer(IMAGE_LENGTH)
    planes = ifd.integer(SAMPLES_PER_PIXEL, 1) if ifd.integer(PLANAR_CONFIG, 1) == 2 else 1
    tile_w, tile_h = ifd.integer(TILE_WIDTH), ifd.integer(TILE_LENGTH)
    if TILE_OFFSETS in ifd.tags and tile_w > 0 and tile_h > 0:
        return -(-width // tile_w) * -(-height // tile_h) * planes
    rows = ifd.integer(ROWS_PER_STRIP, height)
    rows = height if rows <= 0 else min(rows, height)
    return -(-height // max(rows, 1)) * planes


def uncompressed_bytes(ifd: TiffIfd) -> int:
    """Bytes the pixel data needs when stored uncompressed (strips may pad, so this is a minimum)."""
    width, height = ifd.integer(IMAGE_WIDTH), ifd.integer(IMAGE_LENGTH)
    samples = ifd.integer(SAMPLES_PER_PIXEL, 1)
    bits = int(ifd.number(BITS_PER_SAMPLE, 1) or 1)
    return (width * samples * bits + 7) // 8 * height


class _Reader:
    def __init__(self, data: bytes, endian: str, big: bool) -> None:
        self.data = data
        self.endian = endian
        self.big = big

    def uint(self, offset: int, size: int) -> int:
        code = {2: "H", 4: "I", 8: "Q"}[size]
        if offset < 0 or offset + size > len(self.data):
            raise TiffStructureError(f"offset {offset} outside the file")
        return int(struct.unpack_from(self.endian + code, self.data, offset)[0])

    def ifd(self, offset: int) -> tuple[TiffIfd, int]:
        count_size, entry_size, value_size = (8, 20, 8) if self.big else (2, 12, 4)
        count = self.uint(offset, count_size)
        if count > _MAX_ENTRIES:
            raise TiffStructureError(f"directory at {offset} claims {count} entries")
        start = offset + count_size
        end = start + count * entry_size
        next_offset = self.uint(end, value_size)
        ifd = TiffIfd(offset)
        for k in range(count):
            entry = start + k * entry_size
            tag = self.uint(entry, 2)
            if tag not in _KEPT:
                continue
            type_id = self.uint(entry + 2, 2)
            n = self.uint(entry + 4, value_size)
            if type_id not in _TYPES:
                continue  # unknown types are skipped, as TIFF 6.0 asks readers to
            code, item = _TYPES[type_id]
            nbytes = n * item
            where = entry + 4 + value_size
            if nbytes > value_size:
                where = self.uint(where, value_size)
            if where + nbytes > len(self.data) or nbytes > len(self.data):
                raise TiffStructureError(f"tag {tag} points outside the file")
            ifd.tags[tag] = self._value(code, n, where)
        return ifd, next_offset

    def _value(self, code: str, n: int, where: int) -> TagValue:
        if code == "s":
            raw = self.data[where : where + n]
            return raw.split(b"\0", 1)[0].decode("latin-1").strip()
        values = struct.unpack_from(f"{self.endian}{n * len(code)}{code[0]}", self.data, where)
        if len(code) == 2:  # rational: numerator / denominator pairs
            pairs = zip(values[0::2], values[1::2], strict=True)
            return tuple(num / den if den else float("nan") for num, den in pairs)
        return tuple(float(v) for v in values)
