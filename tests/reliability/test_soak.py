"""A bounded soak through the whole stack (gateway process, Redis, one worker process): a few hundred
synchronous merges at concurrency 16 with zero errors, and no memory growth past a stated bound.
"""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from helpers.brackets import synthetic_pngs
from helpers.cluster import FAST_MODEL, gateway_process, multipart, percentile, report, rss_bytes
from helpers.servers import celery_worker, redis_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REQUESTS = 300
WARMUP = 60  # requests before the first RSS reading: allocator pools and caches fill up first
CONCURRENCY = 16
MIB = 1024 * 1024
# After warm-up, neither process may grow by more than this over the remaining 240 requests: a
# leak of one 96x128 bracket's frames or result per request (~100 KiB) would exceed it.
RSS_GROWTH_BOUND = 24 * MIB


def test_soak_no_errors_and_stable_memory(tmp_path: Path) -> None:
    """300 merges, 16 at a time: every one 200, and bounded RSS growth after warm-up."""
    prefix = f"soak{uuid.uuid4().hex[:6]}"
    frames = synthetic_pngs(96, 128)
    with redis_server() as url:
        env = {
            "EMVNET_REDIS_URL": url,
            "EMVNET_KEY_PREFIX": prefix,
            "EMVNET_QUEUE_NAME": prefix,
            "EMVNET_MODEL": FAST_MODEL,
            "EMVNET_HEARTBEAT_S": "0.5",
            "EMVNET_LOG_LEVEL": "WARNING",
        }
        with (
            celery_worker(env, tmp_path / "worker.log") as worker,
            gateway_process({**env, "EMVNET_SYNC_TIMEOUT_S": "60"}, tmp_path / "gw.log") as (gw, base),
            httpx.Client(base_url=base, timeout=90, limits=httpx.Limits(max_connections=16)) as client,
        ):

            def one(_: int) -> tuple[int, float]:
                t0 = time.perf_counter()
                r = client.post("/v1/hdr", files=multipart(frames), data={"exposures": "0.25,1,4"})
                ok = r.status_code == 200 and r.content.startswith(b"\x89PNG")
                return (200 if ok else r.status_code), time.perf_counter() - t0

            with ThreadPoolExecutor(CONCURRENCY) as pool:
                warm = list(pool.map(one, range(WARMUP)))
                rss0 = {"gateway": rss_bytes(gw.pid), "worker": rss_bytes(worker.pid)}
                t0 = time.perf_counter()
                rest = list(pool.map(one, range(REQUESTS - WARMUP)))
                elapsed = time.perf_counter() - t0
            rss1 = {"gateway": rss_bytes(gw.pid), "worker": rss_bytes(worker.pid)}
            assert worker.poll() is None and gw.poll() is None
    results = warm + rest
    errors = [code for code, _ in results if code != 200]
    latencies = [s for _, s in rest]
    growth = {k: rss1[k] - rss0[k] for k in rss0}
    report(
        "soak",
        requests=len(results),
        concurrency=CONCURRENCY,
        errors=len(errors),
        p50_s=round(percentile(latencies, 50), 3),
        p99_s=round(percentile(latencies, 99), 3),
        throughput_rps=round(len(rest) / elapsed, 1),
        rss_after_warmup_mib={k: round(v / MIB, 1) for k, v in rss0.items()},
        rss_end_mib={k: round(v / MIB, 1) for k, v in rss1.items()},
        rss_growth_mib={k: round(v / MIB, 1) for k, v in growth.items()},
        rss_growth_bound_mib=RSS_GROWTH_BOUND / MIB,
    )
    assert not errors, errors[:10]
    for name, grew in growth.items():
        assert grew <= RSS_GROWTH_BOUND, f"{name} grew {grew / MIB:.1f} MiB after warm-up"
