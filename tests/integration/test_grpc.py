"""The gRPC server with a real client: unary and chunked streaming, errors, auth, deadlines, health."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from helpers.brackets import frobisher, frobisher_heic, noise_png, synthetic_jpegs, synthetic_pngs
from helpers.hdrfiles import avif_cicp, decode_ultrahdr, jpeg_images
from helpers.servers import GatewayThread, gateway, make_settings

from service._generated import enhance_pb2 as pb
from service._generated import enhance_pb2_grpc as pb_grpc

pytestmark = pytest.mark.integration

KEY = "grpc-key"
AUTH = (("x-api-key", KEY),)
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def gw() -> Iterator[GatewayThread]:
    with gateway(make_settings(api_keys=[KEY])) as g:
        yield g


@pytest.fixture(scope="module")
def channel(gw: GatewayThread) -> Iterator[grpc.Channel]:
    options = [("grpc.max_receive_message_length", 64 * MIB), ("grpc.max_send_message_length", 64 * MIB)]
    with grpc.insecure_channel(f"127.0.0.1:{gw.settings.grpc_port}", options=options) as ch:
        grpc.channel_ready_future(ch).result(timeout=10)
        yield ch


@pytest.fixture(scope="module")
def stub(channel: grpc.Channel) -> pb_grpc.EnhancerStub:
    return pb_grpc.EnhancerStub(channel)


def rpc_error(call: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


def trailer(err: grpc.RpcError, key: str) -> str:
    return dict(err.trailing_metadata() or ())[key]  # type: ignore[attr-defined]


def test_unary_enhance(stub: pb_grpc.EnhancerStub) -> None:
    """One bracket in, one EXR out, with what the merge decided."""
    req = pb.EnhanceRequest(frames=frobisher(), output_format=pb.OUTPUT_FORMAT_EXR, request_id="cam-1")
    r = stub.Enhance(req, metadata=AUTH, timeout=30)
    assert (r.width, r.height, r.content_type, r.request_id) == (480, 320, "image/x-exr", "cam-1")
    assert r.image.startswith(b"\x76\x2f\x31\x01") and not r.blind and len(r.job_id) == 32


def test_ignore_exif_merges_blind_and_says_how_sure(stub: pb_grpc.EnhancerStub) -> None:
    """As over REST: blind without the EXIF times, with a confidence; none with the times."""
    r = stub.Enhance(pb.EnhanceRequest(frames=frobisher(), ignore_exif=True), metadata=AUTH, timeout=60)
    assert r.blind and r.blind_confidence in {"high", "low"}
    r = stub.Enhance(pb.EnhanceRequest(frames=frobisher()), metadata=AUTH, timeout=60)
    assert not r.blind and r.blind_confidence == ""


def test_heic_bracket_to_hdr_formats(stub: pb_grpc.EnhancerStub) -> None:
    """A test-made HEIC bracket (EXIF times) merges, not blind, into Ultra HDR; JPEGs into HDR AVIF."""
    req = pb.EnhanceRequest(frames=frobisher_heic(), output_format=pb.OUTPUT_FORMAT_ULTRAHDR)
    r = stub.Enhance(req, metadata=AUTH, timeout=60)
    assert r.content_type == "image/jpeg" and not r.blind and len(jpeg_images(r.image)) == 2
    assert decode_ultrahdr(r.image).shape == (320, 480, 3)
    req = pb.EnhanceRequest(frames=frobisher(), output_format=pb.OUTPUT_FORMAT_AVIF)
    r = stub.Enhance(req, metadata=AUTH, timeout=60)
    assert r.content_type == "image/avif" and avif_cicp(r.image) == (9, 16, 9, True)


def test_damaged_heic_is_invalid_argument(stub: pb_grpc.EnhancerStub) -> None:
    """A truncated HEIC frame is INVALID_ARGUMENT corrupt_image, as over REST."""
    frames = [f[: len(f) // 2] for f in frobisher_heic()]
    err = rpc_error(lambda: stub.Enhance(pb.EnhanceRequest(frames=frames), metadata=AUTH, timeout=30))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    assert trailer(err, "emvnet-error-code") == "corrupt_image"


@pytest.mark.parametrize(
    ("request_", "code", "error"),
    [
        (
            lambda: pb.EnhanceRequest(frames=frobisher()[:1]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "invalid_bracket",
        ),
        (
            lambda: pb.EnhanceRequest(frames=[b"GIF89a", b"GIF89a"]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "unsupported_format",
        ),
        (
            lambda: pb.EnhanceRequest(frames=frobisher(), exposures=[1, 2]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "invalid_exposures",
        ),
        (
            lambda: pb.EnhanceRequest(frames=frobisher(), model="x"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "unknown_model",
        ),
        (
            lambda: pb.EnhanceRequest(frames=[f[:300] for f in frobisher()]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "corrupt_image",
        ),
    ],
)
def test_unary_errors_use_the_table(stub: pb_grpc.EnhancerStub, request_: Any, code: Any, error: str) -> None:
    """Bad input maps to the same codes as REST, with the error code in trailing metadata."""
    err = rpc_error(lambda: stub.Enhance(request_(), metadata=AUTH, timeout=30))
    assert err.code() == code  # type: ignore[attr-defined]
    assert trailer(err, "emvnet-error-code") == error


def test_unauthenticated(stub: pb_grpc.EnhancerStub) -> None:
    """Without the key both RPCs answer UNAUTHENTICATED; a Bearer token works too."""
    err = rpc_error(lambda: stub.Enhance(pb.EnhanceRequest(frames=frobisher()), timeout=10))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]
    stream = stub.EnhanceStream(iter([pb.StreamRequest(end=pb.BracketEnd())]), timeout=10)
    err = rpc_error(lambda: list(stream))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]
    r = stub.Enhance(pb.EnhanceRequest(frames=frobisher()), metadata=(("authorization", f"Bearer {KEY}"),))
    assert r.width == 480


def test_deadline_is_honoured(stub: pb_grpc.EnhancerStub) -> None:
    """A call whose deadline is shorter than the merge ends with DEADLINE_EXCEEDED, promptly."""
    frames = synthetic_jpegs(1000, 1000)
    t0 = time.monotonic()
    err = rpc_error(lambda: stub.Enhance(pb.EnhanceRequest(frames=frames), metadata=AUTH, timeout=0.05))
    assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED  # type: ignore[attr-defined]
    assert time.monotonic() - t0 < 5


def bracket_messages(seq: int, frames: list[bytes], chunk: int, **header: Any) -> Iterator[pb.StreamRequest]:
    yield pb.StreamRequest(header=pb.BracketHeader(sequence=seq, frame_count=len(frames), **header))
    for i, data in enumerate(frames):
        for off in range(0, len(data), chunk):
            yield pb.StreamRequest(chunk=pb.FrameChunk(frame_index=i, data=data[off : off + chunk]))
    yield pb.StreamRequest(end=pb.BracketEnd())


def test_stream_in_order_with_chunks_and_a_bad_bracket(stub: pb_grpc.EnhancerStub) -> None:
    """Brackets stream in chunks (frames over 4 MiB included) and come back in order; a bad one
    gets an in-band error and the stream goes on."""
    big = [noise_png(800, 1000, seed=s) for s in range(3)]
    assert min(len(f) for f in big) > 4 * MIB
    messages = [
        *bracket_messages(0, frobisher(), 16 * 1024),
        *bracket_messages(1, big, 1 * MIB, exposures=[0.01, 0.04, 0.16]),
        *bracket_messages(2, frobisher()[:1], 64 * 1024),
        *bracket_messages(3, synthetic_pngs(), 1000, output_format=pb.OUTPUT_FORMAT_TIFF),
    ]
    out = list(stub.EnhanceStream(iter(messages), metadata=AUTH, timeout=60))
    assert [r.sequence for r in out] == [0, 1, 2, 3]
    assert (out[0].width, out[1].width, out[3].width) == (480, 1000, 128)
    assert (
        out[2].error.code == "invalid_bracket"
        and out[2].error.grpc_code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    )
    assert out[3].content_type == "image/tiff" and not out[0].HasField("error")


def test_stream_protocol_error_ends_the_stream(stub: pb_grpc.EnhancerStub) -> None:
    """A chunk outside a bracket is INVALID_ARGUMENT for the whole stream."""
    messages = [pb.StreamRequest(chunk=pb.FrameChunk(frame_index=0, data=b"x"))]
    err = rpc_error(lambda: list(stub.EnhanceStream(iter(messages), metadata=AUTH, timeout=10)))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]


def test_cancellation_cleans_up(gw: GatewayThread, stub: pb_grpc.EnhancerStub) -> None:
    """A cancelled call leaves no request in flight and the server keeps serving."""
    future = stub.Enhance.future(pb.EnhanceRequest(frames=synthetic_jpegs(1000, 1000)), metadata=AUTH)
    time.sleep(0.2)
    future.cancel()

    def inflight() -> float:
        text = httpx.get(gw.base_url + "/metrics", timeout=10).text
        line = next(
            x for x in text.splitlines() if x.startswith('emvnet_inflight_requests{transport="grpc"}')
        )
        return float(line.split()[-1])

    deadline = time.monotonic() + 10
    while inflight() != 0:
        assert time.monotonic() < deadline, "a cancelled call is still in flight"
        time.sleep(0.05)
    assert stub.Enhance(pb.EnhanceRequest(frames=frobisher()), metadata=AUTH, timeout=30).width == 480


def test_health_and_reflection(channel: grpc.Channel) -> None:
    """Standard health says SERVING once warm; reflection lists the service."""
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "emvnet.v1.Enhancer"):
        status = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status
        assert status == health_pb2.HealthCheckResponse.SERVING
    refl = reflection_pb2_grpc.ServerReflectionStub(channel)
    answers = refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    names = {s.name for a in answers for s in a.list_services_response.service}
    assert {"emvnet.v1.Enhancer", "grpc.health.v1.Health"} <= names
