"""Ultra HDR gain-map JPEG and HDR AVIF: decoded by libultrahdr / libavif, they give back the HDR
within the tolerance stated in `helpers.hdrfiles.assert_within_tolerance`."""

from __future__ import annotations

import io

import cv2
import imagecodecs
import numpy as np
import pytest
from helpers.hdrfiles import (
    ISO_21496_URN,
    assert_within_tolerance,
    avif_cicp,
    decode_avif,
    decode_ultrahdr,
    jpeg_images,
)
from helpers.synth import radiance_scene
from PIL import Image

from emvnet.errors import EmvnetError, UnsupportedFormatError
from emvnet.io import encode_image, output_format_for
from emvnet.io.avif import HLG_SDR_WHITE
from emvnet.io.rendition import MAX_AUTO_HEADROOM, render
from emvnet.io.tonemap import display


@pytest.fixture(scope="module")
def scene() -> np.ndarray:
    """Smooth linear radiance over about 2000:1 with bright coloured blobs (96x128)."""
    return radiance_scene(96, 128, seed=0)


@pytest.mark.parametrize("headroom", [None, 4.0, 8.0])
def test_ultrahdr_round_trip(scene: np.ndarray, headroom: float | None) -> None:
    """libultrahdr decodes an Ultra HDR file back to the HDR (SDR-white units) up to the headroom."""
    rendition = render(scene, headroom)
    decoded = decode_ultrahdr(encode_image(scene, "uhdr", headroom=headroom))
    assert_within_tolerance(decoded, rendition.lin)
    expected_peak = rendition.headroom
    assert 0.9 * expected_peak <= decoded.max() <= 1.2 * expected_peak


def test_auto_headroom_follows_the_image(scene: np.ndarray) -> None:
    """Without a headroom, a dim scene keeps its own peak and a bright one is capped at 16x."""
    dim = render(np.full((16, 16, 3), 0.2, dtype=np.float32))
    assert dim.headroom == pytest.approx(1.0, abs=0.01)
    bright = render(scene * np.float32(1.0))
    assert 1.0 < bright.headroom <= MAX_AUTO_HEADROOM
    with pytest.raises(EmvnetError, match="headroom"):
        encode_image(scene, "uhdr", headroom=0.5)


def test_ultrahdr_boxes_where_the_specification_puts_them(scene: np.ndarray) -> None:
    """The primary JPEG carries MPF and the ISO 21496-1 version box; the gain map JPEG its metadata."""
    images = jpeg_images(encode_image(scene, "uhdr"))
    assert len(images) == 2, "a base image and one gain map image"
    base, gain_map = images
    assert any(m == 0xE2 and p.startswith(b"MPF\x00") for m, p in base), "MPF (APP2) in the primary image"
    base_iso = [p for m, p in base if m == 0xE2 and p.startswith(ISO_21496_URN)]
    map_iso = [p for m, p in gain_map if m == 0xE2 and p.startswith(ISO_21496_URN)]
    assert base_iso and map_iso, "ISO 21496-1 APP2 boxes in both images"
    assert len(map_iso[0]) > len(base_iso[0]), "the gain map's box holds the gains, the base's the version"


def test_ultrahdr_base_is_our_display_tonemap(scene: np.ndarray) -> None:
    """The SDR base decodes to `display(hdr)` as closely as a plain JPEG of it at that quality does."""
    data = encode_image(scene, "uhdr", jpeg_quality=95)
    base = np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(np.float32)
    sdr = display(scene).astype(np.float32)
    plain = cv2.imdecode(np.frombuffer(encode_image(scene, "jpeg", jpeg_quality=95), np.uint8), 1)
    plain_err = np.abs(plain[..., ::-1].astype(np.float32) - sdr).mean()
    assert np.abs(base - sdr).mean() <= max(1.5, 1.5 * plain_err)


@pytest.mark.parametrize(
    ("transfer", "bits", "cicp_transfer"), [("pq", 10, 16), ("pq", 12, 16), ("hlg", 10, 18)]
)
def test_avif_round_trip_and_cicp(scene: np.ndarray, transfer: str, bits: int, cicp_transfer: int) -> None:
    """libavif decodes the AVIF back to the HDR; its colr box says BT.2020, PQ/HLG, BT.2020 matrix."""
    data = encode_image(scene, "avif", hdr_transfer=transfer, avif_bits=bits)  # type: ignore[arg-type]
    assert avif_cicp(data) == (9, cicp_transfer, 9, True)
    expected = render(scene).lin
    if transfer == "hlg":
        expected = np.minimum(expected, 1.0 / HLG_SDR_WHITE)  # HLG's signal ends there
    assert_within_tolerance(decode_avif(data, transfer, bits), expected)


def test_avif_bit_depth_is_stored() -> None:
    """A 12-bit AVIF decodes to codes above the 10-bit range; a 10-bit one stays inside it."""
    grey = np.full((16, 16, 3), 1.0, dtype=np.float32)  # middle grey after auto exposure: PQ 0.41
    ten = imagecodecs.avif_decode(encode_image(grey, "avif", avif_bits=10))
    twelve = imagecodecs.avif_decode(encode_image(grey, "avif", avif_bits=12))
    assert ten.max() <= 1023 < twelve.max() <= 4095


def test_output_extensions() -> None:
    """`.uhdr.jpg` is Ultra HDR, `.jpg` stays plain JPEG, `.avif` is AVIF."""
    assert output_format_for("out/x.uhdr.jpg") == "uhdr"
    assert output_format_for("X.UHDR.JPEG") == "uhdr"
    assert output_format_for("x.jpg") == "jpeg"
    assert output_format_for("my.photo.jpg") == "jpeg"
    assert output_format_for("x.avif") == "avif"


def test_hdr_outputs_refuse_packed_raw_and_tiny_images() -> None:
    """Packed raw needs demosaicing first; Ultra HDR needs 8x8 pixels: typed errors, not crashes."""
    with pytest.raises(UnsupportedFormatError, match="packed raw"):
        encode_image(np.ones((16, 16, 4), np.float32), "avif")
    with pytest.raises(UnsupportedFormatError, match="8x8"):
        encode_image(np.ones((4, 4, 3), np.float32), "uhdr")
