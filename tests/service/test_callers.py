"""The request-id rule and the API-key check: one answer for the same id or key over REST and gRPC."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import pytest
from helpers.brackets import synthetic_pngs
from helpers.cluster import FAST_MODEL, multipart
from helpers.servers import GatewayThread, gateway, make_settings

from service._generated import enhance_pb2 as pb
from service._generated import enhance_pb2_grpc as pb_grpc
from service.callers import UNAUTHENTICATED_MESSAGE, check_api_key, resolve_request_id
from service.errors import UnauthenticatedError

KEYS = ["key-one-0123456789", "key-two-9876543210"]
FRESH = re.compile(r"[0-9a-f]{32}")
BAD_IDS = ["has spaces", "x" * 129, "<script>", "semi;colon", "quote'd"]
GOOD_IDS = ["cam-1", "a" * 128, "2026-12-04T18:00:00.123:node.7_x"]
ONE_FRAME = synthetic_pngs(48, 64)[:1]  # refused after the key check, before any merge

# (x-api-key, authorization, accepted): what either transport lets through.
CREDENTIALS = [
    (None, None, False),
    ("wrong", None, False),
    (KEYS[0][:-1], None, False),  # a prefix of a key is no key
    (KEYS[0] + "x", None, False),
    (None, "Bearer wrong", False),
    (None, KEYS[0], False),  # without the Bearer scheme
    (None, f"Basic {KEYS[0]}", False),
    (KEYS[0], None, True),
    (None, f"Bearer {KEYS[1]}", True),
    (None, f"bearer  {KEYS[1]}", True),  # the scheme in any case
    ("wrong", f"Bearer {KEYS[1]}", True),  # either credential may carry the key
    (KEYS[0], "Bearer wrong", True),
]


@pytest.mark.parametrize("given", GOOD_IDS)
def test_a_sane_request_id_is_kept(given: str) -> None:
    """Letters, digits and `._:-`, 1 to 128 of them, are used as sent."""
    assert resolve_request_id(given) == given
    assert resolve_request_id("", None, given) == given


@pytest.mark.parametrize("given", [*BAD_IDS, "ok\n", None, ""])
def test_any_other_request_id_is_replaced(given: str | None) -> None:
    """A missing or unsafe id gets a fresh 32-hex one, a different one each time."""
    first, second = resolve_request_id(given), resolve_request_id(given)
    assert FRESH.fullmatch(first) and FRESH.fullmatch(second) and first != second


def test_the_first_id_set_decides() -> None:
    """The first non-empty id wins; an unsafe one is replaced, not skipped for a later one."""
    assert resolve_request_id("msg-id", "meta-id") == "msg-id"
    assert resolve_request_id("", "meta-id") == "meta-id"
    assert FRESH.fullmatch(resolve_request_id("bad id", "meta-id"))


@pytest.mark.parametrize(("x_api_key", "authorization", "accepted"), CREDENTIALS)
def test_api_key_check(x_api_key: str | None, authorization: str | None, accepted: bool) -> None:
    """One of the configured keys in either credential passes; anything else is unauthenticated."""
    if accepted:
        check_api_key(KEYS, x_api_key, authorization)
    else:
        with pytest.raises(UnauthenticatedError, match="valid API key"):
            check_api_key(KEYS, x_api_key, authorization)
    check_api_key([], x_api_key, authorization)  # no keys configured: everyone passes


@pytest.fixture(scope="module")
def gw() -> Iterator[GatewayThread]:
    with gateway(make_settings(model=FAST_MODEL, api_keys=KEYS)) as g:
        yield g


@pytest.fixture(scope="module")
def stub(gw: GatewayThread) -> Iterator[pb_grpc.EnhancerStub]:
    with grpc.insecure_channel(f"127.0.0.1:{gw.settings.grpc_port}") as ch:
        grpc.channel_ready_future(ch).result(timeout=10)
        yield pb_grpc.EnhancerStub(ch)


def credentials(x_api_key: str | None, authorization: str | None) -> dict[str, str]:
    given = {"x-api-key": x_api_key, "authorization": authorization}
    return {k: v for k, v in given.items() if v is not None}


def rest_answer(gw: GatewayThread, frames: list[bytes], headers: dict[str, str]) -> tuple[str, str, str]:
    """(error code or 'ok', message, request id) of a REST merge."""
    r = httpx.post(gw.base_url + "/v1/hdr", files=multipart(frames), headers=headers, timeout=30)
    if r.status_code == 200:
        return "ok", "", r.headers["x-request-id"]
    error = r.json()["error"]
    assert error["request_id"] == r.headers["x-request-id"]
    return error["code"], error["message"], error["request_id"]


def grpc_answer(stub: pb_grpc.EnhancerStub, request: Any, meta: dict[str, str]) -> tuple[str, str, str]:
    """(error code or 'ok', message, request id) of a unary gRPC merge."""
    try:
        response = stub.Enhance(request, metadata=tuple(meta.items()), timeout=30)
    except grpc.RpcError as err:
        trailer = dict(err.trailing_metadata() or ())  # type: ignore[attr-defined]
        return trailer["emvnet-error-code"], err.details(), trailer["x-request-id"]  # type: ignore[attr-defined]
    return "ok", "", response.request_id


def stream_answer(stub: pb_grpc.EnhancerStub, header: Any, meta: dict[str, str]) -> tuple[str, str, str]:
    """(error code or 'ok', message, request id) of a one-bracket EnhanceStream."""
    requests = [
        pb.StreamRequest(header=header),
        *(pb.StreamRequest(chunk=pb.FrameChunk(frame_index=i, data=f)) for i, f in enumerate(ONE_FRAME)),
        pb.StreamRequest(end=pb.BracketEnd()),
    ]
    try:
        (response,) = stub.EnhanceStream(iter(requests), metadata=tuple(meta.items()), timeout=30)
    except grpc.RpcError as err:
        trailer = dict(err.trailing_metadata() or ())  # type: ignore[attr-defined]
        return trailer["emvnet-error-code"], err.details(), trailer["x-request-id"]  # type: ignore[attr-defined]
    if response.HasField("error"):
        return response.error.code, response.error.message, response.request_id
    return "ok", "", response.request_id


@pytest.mark.integration
@pytest.mark.parametrize(("x_api_key", "authorization", "accepted"), CREDENTIALS)
def test_the_same_key_gets_the_same_answer_over_both_transports(
    gw: GatewayThread,
    stub: pb_grpc.EnhancerStub,
    x_api_key: str | None,
    authorization: str | None,
    accepted: bool,
) -> None:
    """REST, unary gRPC and a stream refuse the same credentials with the same code and message,
    and let the same ones through (to the bracket check, which refuses a one-frame bracket)."""
    meta = credentials(x_api_key, authorization)
    rest = rest_answer(gw, ONE_FRAME, meta)
    unary = grpc_answer(stub, pb.EnhanceRequest(frames=ONE_FRAME), meta)
    stream = stream_answer(stub, pb.BracketHeader(sequence=1, frame_count=len(ONE_FRAME)), meta)
    expected = "invalid_bracket" if accepted else "unauthenticated"
    assert rest[0] == unary[0] == stream[0] == expected
    assert rest[1] == unary[1] == stream[1]
    if not accepted:
        assert rest[1] == UNAUTHENTICATED_MESSAGE
        assert not any(v in rest[1] for v in meta.values())  # never echoes what was sent


@pytest.mark.integration
@pytest.mark.parametrize("given", [*BAD_IDS, *GOOD_IDS])
def test_the_same_request_id_gets_the_same_answer_over_both_transports(
    gw: GatewayThread, stub: pb_grpc.EnhancerStub, given: str
) -> None:
    """A sane id comes back as sent, an unsafe one is replaced by a fresh one: in REST's header,
    in the unary message field or the `x-request-id` metadata, and in a stream's bracket header."""
    auth = {"x-api-key": KEYS[0]}
    answers = [
        rest_answer(gw, ONE_FRAME, {**auth, "x-request-id": given}),
        grpc_answer(stub, pb.EnhanceRequest(frames=ONE_FRAME, request_id=given), auth),
        grpc_answer(stub, pb.EnhanceRequest(frames=ONE_FRAME), {**auth, "x-request-id": given}),
        stream_answer(stub, pb.BracketHeader(sequence=1, frame_count=1, request_id=given), auth),
        stream_answer(stub, pb.BracketHeader(sequence=1, frame_count=1), {**auth, "x-request-id": given}),
    ]
    ids = [rid for _, _, rid in answers]
    assert {code for code, _, _ in answers} == {"invalid_bracket"}
    if given in GOOD_IDS:
        assert ids == [given] * len(answers)
    else:
        assert all(FRESH.fullmatch(rid) for rid in ids) and len(set(ids)) == len(ids), ids


@pytest.mark.integration
def test_a_merged_response_carries_the_resolved_id(gw: GatewayThread, stub: pb_grpc.EnhancerStub) -> None:
    """Served merges answer with the same rule: the sane id as sent, a fresh one for an unsafe one."""
    frames = synthetic_pngs(48, 64)
    auth = {"x-api-key": KEYS[1]}
    assert rest_answer(gw, frames, {**auth, "x-request-id": "cam-7"}) == ("ok", "", "cam-7")
    code, _, rid = rest_answer(gw, frames, {**auth, "x-request-id": "cam 7"})
    assert code == "ok" and FRESH.fullmatch(rid)
    assert grpc_answer(stub, pb.EnhanceRequest(frames=frames, request_id="cam-7"), auth) == (
        "ok",
        "",
        "cam-7",
    )
    code, _, rid = grpc_answer(stub, pb.EnhanceRequest(frames=frames, request_id="cam 7"), auth)
    assert code == "ok" and FRESH.fullmatch(rid)
