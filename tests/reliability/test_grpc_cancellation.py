"""gRPC: a client that cancels, or whose deadline expires, mid-call or mid-stream frees what the
server held for it: the in-flight count returns to its level, and a queued job is cancelled and its
frames are dropped from Redis. No worker runs, so every job waits until the client gives up.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
import redis
from helpers.brackets import synthetic_pngs
from helpers.servers import GatewayThread, gateway, make_settings, redis_server, wait_until
from prometheus_client import REGISTRY

from service._generated import enhance_pb2 as pb
from service._generated import enhance_pb2_grpc as pb_grpc

pytestmark = pytest.mark.integration

FRAMES = synthetic_pngs(48, 64)


class Server:
    def __init__(self, gw: GatewayThread, client: redis.Redis, prefix: str) -> None:
        self.gw, self.redis, self.prefix = gw, client, prefix

    def jobs(self) -> dict[str, dict[bytes, bytes]]:
        """Every job record (states and which fields remain)."""
        keys = [k.decode() for k in self.redis.scan_iter(f"{self.prefix}:job:*")]
        return {k: self.redis.hgetall(k) for k in keys}  # type: ignore[misc]


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    prefix = f"cx{uuid.uuid4().hex[:6]}"
    with redis_server() as url:
        settings = make_settings(redis_url=url, key_prefix=prefix, queue_name=prefix)
        with gateway(settings, ready=False) as gw:
            client = redis.Redis.from_url(url)
            yield Server(gw, client, prefix)
            client.close()


@pytest.fixture
def stub(server: Server) -> Iterator[Any]:
    with grpc.insecure_channel(f"127.0.0.1:{server.gw.settings.grpc_port}") as ch:
        yield pb_grpc.EnhancerStub(ch)


def inflight() -> float:
    return REGISTRY.get_sample_value("emvnet_inflight_requests", {"transport": "grpc"}) or 0.0


def assert_freed(server: Server, before: dict[str, Any], baseline: float) -> None:
    """In-flight back to `baseline`; each job created since `before` is cancelled without frames."""

    def freed() -> bool:
        new = {k: v for k, v in server.jobs().items() if k not in before}
        return (
            inflight() == baseline
            and len(new) >= 1
            and all(v.get(b"state") == b"cancelled" and b"frames" not in v for v in new.values())
        )

    # Usually well under a second; 30 s because a run beside a training job once took over 10.
    wait_until(freed, 30, "the server freeing the call's job and frames")


def test_unary_deadline_expiry_cancels_the_job(server: Server, stub: Any) -> None:
    """Enhance with a 1.5 s deadline and no worker: DEADLINE_EXCEEDED, then the job is cancelled."""
    before, baseline = server.jobs(), inflight()
    with pytest.raises(grpc.RpcError) as info:
        stub.Enhance(pb.EnhanceRequest(frames=FRAMES, exposures=[0.25, 1, 4]), timeout=1.5)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert_freed(server, before, baseline)


def test_unary_client_cancel_cancels_the_job(server: Server, stub: Any) -> None:
    """A client that cancels a waiting Enhance: its job is cancelled and its frames dropped."""
    before, baseline = server.jobs(), inflight()
    call = stub.Enhance.future(pb.EnhanceRequest(frames=FRAMES), timeout=30)
    wait_until(lambda: len(server.jobs()) > len(before), 10, "the job queued")
    call.cancel()
    assert call.cancelled()
    assert_freed(server, before, baseline)


def stream_requests(finish_bracket: bool, gate: threading.Event) -> Iterator[Any]:
    """One bracket in chunks; with `finish_bracket` its end too (so a job is queued), then a stall."""
    yield pb.StreamRequest(header=pb.BracketHeader(sequence=0, frame_count=len(FRAMES)))
    for index, frame in enumerate(FRAMES):
        for pos in range(0, len(frame), 4096):
            yield pb.StreamRequest(chunk=pb.FrameChunk(frame_index=index, data=frame[pos : pos + 4096]))
        if not finish_bracket and index == 1:
            break  # mid-bracket: frames buffered on the server, no job yet
    if finish_bracket:
        yield pb.StreamRequest(end=pb.BracketEnd())
    gate.wait(30)  # the client keeps the stream open without sending


@pytest.mark.parametrize("finish_bracket", [False, True], ids=["mid-bracket", "job-queued"])
def test_stream_cancel_frees_the_stream(server: Server, stub: Any, finish_bracket: bool) -> None:
    """Cancelling EnhanceStream mid-bracket (buffered chunks) or with a queued job frees both."""
    before, baseline = server.jobs(), inflight()
    gate = threading.Event()
    call = stub.EnhanceStream(stream_requests(finish_bracket, gate), timeout=30)
    wait_until(lambda: inflight() == baseline + 1, 10, "the stream open on the server")
    if finish_bracket:
        wait_until(lambda: len(server.jobs()) > len(before), 10, "the bracket's job queued")
    else:
        time.sleep(0.5)  # the chunks reach the server
    call.cancel()
    gate.set()
    if finish_bracket:
        assert_freed(server, before, baseline)
    else:
        wait_until(lambda: inflight() == baseline, 10, "the stream closed on the server")
        assert server.jobs().keys() == before.keys()


def test_stream_deadline_expiry_mid_stream(server: Server, stub: Any) -> None:
    """A stream whose deadline passes while its bracket waits: DEADLINE_EXCEEDED, job cancelled."""
    before, baseline = server.jobs(), inflight()
    gate = threading.Event()
    responses = stub.EnhanceStream(stream_requests(True, gate), timeout=2)
    with pytest.raises(grpc.RpcError) as info:
        list(responses)
    gate.set()
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert_freed(server, before, baseline)
