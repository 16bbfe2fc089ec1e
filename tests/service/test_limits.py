"""API keys, upload and pixel limits, backpressure and the metrics exposition, over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import httpx
import pytest
from helpers.brackets import frobisher, synthetic_jpegs, synthetic_pngs
from helpers.servers import GatewayThread, gateway, lint_exposition, make_settings

from service._generated import enhance_pb2 as pb
from service._generated import enhance_pb2_grpc as pb_grpc

pytestmark = pytest.mark.integration

KEY = "s3cret-key"
LIMIT = 600_000  # bytes per upload


@pytest.fixture(scope="module")
def gw() -> Iterator[GatewayThread]:
    settings = make_settings(
        api_keys=[KEY],
        max_request_bytes=LIMIT,
        max_pixels=1_100_000,
        max_queue=1,
        max_batch_size=1,
        max_wait_ms=0.0,
    )
    with gateway(settings) as g:
        yield g


@pytest.fixture(scope="module")
def client(gw: GatewayThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gw.base_url, timeout=60, headers={"X-API-Key": KEY}) as c:
        yield c


def files(frames: list[bytes]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("frames", (f"f{i}", data, "application/octet-stream")) for i, data in enumerate(frames)]


def error_code(r: httpx.Response) -> str:
    return str(r.json()["error"]["code"])


def test_api_key_required(gw: GatewayThread) -> None:
    """Without a configured key: 401; with it in X-API-Key or a Bearer token: served."""
    with httpx.Client(base_url=gw.base_url, timeout=30) as anon:
        r = anon.post("/v1/hdr", files=files(frobisher()))
        assert r.status_code == 401 and error_code(r) == "unauthenticated"
        r = anon.post("/v1/hdr", files=files(frobisher()), headers={"X-API-Key": "wrong"})
        assert r.status_code == 401
        assert anon.get("/v1/jobs/" + "0" * 32).status_code == 401
        r = anon.post("/v1/hdr", files=files(frobisher()), headers={"Authorization": f"Bearer {KEY}"})
        assert r.status_code == 200, r.text
        assert anon.get("/healthz").status_code == 200  # probes need no key
        assert anon.get("/metrics").status_code == 200


def test_upload_over_the_byte_limit_is_413(client: httpx.Client) -> None:
    """Refused from Content-Length before the body is read."""
    big = [*frobisher(), b"\xff\xd8" + b"\x00" * LIMIT]
    r = client.post("/v1/hdr", files=files(big))
    assert r.status_code == 413 and error_code(r) == "payload_too_large"


def test_streamed_upload_is_cut_off_at_the_limit(client: httpx.Client) -> None:
    """A chunked upload (no Content-Length) that streams past the limit gets 413 too."""
    boundary_req = httpx.Request("POST", "http://x/", files=files([*frobisher(), b"\x00" * LIMIT]))
    body, content_type = boundary_req.read(), boundary_req.headers["content-type"]

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(body), 64 * 1024):
            yield body[i : i + 64 * 1024]

    r = client.post("/v1/hdr", content=chunks(), headers={"Content-Type": content_type})
    assert "content-length" not in r.request.headers
    assert r.status_code == 413 and error_code(r) == "payload_too_large"


def test_pixel_limit_is_413(client: httpx.Client) -> None:
    """Frames whose headers claim more than max_pixels are refused before decoding."""
    r = client.post("/v1/hdr", files=files(synthetic_jpegs(1100, 1100)))
    assert r.status_code == 413 and error_code(r) == "image_too_large"


def test_backpressure_answers_429_with_retry_after(client: httpx.Client) -> None:
    """With one job running and one waiting, further requests are refused, never lost or hung."""
    frames = synthetic_jpegs(1000, 1000)
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda _: client.post("/v1/hdr", files=files(frames)), range(8)))
    codes = sorted(r.status_code for r in responses)
    assert set(codes) <= {200, 429} and 200 in codes and 429 in codes, codes
    refused = next(r for r in responses if r.status_code == 429)
    assert error_code(refused) == "queue_full" and int(refused.headers["retry-after"]) >= 1


def test_grpc_backpressure_is_resource_exhausted(gw: GatewayThread) -> None:
    """gRPC callers past the queue bound get RESOURCE_EXHAUSTED with a retry-after trailer."""
    request = pb.EnhanceRequest(frames=synthetic_jpegs(1000, 1000))
    with grpc.insecure_channel(f"127.0.0.1:{gw.settings.grpc_port}") as channel:
        stub = pb_grpc.EnhancerStub(channel)
        calls = [stub.Enhance.future(request, metadata=(("x-api-key", KEY),), timeout=60) for _ in range(8)]
        errors = [c.exception() for c in calls]
    refused = [e for e in errors if e is not None]
    assert refused and len(refused) < 8
    assert all(e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED for e in refused)  # type: ignore[attr-defined]
    assert dict(refused[0].trailing_metadata())["retry-after"] == "1"  # type: ignore[attr-defined]


def test_metrics_exposition(client: httpx.Client) -> None:
    """/metrics has the emvnet_ families; `promtool check metrics` accepts it where installed."""
    client.post("/v1/hdr", files=files(synthetic_pngs()))
    text = client.get("/metrics").text
    for family in (
        "emvnet_requests_total",
        "emvnet_request_duration_seconds",
        "emvnet_queue_wait_seconds",
        "emvnet_inference_seconds",
        "emvnet_batch_size",
        "emvnet_queue_depth",
        "emvnet_inflight_jobs",
        "emvnet_images_processed_total",
        "emvnet_pixels_processed_total",
    ):
        assert f"# TYPE {family}" in text, family
    assert 'transport="rest"' in text and 'code="429"' in text
    if not lint_exposition(text):
        pytest.skip("promtool is not installed (Debian package prometheus); only parsed the exposition")
