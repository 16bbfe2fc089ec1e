"""Bad input: every failure is a typed, one-line EmvnetError, found before pixels are allocated."""

from __future__ import annotations

import contextlib
import struct
import time
import tracemalloc
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from emvnet.errors import CorruptImageError, EmvnetError, ImageTooLargeError, UnsupportedFormatError
from emvnet.frame import Frame
from emvnet.io import probe_image, read_image

KINDS = ("jpeg", "png8", "png16", "tiff8", "tiff16", "tiff32f", "exr", "hdr", "dng", "heic", "avif")


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _png(width: int, height: int, idat: bytes = b"", *, ihdr_crc_ok: bool = True) -> bytes:
    ihdr = _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    if not ihdr_crc_ok:
        ihdr = ihdr[:-4] + b"\x00\x00\x00\x00"
    body = idat or zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + ihdr + _chunk(b"IDAT", body) + _chunk(b"IEND", b"")


def _tiff(width: int, height: int, strip_bytes: int, data: bytes) -> bytes:
    """A minimal little-endian 8-bit grayscale TIFF with one strip."""
    entries = [
        (256, 4, 1, width),
        (257, 4, 1, height),
        (258, 3, 1, 8),
        (259, 3, 1, 1),
        (262, 3, 1, 1),
        (273, 4, 1, 8 + 2 + 12 * 8 + 4),  # strip right after the directory
        (277, 3, 1, 1),
        (279, 4, 1, strip_bytes),
    ]
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        packed = struct.pack("<H", value) + b"\x00\x00" if kind == 3 else struct.pack("<I", value)
        ifd += struct.pack("<HHI", tag, kind, count) + packed
    return b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + data


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "empty"),
        (b"Hello, this is a plain text file.\nNot an image.\n", "looks like text"),
        (bytes(np.random.default_rng(3).integers(0, 256, 4096, dtype=np.uint8)), "not an image"),
    ],
)
def test_non_images_are_unsupported(data: bytes, match: str) -> None:
    """Zero bytes, text and random bytes raise UnsupportedFormatError listing what is supported."""
    for call in (read_image, probe_image):
        with pytest.raises(UnsupportedFormatError, match=match) as info:
            call(data)
        assert "\n" not in info.value.message
    with pytest.raises(
        UnsupportedFormatError, match="JPEG, PNG, TIFF, DNG/camera raw, OpenEXR, Radiance HDR"
    ):
        read_image(b"plain text")


def test_error_names_the_file(tmp_path: Path) -> None:
    """Errors for a path say which file; an empty file says it is empty."""
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(UnsupportedFormatError, match=r"empty\.jpg is empty"):
        read_image(empty)
    notes = tmp_path / "notes.png"
    notes.write_text("not a picture\n")
    with pytest.raises(UnsupportedFormatError, match=r"notes\.png is not an image"):
        read_image(notes)
    odd = tmp_path / "two\nlines.png"
    odd.write_text("text")
    with pytest.raises(UnsupportedFormatError, match=r"two\\nlines\.png is not an image"):
        read_image(odd)


def test_missing_file_is_an_os_error(tmp_path: Path) -> None:
    """A path that does not exist raises FileNotFoundError (the caller's I/O problem, not bad image data)."""
    with pytest.raises(FileNotFoundError):
        read_image(tmp_path / "nope.jpg")


@pytest.mark.parametrize("kind", KINDS)
def test_truncated_files_are_corrupt(samples: dict[str, bytes], kind: str) -> None:
    """Each format cut to half its length raises CorruptImageError."""
    data = samples[kind]
    with pytest.raises(CorruptImageError):
        read_image(data[: len(data) // 2])


@pytest.mark.parametrize("kind", KINDS)
def test_truncated_headers_are_typed(samples: dict[str, bytes], kind: str) -> None:
    """Each format cut inside its header raises a typed error (corrupt, or unrecognisable)."""
    with pytest.raises((CorruptImageError, UnsupportedFormatError)):
        read_image(samples[kind][:24])


@pytest.mark.parametrize("kind", KINDS)
def test_max_pixels_is_respected(samples: dict[str, bytes], kind: str) -> None:
    """A 64x64 image with max_pixels=1000 raises ImageTooLargeError in both read and probe."""
    for call in (read_image, probe_image):
        with pytest.raises(ImageTooLargeError, match="over the limit"):
            call(samples[kind], max_pixels=1000)


def _assert_fast_and_small(call: Callable[[], object], error: type[Exception]) -> None:
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(error):
            call()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - start < 1.0
    assert peak < 5_000_000, f"allocated {peak} bytes while refusing"


def test_png_decompression_bomb_fails_fast() -> None:
    """A PNG whose IHDR claims 100000 x 100000 is refused from the header, allocating nothing big."""
    bomb = _png(100_000, 100_000)
    _assert_fast_and_small(lambda: read_image(bomb), ImageTooLargeError)
    _assert_fast_and_small(lambda: probe_image(bomb), ImageTooLargeError)


def test_tiff_with_absurd_dimensions() -> None:
    """A TIFF claiming 1,000,000 x 1,000,000 pixels is refused from its tags."""
    data = _tiff(1_000_000, 1_000_000, 16, b"\x00" * 16)
    _assert_fast_and_small(lambda: read_image(data), ImageTooLargeError)
    _assert_fast_and_small(lambda: probe_image(data), ImageTooLargeError)


def test_tiff_strips_shorter_than_header() -> None:
    """An uncompressed TIFF whose strip holds fewer bytes than width x height needs is corrupt."""
    with pytest.raises(CorruptImageError, match="strips hold 100 bytes"):
        read_image(_tiff(16, 16, 100, b"\x00" * 100))
    assert read_image(_tiff(16, 16, 256, b"\x07" * 256)).data.shape == (16, 16, 3)


def test_exr_with_huge_data_window(samples: dict[str, bytes]) -> None:
    """An EXR whose dataWindow claims 100000 x 100000 is refused before the library reads it."""
    data = samples["exr"]
    marker = b"dataWindow\x00box2i\x00" + struct.pack("<i", 16)
    at = data.index(marker) + len(marker)
    forged = data[:at] + struct.pack("<4i", 0, 0, 99_999, 99_999) + data[at + 16 :]
    _assert_fast_and_small(lambda: read_image(forged), ImageTooLargeError)


def test_radiance_with_huge_resolution() -> None:
    """A Radiance header claiming 100000 x 100000 is refused from the header."""
    data = b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 100000 +X 100000\n" + b"\x00" * 64
    _assert_fast_and_small(lambda: read_image(data), ImageTooLargeError)


def test_png_bad_header_checksum() -> None:
    """A PNG whose IHDR checksum does not match is corrupt."""
    with pytest.raises(CorruptImageError, match="checksum"):
        read_image(_png(8, 8, ihdr_crc_ok=False))


def test_png_damaged_pixels_found_by_read_not_probe() -> None:
    """Garbage image data passes the header-only probe but fails the read with CorruptImageError."""
    data = _png(8, 8, idat=b"this is not zlib data")
    info = probe_image(data)
    assert (info.width, info.height) == (8, 8)
    with pytest.raises(CorruptImageError):
        read_image(data)


@pytest.mark.parametrize("kind", KINDS)
def test_fuzzed_files_raise_only_typed_errors(samples: dict[str, bytes], kind: str) -> None:
    """Random byte damage and truncation never escape as library exceptions (or crash)."""
    rng = np.random.default_rng(sum(kind.encode()))
    data = samples[kind]
    for trial in range(24):
        damaged = bytearray(data)
        if trial % 4 == 3:
            damaged = damaged[: int(rng.integers(8, len(data)))]
        else:
            for at in rng.integers(4, len(data), size=int(rng.integers(1, 8))):
                damaged[at] = int(rng.integers(0, 256))
        # EmvnetError itself asserts that its message is one line.
        with contextlib.suppress(EmvnetError):
            assert isinstance(read_image(bytes(damaged), max_pixels=1 << 20), Frame)
