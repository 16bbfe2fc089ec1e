"""The REST gateway over real HTTP (embedded mode): images, async jobs, every validation error, limits."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator

import cv2
import httpx
import numpy as np
import pytest
from helpers.brackets import frobisher, frobisher_heic, synthetic_jpegs, synthetic_pngs
from helpers.hdrfiles import avif_cicp, decode_ultrahdr, jpeg_images
from helpers.servers import GatewayThread, gateway, make_settings
from PIL import Image

from emvnet.io import read_image

pytestmark = pytest.mark.integration

MAGIC = {
    "image/png": b"\x89PNG",
    "image/jpeg": b"\xff\xd8",
    "image/tiff": b"II*\x00",
    "image/vnd.radiance": b"#?",
    "image/x-exr": b"\x76\x2f\x31\x01",
}


@pytest.fixture(scope="module")
def gw() -> Iterator[GatewayThread]:
    with gateway(make_settings(grpc_port=None, max_frames=4)) as g:
        yield g


@pytest.fixture(scope="module")
def client(gw: GatewayThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gw.base_url, timeout=30) as c:
        yield c


def files(frames: list[bytes]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("frames", (f"f{i}", data, "application/octet-stream")) for i, data in enumerate(frames)]


def post(client: httpx.Client, frames: list[bytes], **kw: object) -> httpx.Response:
    return client.post("/v1/hdr", files=files(frames), **kw)  # type: ignore[arg-type]


def assert_error(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()["error"]
    assert body["code"] == code and body["message"] and body["request_id"] == r.headers["x-request-id"]


def test_sync_merge_returns_a_png_of_the_bracket(client: httpx.Client) -> None:
    """Default output is a tonemapped PNG of the frames' size; merge facts come in headers."""
    r = post(client, frobisher(), headers={"X-Request-ID": "cam-42"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png" and r.headers["x-request-id"] == "cam-42"
    img = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_UNCHANGED)
    assert img.shape == (320, 480, 3) and img.std() > 5
    assert r.headers["x-blind"] == "false" and r.headers["x-reference-frame"] in {"0", "1", "2"}
    assert client.get(f"/v1/jobs/{r.headers['x-job-id']}").status_code == 404  # delivered, not kept


def test_ignore_exif_merges_blind_and_says_how_sure(client: httpx.Client) -> None:
    """`ignore_exif` withholds the frames' EXIF times: the merge is blind and its headers say how
    far its estimated ratios can be trusted; with the times, no confidence header."""
    r = post(client, frobisher(), data={"ignore_exif": "true"})
    assert r.status_code == 200, r.text
    assert r.headers["x-blind"] == "true" and r.headers["x-blind-confidence"] in {"high", "low"}
    known = post(client, frobisher())
    assert known.headers["x-blind"] == "false" and "x-blind-confidence" not in known.headers
    stated = post(client, frobisher(), data={"ignore_exif": "true", "exposures": "1/8,1,8"})
    assert stated.headers["x-blind"] == "false"


@pytest.mark.parametrize("accept", ["image/x-exr", "image/vnd.radiance", "image/tiff", "image/jpeg"])
def test_output_follows_accept(client: httpx.Client, accept: str) -> None:
    """Each supported media type comes back as that format."""
    r = post(client, synthetic_pngs(), headers={"Accept": accept}, data={"exposures": "1/4,1,4"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == accept and r.content.startswith(MAGIC[accept])


def test_linear_output_is_hdr(client: httpx.Client) -> None:
    """The EXR output holds linear radiance beyond 1.0 (a real HDR merge, not an LDR copy)."""
    r = post(client, synthetic_pngs(), headers={"Accept": "image/x-exr"}, data={"exposures": "0.25,1,4"})
    hdr = read_image(r.content)
    assert hdr.domain == "linear" and hdr.data.shape == (96, 128, 3) and hdr.data.max() > 1.5


def test_async_flow(client: httpx.Client) -> None:
    """202 + Location, then the status turns done and the result is the image."""
    r = post(client, frobisher(), params={"mode": "async"}, headers={"Accept": "image/jpeg"})
    assert r.status_code == 202, r.text
    location = r.headers["location"]
    assert location == f"/v1/jobs/{r.json()['job_id']}"
    deadline = time.monotonic() + 20
    while (status := client.get(location).json())["state"] not in ("done", "failed"):
        assert time.monotonic() < deadline, status
        time.sleep(0.05)
    assert status["state"] == "done" and status["result"]["width"] == 480
    result = client.get(status["result_url"])
    assert result.status_code == 200 and result.content.startswith(MAGIC["image/jpeg"])
    assert result.headers["content-type"] == "image/jpeg"
    assert_error(client.get(status["result_url"], headers={"Accept": "image/webp"}), 406, "not_acceptable")


def test_async_result_in_any_format_from_the_kept_linear_result(client: httpx.Client) -> None:
    """An async job keeps its linear result: GET .../result encodes whatever Accept or ?format= prefers;
    the format produced at submission is served as stored when it is (one of) the best fits."""
    r = post(client, frobisher(), params={"mode": "async", "format": "jpeg"})
    assert r.status_code == 202, r.text
    url = r.headers["location"] + "/result"
    deadline = time.monotonic() + 20
    while (stored := client.get(url)).status_code == 409:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert stored.status_code == 200 and stored.content.startswith(MAGIC["image/jpeg"])
    for accept in ("image/*", "image/png;q=0.5, image/jpeg", "*/*"):
        assert client.get(url, headers={"Accept": accept}).content == stored.content, accept
    for accept, magic in MAGIC.items():
        got = client.get(url, headers={"Accept": accept})
        assert got.status_code == 200 and got.headers["content-type"] == accept, (accept, got.text)
        assert got.content.startswith(magic) and got.headers["x-image-width"] == "480"
    exr = client.get(url, params={"format": "exr"}, headers={"Accept": "image/png"})
    assert exr.headers["content-type"] == "image/x-exr"  # ?format= overrides Accept
    hdr = read_image(exr.content).data
    assert hdr.shape == (320, 480, 3) and hdr.dtype == np.float32 and float(hdr.max()) > 0
    assert_error(client.get(url, params={"format": "webp"}), 406, "not_acceptable")


def wait_for_result(client: httpx.Client, url: str) -> httpx.Response:
    deadline = time.monotonic() + 20
    while (result := client.get(url)).status_code == 409:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return result


def assert_ultrahdr(r: httpx.Response) -> None:
    """An Ultra HDR answer: served as image/jpeg, a base and a gain map JPEG that libultrahdr decodes."""
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg", r.text
    assert len(jpeg_images(r.content)) == 2
    assert decode_ultrahdr(r.content).shape == (320, 480, 3)


def assert_hdr_avif(r: httpx.Response) -> None:
    assert r.status_code == 200 and r.headers["content-type"] == "image/avif", r.text
    assert r.content[4:12] == b"ftypavif" and avif_cicp(r.content) == (9, 16, 9, True)


def test_hdr_outputs_for_phones_and_browsers(client: httpx.Client) -> None:
    """?format=uhdr and Accept image/jpeg;gainmap=1 give Ultra HDR, image/avif an HDR AVIF."""
    assert_ultrahdr(post(client, frobisher(), params={"format": "ultrahdr"}))
    assert_ultrahdr(post(client, frobisher(), headers={"Accept": "image/jpeg; gainmap=1"}))
    assert_hdr_avif(post(client, frobisher(), headers={"Accept": "image/avif"}))


def test_async_results_reencode_into_hdr_formats(client: httpx.Client) -> None:
    """A job stored as Ultra HDR serves it as such, re-encodes to plain JPEG for image/jpeg and to AVIF."""
    r = post(client, frobisher(), params={"mode": "async", "format": "uhdr"})
    assert r.status_code == 202, r.text
    url = r.headers["location"] + "/result"
    assert_ultrahdr(wait_for_result(client, url))
    assert_ultrahdr(client.get(url, headers={"Accept": "image/jpeg;gainmap=1"}))
    plain = client.get(url, headers={"Accept": "image/jpeg"})  # a plain JPEG client gets no gain map
    assert plain.headers["content-type"] == "image/jpeg" and len(jpeg_images(plain.content)) == 1
    assert_hdr_avif(client.get(url, params={"format": "avif"}))


def test_heic_bracket_merges_with_its_exif_times(client: httpx.Client) -> None:
    """iPhone-style HEIC frames (test-made, EXIF 1/8, 1, 8 s) merge, not blind, into Ultra HDR."""
    r = post(client, frobisher_heic(), params={"format": "uhdr"})
    assert_ultrahdr(r)
    assert r.headers["x-blind"] == "false"


def _avif_frames() -> list[bytes]:
    frames = []
    for jpeg in frobisher():
        buffer = io.BytesIO()
        Image.open(io.BytesIO(jpeg)).save(buffer, format="AVIF", quality=80)
        frames.append(buffer.getvalue())
    return frames


def test_unknown_jobs(client: httpx.Client) -> None:
    assert_error(client.get("/v1/jobs/" + "0" * 32), 404, "job_not_found")
    assert_error(client.get("/v1/jobs/not-an-id"), 400, "invalid_request")


@pytest.mark.parametrize(
    ("frames", "data", "status", "code"),
    [
        (lambda: frobisher()[:1], {}, 422, "invalid_bracket"),
        (lambda: frobisher() + frobisher(), {}, 422, "invalid_bracket"),
        (lambda: [frobisher()[0], b"%PDF-1.7 not an image"], {}, 415, "unsupported_format"),
        (lambda: [frobisher()[0], synthetic_pngs()[0]], {}, 422, "invalid_bracket"),
        (frobisher, {"exposures": "0.1,0.2"}, 422, "invalid_exposures"),
        (frobisher, {"exposures": "0.1,zero,1"}, 422, "invalid_exposures"),
        (frobisher, {"exposures": "0.1,-1,1"}, 422, "invalid_exposures"),
        (frobisher, {"reference": "5"}, 422, "invalid_bracket"),
        (frobisher, {"reference": "left"}, 422, "invalid_bracket"),
        (frobisher, {"model": "gpt"}, 422, "unknown_model"),
        (lambda: [f[:300] for f in frobisher()], {}, 422, "corrupt_image"),
        (lambda: [f[: len(f) // 2] for f in frobisher_heic()], {}, 422, "corrupt_image"),
        (lambda: [f[:40] + bytes(200) + f[240:] for f in frobisher_heic()], {}, 422, "corrupt_image"),
        (lambda: [f[: len(f) // 2] for f in _avif_frames()], {}, 422, "corrupt_image"),
    ],
    ids=[
        "one-frame",
        "too-many",
        "not-image",
        "sizes",
        "exp-count",
        "exp-nan",
        "exp-neg",
        "ref-range",
        "ref-word",
        "model",
        "truncated",
        "heic-truncated",
        "heic-damaged",
        "avif-truncated",
    ],
)
def test_validation_errors(client: httpx.Client, frames, data, status: int, code: str) -> None:  # type: ignore[no-untyped-def]
    """Every bad input gets its 4xx and a JSON error body, never a 500."""
    assert_error(post(client, frames(), data=data), status, code)


def test_missing_frames_field(client: httpx.Client) -> None:
    assert_error(client.post("/v1/hdr", data={"exposures": "1,2"}), 400, "invalid_request")


def test_not_acceptable_is_checked(client: httpx.Client) -> None:
    assert_error(post(client, frobisher(), headers={"Accept": "image/webp"}), 406, "not_acceptable")


def test_deadline_is_504(client: httpx.Client) -> None:
    """A synchronous call that cannot finish in its timeout gets 504 deadline_exceeded."""
    assert_error(post(client, frobisher(), params={"timeout": "0.001"}), 504, "deadline_exceeded")


def test_health_readiness_and_routes(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"model": True, "queue": True}
    assert_error(client.get("/v2/nothing"), 404, "not_found")
    assert client.get("/openapi.json").json()["paths"]["/v1/hdr"]["post"]


def test_client_disconnect_cancels_the_wait(gw: GatewayThread) -> None:
    """A synchronous client that goes away is noticed: its request ends (499 in the metrics) and
    the server keeps serving."""

    def closed_requests() -> float:
        text = httpx.get(gw.base_url + "/metrics", timeout=10).text
        prefix = 'emvnet_requests_total{code="499",endpoint="/v1/hdr",transport="rest"}'
        return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(prefix))

    before = closed_requests()
    frames = synthetic_jpegs(1400, 1400)
    with (
        pytest.raises(httpx.ReadTimeout),
        httpx.Client(base_url=gw.base_url, timeout=httpx.Timeout(30, read=0.05)) as c,
    ):
        post(c, frames)
    deadline = time.monotonic() + 10
    while closed_requests() <= before:
        assert time.monotonic() < deadline, "the server never noticed the disconnect"
        time.sleep(0.05)
