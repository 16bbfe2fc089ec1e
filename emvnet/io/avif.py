"""HDR AVIF output through libavif (`imagecodecs.avif_encode`): BT.2020 primaries, PQ or HLG.

The pixels are the merge in SDR-white units (`rendition.render`), converted to BT.2020 primaries
and coded with one of the HDR transfers of ITU-R BT.2100:

- PQ (default): SDR white at 203 cd/m2 (ITU-R BT.2408), highlights up to the headroom
  (capped at PQ's 10000 cd/m2); the display maps what it cannot show.
- HLG: relative, SDR white at 75 % signal (BT.2408), which leaves about 3.8x of scene-linear
  headroom; brighter highlights are clipped.

The file carries those choices as CICP (colour primaries 9, transfer 16 or 18, matrix 9, full
range) in its `colr` box, 10 or 12 bits per sample, 4:4:4.
"""

from __future__ import annotations

from typing import Literal

import imagecodecs
import numpy as np

from emvnet.io.rendition import BT709_TO_BT2020, Rendition
from emvnet.io.tonemap import hlg_encode, pq_encode

HdrTransfer = Literal["pq", "hlg"]
AvifBits = Literal[10, 12]

SDR_WHITE_NITS = 203.0  # ITU-R BT.2408 reference white
HLG_SDR_WHITE = 0.2649  # scene-linear level HLG codes at 75 %, BT.2408's reference white
CICP_PRIMARIES_BT2020 = 9
CICP_MATRIX_BT2020_NCL = 9
CICP_TRANSFER: dict[str, int] = {"pq": 16, "hlg": 18}  # SMPTE ST 2084, ARIB STD-B67
QUALITY = 90  # libavif 0..100; at 10 bits, highlights stay within a few percent (tests/emvnet/io)
SPEED = 8  # libavif 0..10: 8 encodes a 12 MP image in a few seconds; 6 takes about 20x longer


def hdr_signal(rendition: Rendition, transfer: HdrTransfer) -> np.ndarray:
    """The BT.2020 PQ or HLG signal in [0, 1], float32 (H, W, 3)."""
    bt2020 = np.clip(rendition.lin @ BT709_TO_BT2020.T, 0.0, None)
    if transfer == "pq":
        return pq_encode(bt2020 * SDR_WHITE_NITS)
    return hlg_encode(bt2020 * HLG_SDR_WHITE)


def encode_avif(rendition: Rendition, transfer: HdrTransfer = "pq", bits: AvifBits = 10) -> bytes:
    """AVIF bytes of the rendition's HDR in `transfer`, `bits` per sample."""
    if transfer not in CICP_TRANSFER:
        raise ValueError(f"transfer must be 'pq' or 'hlg', got {transfer!r}")
    if bits not in (10, 12):
        raise ValueError(f"AVIF bit depth must be 10 or 12, got {bits}")
    top = (1 << bits) - 1
    codes = np.round(hdr_signal(rendition, transfer) * top).astype(np.uint16)
    return bytes(
        imagecodecs.avif_encode(
            codes,
            level=QUALITY,
            speed=SPEED,
            bitspersample=bits,
            pixelformat=imagecodecs.AVIF.PIXEL_FORMAT.YUV444,
            primaries=CICP_PRIMARIES_BT2020,
            transfer=CICP_TRANSFER[transfer],
            matrix=CICP_MATRIX_BT2020_NCL,
        )
    )
