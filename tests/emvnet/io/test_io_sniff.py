"""Format sniffing by magic bytes, and the bounded TIFF directory walker behind it."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from helpers.dng import dng_bytes

from emvnet.io import sniff_format
from emvnet.io.tiffmeta import TiffStructureError, parse_tiff

EXPECTED = {
    "jpeg": "jpeg",
    "png8": "png",
    "png16": "png",
    "tiff8": "tiff",
    "tiff16": "tiff",
    "tiff32f": "tiff",
    "exr": "exr",
    "hdr": "hdr",
    "dng": "dng",
}


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_sniff_whole_files(samples: dict[str, bytes], kind: str) -> None:
    """Each sample file, given whole, sniffs as its format."""
    assert sniff_format(samples[kind]) == EXPECTED[kind]


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_sniff_head_gives_the_family(samples: dict[str, bytes], kind: str) -> None:
    """The first 64 bytes are enough for the family (a DNG's head may only say TIFF)."""
    got = sniff_format(samples[kind][:64])
    assert got == ("tiff" if kind == "dng" else EXPECTED[kind])


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"#?RGBE\nFORMAT=32-bit_rle_rgbe\n", "hdr"),
        (b"FUJIFILMCCD-RAW 0201FF383501", "raw"),
        (b"\x00\x00\x00\x18ftypcrx \x00\x00\x00\x01", "raw"),
        (b"IIRO\x08\x00\x00\x00", "raw"),
        (b"IIU\x00\x08\x00\x00\x00", "raw"),
        (b"II*\x00\x10\x00\x00\x00CR\x02\x00", "raw"),
        (b"MM\x00*\x00\x00\x00\x08", "tiff"),
        (b"II+\x00\x08\x00\x00\x00", "tiff"),
    ],
)
def test_sniff_other_magics(head: bytes, expected: str) -> None:
    """Radiance's second signature, non-TIFF raws, CR2, big-endian TIFF and BigTIFF are recognised."""
    assert sniff_format(head) == expected


@pytest.mark.parametrize(
    "data",
    [b"", b"hello world, this is text\n", b"\x00" * 64, bytes(range(64)), b"GIF89a\x01\x00", b"\xff\xd8"],
)
def test_sniff_rejects_non_images(data: bytes) -> None:
    """Empty input, text, zeros, GIF and a two-byte JPEG stub are not recognised."""
    assert sniff_format(data) is None


def test_sniff_cfa_tiff_without_dng_version_is_raw() -> None:
    """A CFA TIFF without the DNGVersion tag is a camera raw, not a plain TIFF."""
    data = dng_bytes(np.full((32, 32), 100, dtype=np.uint16))
    tag = struct.pack("<H", 50706)
    patched = data.replace(tag + struct.pack("<H", 1), struct.pack("<H", 50000) + struct.pack("<H", 1), 1)
    assert patched != data
    assert sniff_format(patched) == "raw"


def _tiff_with_ifd(entries: int, next_offset: int) -> bytes:
    head = b"II*\x00" + struct.pack("<I", 8)
    return (
        head + struct.pack("<H", entries) + b"\x00" * (12 * min(entries, 4)) + struct.pack("<I", next_offset)
    )


def test_tiff_walker_refuses_absurd_entry_counts() -> None:
    """A directory claiming 60000 entries is refused, not read."""
    with pytest.raises(TiffStructureError):
        parse_tiff(_tiff_with_ifd(60000, 0))


def test_tiff_walker_stops_on_loops() -> None:
    """A directory chain that points back to itself ends after one visit."""
    data = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 0) + struct.pack("<I", 8)
    layout = parse_tiff(data)
    assert len(layout.ifds) == 1


def test_tiff_walker_refuses_out_of_range_offsets() -> None:
    """A tag whose value lies past the end of the bytes is a structure error."""
    entry = struct.pack("<HHII", 273, 4, 10, 10_000)  # ten strip offsets stored far away
    data = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1) + entry + struct.pack("<I", 0)
    with pytest.raises(TiffStructureError):
        parse_tiff(data)
