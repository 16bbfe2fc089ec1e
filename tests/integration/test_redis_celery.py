"""Redis mode end to end: a private redis-server, a real `emvnet worker` (Celery) subprocess, and the
gateway over real HTTP and gRPC."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import httpx
import pytest
from helpers.brackets import frobisher, synthetic_jpegs, synthetic_pngs
from helpers.servers import (
    GatewayThread,
    celery_worker,
    free_port,
    gateway,
    lint_exposition,
    make_settings,
    redis_server,
    wait_until,
)

from service._generated import enhance_pb2 as pb
from service._generated import enhance_pb2_grpc as pb_grpc
from worker.batcher import DynamicBatcher
from worker.celery_app import WorkerContext, process
from worker.jobs import JobSpec
from worker.settings import WorkerSettings
from worker.store import JobStore

pytestmark = pytest.mark.integration


class Stack:
    def __init__(self, url: str, prefix: str, gw: GatewayThread, metrics_port: int, log: Path) -> None:
        self.url, self.prefix, self.gw, self.metrics_port, self.log = url, prefix, gw, metrics_port, log


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Redis, then the gateway (not ready: no worker yet), then one worker; ready once it beats."""
    prefix = f"t{uuid.uuid4().hex[:8]}"
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    metrics_port = free_port()
    with redis_server() as url:
        settings = make_settings(redis_url=url, key_prefix=prefix, queue_name=prefix, heartbeat_s=0.5)
        with gateway(settings, ready=False) as gw:
            ready = httpx.get(gw.base_url + "/readyz", timeout=5)
            assert ready.status_code == 503 and ready.json()["checks"] == {"queue": True, "model": False}
            env = {
                "EMVNET_REDIS_URL": url,
                "EMVNET_KEY_PREFIX": prefix,
                "EMVNET_QUEUE_NAME": prefix,
                "EMVNET_MAX_WAIT_MS": "50",
                "EMVNET_HEARTBEAT_S": "0.5",
                "EMVNET_LOG_LEVEL": "INFO",
            }
            with celery_worker(env, log, "--metrics-port", str(metrics_port)) as proc:
                try:
                    wait_until(
                        lambda: httpx.get(gw.base_url + "/readyz", timeout=5).status_code == 200,
                        60,
                        "worker ready",
                    )
                except TimeoutError:
                    raise AssertionError(
                        f"worker not ready (exit {proc.poll()}):\n{log.read_text()[-3000:]}"
                    ) from None
                yield Stack(url, prefix, gw, metrics_port, log)


def files(frames: list[bytes]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("frames", (f"f{i}", data, "application/octet-stream")) for i, data in enumerate(frames)]


def test_a_worker_loaded_without_warmup_reports_ready(stack: Stack, tmp_path: Path) -> None:
    """A worker started with warmup off (on a queue of its own) beats and sets its model-ready gauge
    to 1 all the same, without ever warming up."""
    prefix, port, log = f"nw{uuid.uuid4().hex[:8]}", free_port(), tmp_path / "worker.log"
    env = {
        "EMVNET_REDIS_URL": stack.url,
        "EMVNET_KEY_PREFIX": prefix,
        "EMVNET_QUEUE_NAME": prefix,
        "EMVNET_HEARTBEAT_S": "0.5",
        "EMVNET_LOG_LEVEL": "INFO",
        "EMVNET_MODEL": "weighted",
        "EMVNET_WARMUP": "false",
    }
    store = JobStore.from_url(stack.url, prefix, 60)
    with celery_worker(env, log, "--metrics-port", str(port), "--name", "cold") as proc:
        try:
            wait_until(lambda: store.alive({"cold"}, time.time()) == {"cold"}, 60, "worker heartbeat")
        except TimeoutError:
            tail = log.read_text()[-3000:]
            raise AssertionError(f"worker not ready (exit {proc.poll()}):\n{tail}") from None
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    assert "emvnet_model_ready 1.0" in text.splitlines()
    output = log.read_text()
    assert "loaded model weighted" in output and "warmed up" not in output
    store.client.close()


def test_sync_rest_through_the_queue(stack: Stack) -> None:
    """A synchronous REST call is merged by the worker and answered with the image."""
    r = httpx.post(stack.gw.base_url + "/v1/hdr", files=files(frobisher()), timeout=30)
    assert r.status_code == 200, r.text
    assert r.content.startswith(b"\x89PNG") and r.headers["x-image-width"] == "480"


def test_grpc_through_the_queue(stack: Stack) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{stack.gw.settings.grpc_port}") as ch:
        r = pb_grpc.EnhancerStub(ch).Enhance(pb.EnhanceRequest(frames=frobisher()), timeout=30)
    assert (r.width, r.height) == (480, 320)


def test_async_job_and_worker_errors(stack: Stack) -> None:
    """An async job finishes in Redis; a frame that only fails to decode in the worker comes back 422."""
    client = httpx.Client(base_url=stack.gw.base_url, timeout=30)
    r = client.post("/v1/hdr", files=files(synthetic_pngs()), params={"mode": "async"})
    assert r.status_code == 202
    location = r.headers["location"]
    wait_until(lambda: client.get(location).json()["state"] == "done", 20, "async job done")
    assert client.get(location + "/result").content.startswith(b"\x89PNG")
    # The worker kept the linear result too: another format is encoded on demand, not refused.
    exr = client.get(location + "/result", headers={"Accept": "image/x-exr"})
    assert exr.status_code == 200 and exr.headers["content-type"] == "image/x-exr"
    assert exr.content.startswith(b"\x76\x2f\x31\x01")
    frames = frobisher()
    broken = [frames[0], frames[1][:2000], frames[2]]  # headers intact, pixel data cut
    r = client.post("/v1/hdr", files=files(broken))
    assert r.status_code == 422 and r.json()["error"]["code"] == "corrupt_image", r.text
    client.close()


def test_concurrent_jobs_batch_and_metrics_lint(stack: Stack) -> None:
    """Concurrent requests of one shape share batches in the worker; its /metrics passes promtool."""
    frames = synthetic_jpegs(500, 500)
    with ThreadPoolExecutor(6) as pool:
        codes = list(
            pool.map(
                lambda _: (
                    httpx.post(stack.gw.base_url + "/v1/hdr", files=files(frames), timeout=60).status_code
                ),
                range(12),
            )
        )
    assert codes == [200] * 12
    text = httpx.get(f"http://127.0.0.1:{stack.metrics_port}/metrics", timeout=10).text
    values = {
        line.split()[0]: float(line.split()[1]) for line in text.splitlines() if line.startswith("emvnet_")
    }
    assert values["emvnet_batch_size_count"] < values["emvnet_batch_size_sum"], "no batch held two jobs"
    assert sum(v for k, v in values.items() if k.startswith("emvnet_images_processed_total")) >= 12
    linted = [
        lint_exposition(page) for page in (text, httpx.get(stack.gw.base_url + "/metrics", timeout=10).text)
    ]
    if not all(linted):
        pytest.skip("promtool is not installed (Debian package prometheus); only parsed the expositions")


def test_redelivered_task_is_idempotent(stack: Stack) -> None:
    """Processing a finished job again returns its state without merging twice."""
    store = JobStore.from_url(stack.url, stack.prefix, 60)
    spec = JobSpec(uuid.uuid4().hex, "auto", 3, 128, 96, exposures=(0.25, 1.0, 4.0))
    store.put(spec, tuple(synthetic_pngs()))
    runs: list[int] = []

    def counting_run(batch):  # type: ignore[no-untyped-def]
        from worker.runner import ModelRunner

        runs.append(len(batch))
        return ModelRunner("auto").run(batch)

    batcher = DynamicBatcher(counting_run, max_batch_size=1, max_wait_s=0, max_queue=4)
    batcher.start()
    ctx = WorkerContext(store, batcher, WorkerSettings())
    store.heartbeat(ctx.name, 60)  # alive: the stack's worker must not take its job as an orphan
    try:
        assert process(ctx, spec.job_id, spec.to_dict()) == "done"
        assert process(ctx, spec.job_id, spec.to_dict()) == "done"
        assert process(ctx, "missing", spec.to_dict()) == "expired"
    finally:
        batcher.stop()
    assert runs == [1] and store.frames(spec.job_id) is None  # frames dropped once finished


def test_redis_queue_bound_and_sync_deadline(stack: Stack) -> None:
    """With no worker on a queue: a synchronous call that runs out of time gets 504 and its job is
    marked cancelled (a worker would skip it); past max_queue, 429 + Retry-After."""
    prefix = "nobody" + stack.prefix
    settings = make_settings(
        redis_url=stack.url, key_prefix=prefix, queue_name=prefix, max_queue=1, grpc_port=None
    )
    with gateway(settings, ready=False) as gw, httpx.Client(base_url=gw.base_url, timeout=30) as client:
        assert client.get("/readyz").status_code == 503  # no worker announces itself under this prefix
        r = client.post("/v1/hdr", files=files(frobisher()), params={"timeout": "0.5"})
        assert r.status_code == 504 and r.json()["error"]["code"] == "deadline_exceeded"
        r = client.post("/v1/hdr", files=files(frobisher()), params={"mode": "async"})
        assert r.status_code == 429 and r.headers["retry-after"] == "1", r.text
    store = JobStore.from_url(stack.url, prefix, 60)
    states = [store.client.hget(k, "state") for k in store.client.scan_iter(f"{prefix}:job:*")]
    assert states == [b"cancelled"]
    store.client.close()


def test_job_records_expire_and_delivered_images_are_dropped(stack: Stack) -> None:
    """Job hashes carry a TTL; once a synchronous caller has its image, only a small record stays."""
    import redis

    client = redis.Redis.from_url(stack.url)
    r = httpx.post(stack.gw.base_url + "/v1/hdr", files=files(frobisher()), timeout=30)
    key = f"{stack.prefix}:job:{r.headers['x-job-id']}"
    assert client.hget(key, "state") == b"done" and client.hget(key, "result") is None
    assert client.hget(key, "linear") is None  # a synchronous job never encodes a linear copy
    assert 0 < client.ttl(key) <= 300
    assert httpx.get(f"{stack.gw.base_url}/v1/jobs/{r.headers['x-job-id']}/result").status_code == 404
    keys = list(client.scan_iter(f"{stack.prefix}:job:*"))
    assert keys and all(0 < client.ttl(k) <= 3600 for k in keys)
    client.close()


def test_worker_log_is_structured(stack: Stack) -> None:
    """Worker logs are JSON lines that carry the request id of the job."""
    time.sleep(0.2)
    lines = [line for line in stack.log.read_text().splitlines() if line.startswith("{")]
    assert any('"request_id"' in line for line in lines)
