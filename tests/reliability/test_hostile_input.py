"""Hostile and broken input, by hand and by a fuzzer, over real loopback HTTP and gRPC: always a 4xx
(or INVALID_ARGUMENT / RESOURCE_EXHAUSTED) with a clear message; never a 5xx, a hang or a dead worker.
"""

from __future__ import annotations

import io
import math
import socket
import struct
import time
import zlib
from collections.abc import Iterator

import cv2
import grpc
import httpx
import numpy as np
import pytest
import tifffile
from helpers.brackets import encode_jpeg, synthetic_pngs
from helpers.cluster import FAST_MODEL, multipart
from helpers.dng import dng_bytes
from helpers.servers import GatewayThread, gateway, make_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service._generated import enhance_pb2 as pb
from service._generated import enhance_pb2_grpc as pb_grpc

pytestmark = pytest.mark.integration

MAX_BYTES = 4 * 1024 * 1024
MAX_PIXELS = 2_000_000
TIMEOUT = 20.0  # no answer within this is a hung request


@pytest.fixture(scope="module")
def gw() -> Iterator[GatewayThread]:
    """An embedded gateway (the merging runs in this process: a crash would take the test down)."""
    overrides = {
        "model": FAST_MODEL,
        "max_request_bytes": MAX_BYTES,
        "max_pixels": MAX_PIXELS,
        "body_timeout_s": 2.0,
    }
    with gateway(make_settings(**overrides)) as g:
        yield g


@pytest.fixture(scope="module")
def client(gw: GatewayThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gw.base_url, timeout=TIMEOUT) as c:
        yield c


def good() -> list[bytes]:
    return synthetic_pngs(48, 64)


def tiff(rgb8: np.ndarray) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, rgb8)
    return buf.getvalue()


def png_bomb(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height (a decompression bomb's header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 1024, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def jpeg_bomb(width: int, height: int) -> bytes:
    """A small JPEG whose frame header (SOF0) claims width x height."""
    data = bytearray(encode_jpeg(np.full((8, 8, 3), 0.5, np.float32)))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def corrupt(data: bytes, seed: int = 0) -> bytes:
    """The header intact, the body overwritten with noise."""
    rng = np.random.default_rng(seed)
    body = rng.integers(0, 256, len(data) - 64, dtype=np.uint8).tobytes()
    return data[:64] + body


def frames_variants() -> dict[str, tuple[list[bytes], set[int]]]:
    """Named broken brackets and the statuses each may get."""
    base = good()
    rgb = np.full((48, 64, 3), 0.5, np.float32)
    jpeg = encode_jpeg(rgb)
    tif = tiff((rgb * 255).astype(np.uint8))
    dng = dng_bytes(np.full((48, 64), 1000, np.uint16))
    half = cv2.imencode(".png", np.zeros((24, 32, 3), np.uint8))[1].tobytes()
    return {
        "truncated png": ([base[0][: len(base[0]) // 2], base[1]], {422}),
        "truncated jpeg": ([jpeg[: len(jpeg) // 3], jpeg], {422}),
        "truncated tiff": ([tif[:200], tif], {422}),
        "truncated dng": ([dng[:300], dng], {415, 422}),
        "corrupt png": ([corrupt(base[0]), base[1]], {422}),
        "corrupt jpeg": ([corrupt(jpeg, 1), jpeg], {422, 200}),  # JPEG decoders conceal damage
        "corrupt tiff": ([corrupt(tif, 2), tif], {422, 200}),  # raw strips: noise is still pixels
        "corrupt dng": ([corrupt(dng, 3), dng], {415, 422, 200}),
        "png bomb": ([png_bomb(100_000, 100_000), png_bomb(100_000, 100_000)], {413}),
        "jpeg bomb": ([jpeg_bomb(60_000, 60_000), jpeg_bomb(60_000, 60_000)], {413}),
        "png zero size": ([png_bomb(0, 0), png_bomb(0, 0)], {415, 422}),
        "single frame": ([base[0]], {422}),
        "fifty frames": ([base[0]] * 50, {422}),
        "zero bytes": ([b"", b""], {415}),
        "mismatched sizes": ([base[0], half], {422}),
        "not images": ([b"hello, world\n" * 10, b"%PDF-1.4\n"], {415}),
    }


@pytest.mark.parametrize("name", list(frames_variants()))
def test_broken_frames_get_a_4xx_with_a_message(client: httpx.Client, name: str) -> None:
    """Each broken bracket: the expected 4xx (or a merge where the damage is invisible), never 5xx."""
    frames, allowed = frames_variants()[name]
    r = client.post("/v1/hdr", files=multipart(frames))
    assert r.status_code in allowed, (name, r.status_code, r.text[:300])
    if r.status_code >= 400:
        error = r.json()["error"]
        assert error["code"] and len(error["message"]) > 10 and error["request_id"]


@pytest.mark.parametrize(
    ("exposures", "needle"),
    [
        ("-1,1,4", "positive"),
        ("0.25,nan,4", "seconds"),
        ("0.25,inf,4", "seconds"),
        ("0,1,4", "positive"),
        ("0.25,1", "one per frame"),
        ("0.25,1,4,8", "one per frame"),
        ("a,b,c", "not a number"),
        ("1/0,1,2", "not a number"),
        ("1e999999,1,2", "seconds"),
    ],
)
def test_invalid_exposures_are_422(client: httpx.Client, exposures: str, needle: str) -> None:
    """Negative, NaN, infinite, zero, wrong count and non-numbers: 422 invalid_exposures."""
    r = client.post("/v1/hdr", files=multipart(good()), data={"exposures": exposures})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "invalid_exposures" and needle in r.json()["error"]["message"]


@pytest.mark.parametrize(
    ("content_type", "body", "status"),
    [
        ("application/json", b'{"frames": []}', 400),
        ("text/plain", b"frames", 400),
        ("multipart/form-data", b"--x\r\n", 400),  # no boundary
        ("multipart/form-data; boundary=abc", b"--abc\r\nContent-Disposition: form-data\r\n\r\nx", 400),
        ("multipart/form-data; boundary=abc", b"garbage without any boundary", 400),
        ("multipart/form-data; boundary=abc", b"", 400),
        ("application/x-www-form-urlencoded", b"frames=abc&frames=def", 400),
    ],
)
def test_wrong_content_types_and_malformed_multipart(
    client: httpx.Client, content_type: str, body: bytes, status: int
) -> None:
    """Not multipart, or broken multipart: 400 invalid_request."""
    r = client.post("/v1/hdr", content=body, headers={"Content-Type": content_type})
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == "invalid_request"


def test_frame_part_content_type_is_ignored(client: httpx.Client) -> None:
    """Formats are recognised by their bytes: a PNG labelled text/plain still merges."""
    r = client.post("/v1/hdr", files=multipart(good(), ctype="text/plain"))
    assert r.status_code == 200, r.text


def test_oversized_bodies_are_413(client: httpx.Client) -> None:
    """Past max_request_bytes: 413 by Content-Length, and 413 for a chunked body that grows past it."""
    big = [b"\x89PNG\r\n\x1a\n" + b"\0" * (MAX_BYTES // 2 + 10)] * 2
    r = client.post("/v1/hdr", files=multipart(big))
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"

    def chunks() -> Iterator[bytes]:
        yield b"--b\r\nContent-Disposition: form-data; name=frames; filename=a\r\n\r\n"
        for _ in range(MAX_BYTES // 65536 + 2):
            yield b"\0" * 65536

    r = client.post("/v1/hdr", content=chunks(), headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert r.status_code == 413, r.text


def raw_http(gw: GatewayThread, head: bytes, body_parts: list[bytes], pause: float) -> tuple[int, float]:
    """Send a request by hand, pausing between body parts; returns (status, seconds to the answer)."""
    start = time.monotonic()
    with socket.create_connection((gw.settings.host, gw.settings.port), timeout=TIMEOUT) as s:
        s.sendall(head)
        for part in body_parts:
            time.sleep(pause)
            s.sendall(part)
        data = b""
        while b"\r\n" not in data:
            more = s.recv(4096)
            if not more:
                break
            data += more
    status = int(data.split(b" ")[1]) if data.startswith(b"HTTP/1.1") else 0
    return status, time.monotonic() - start


def test_slow_client_that_stops_sending_gets_408_not_a_hang(gw: GatewayThread) -> None:
    """A client that declares a body and stalls mid-way is answered 408 within the body timeout."""
    frames = good()
    boundary = b"slowb"
    body = (
        b"".join(
            b"--"
            + boundary
            + b'\r\nContent-Disposition: form-data; name="frames"; filename="f"\r\n\r\n'
            + f
            + b"\r\n"
            for f in frames
        )
        + b"--"
        + boundary
        + b"--\r\n"
    )
    head = (
        b"POST /v1/hdr HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=" + boundary
        + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n"
    )  # fmt: skip
    # Trickles arrive in time (each gap under the timeout): the merge goes through.
    parts = [body[i : i + 4096] for i in range(0, len(body), 4096)]
    status, _ = raw_http(gw, head, parts, pause=0.05)
    assert status == 200
    # Half a body, then silence: refused after the body timeout, not held forever.
    status, took = raw_http(gw, head, [body[: len(body) // 2]], pause=0)
    assert status == 408 and took < TIMEOUT


def test_grpc_bad_input_codes(gw: GatewayThread) -> None:
    """gRPC: bad frames and exposures INVALID_ARGUMENT; a message past the limit RESOURCE_EXHAUSTED."""
    assert gw.settings.grpc_port is not None
    with grpc.insecure_channel(
        f"127.0.0.1:{gw.settings.grpc_port}", options=[("grpc.max_send_message_length", 64 * 1024 * 1024)]
    ) as ch:
        stub = pb_grpc.EnhancerStub(ch)
        cases = [
            pb.EnhanceRequest(frames=[b"", b""]),
            pb.EnhanceRequest(frames=[good()[0]]),
            pb.EnhanceRequest(frames=good(), exposures=[-1.0, 1.0, 4.0]),
            pb.EnhanceRequest(frames=good(), exposures=[math.nan, 1.0, 4.0]),
            pb.EnhanceRequest(frames=good(), exposures=[1.0]),
            pb.EnhanceRequest(frames=[png_bomb(100_000, 100_000)] * 2),
            pb.EnhanceRequest(frames=[b"not an image"] * 3),
        ]
        for request in cases:
            with pytest.raises(grpc.RpcError) as info:
                stub.Enhance(request, timeout=TIMEOUT)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
            assert info.value.details()
        huge = pb.EnhanceRequest(frames=[b"\0" * (MAX_BYTES // 2 + 1024 * 1024)] * 4)
        with pytest.raises(grpc.RpcError) as info:
            stub.Enhance(huge, timeout=TIMEOUT)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def mutate(data: bytes, cut: int, flips: list[tuple[int, int]]) -> bytes:
    buf = bytearray(data[: max(0, min(len(data), cut))])
    for pos, value in flips:
        if buf:
            buf[pos % len(buf)] = value
    return bytes(buf)


SEEDS = {"png": good()[0], "jpeg": encode_jpeg(np.full((48, 64, 3), 0.4, np.float32))}


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    kind=st.sampled_from(sorted(SEEDS)),
    cut=st.integers(0, 4096),
    flips=st.lists(st.tuples(st.integers(0, 4096), st.integers(0, 255)), max_size=8),
    exposures=st.one_of(st.none(), st.text(max_size=12)),
    reference=st.one_of(st.none(), st.text(max_size=4)),
)
def test_fuzzed_frames_and_fields_never_5xx(
    client: httpx.Client, kind: str, cut: int, flips: list[tuple[int, int]], exposures: str | None,
    reference: str | None,
) -> None:  # fmt: skip
    """Truncated and bit-flipped frames with random fields: a 2xx or 4xx, never a 5xx or a hang."""
    seed = SEEDS[kind]
    frames = [mutate(seed, cut, flips), seed]
    data = {k: v for k, v in (("exposures", exposures), ("reference", reference)) if v is not None}
    r = client.post("/v1/hdr", files=multipart(frames), data=data)
    assert r.status_code < 500, (r.status_code, r.text[:300])


def test_still_serving_after_the_abuse(client: httpx.Client, gw: GatewayThread) -> None:
    """After every test above, the same gateway and its merger still merge and are ready."""
    assert client.get("/readyz").status_code == 200
    r = client.post("/v1/hdr", files=multipart(good()), data={"exposures": "0.25,1,4"})
    assert r.status_code == 200 and r.content.startswith(b"\x89PNG")
