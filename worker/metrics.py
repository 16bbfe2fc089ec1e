"""Prometheus metrics of the merging side (batcher and runner), prefix `emvnet_`, base units.

An embedded gateway and a Celery worker both record these; the gateway's own request metrics are
in `service/metrics.py`. Where several processes serve one port, set PROMETHEUS_MULTIPROC_DIR and
`exposition()` aggregates them (gauges sum live processes).
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

# Latency buckets from a few ms (a tiny merge) to a minute (a large bracket behind a queue).
SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64)

QUEUE_WAIT = Histogram(
    "emvnet_queue_wait_seconds",
    "Time from a job's submission to the start of the batch that runs it.",
    buckets=SECONDS_BUCKETS,
)
INFERENCE = Histogram(
    "emvnet_inference_seconds",
    "Time to decode, merge and encode one batch.",
    ["model"],
    buckets=SECONDS_BUCKETS,
)
BATCH_SIZE = Histogram("emvnet_batch_size", "Jobs per executed batch.", buckets=BATCH_BUCKETS)
QUEUE_DEPTH = Gauge(
    "emvnet_batcher_queue_depth", "Jobs waiting in this process's batcher.", multiprocess_mode="livesum"
)
INFLIGHT = Gauge("emvnet_inflight_jobs", "Jobs in a batch that is running now.", multiprocess_mode="livesum")
JOBS = Counter("emvnet_jobs_total", "Finished jobs by outcome code (ok or an error code).", ["code"])
IMAGES = Counter("emvnet_images_processed_total", "Merged images produced.", ["model"])
PIXELS = Counter(
    "emvnet_pixels_processed_total",
    "Output pixels produced by merges (divide by 1e6 for megapixels).",
    ["model"],
)
ORPHANS_REQUEUED = Counter(
    "emvnet_orphans_requeued_total",
    "Jobs of a worker whose heartbeat lapsed (killed, OOM, node lost) queued again by a live worker.",
)
ORPHANS_FAILED = Counter(
    "emvnet_orphans_failed_total",
    "Jobs taken back (orphaned, or their task message lost) failed with worker_lost instead, having"
    " been re-queued max_requeues times already.",
)
LOST_TASKS_REQUEUED = Counter(
    "emvnet_lost_tasks_requeued_total",
    "Queued jobs whose task message vanished from the broker (popped as Redis crashed) queued again.",
)
MODEL_READY = Gauge(
    "emvnet_model_ready", "1 once the model is loaded and warmed up.", multiprocess_mode="liveall"
)


def registry() -> CollectorRegistry:
    """This process's registry, or one that aggregates every process in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        aggregate = CollectorRegistry()
        multiprocess.MultiProcessCollector(aggregate)
        return aggregate
    return REGISTRY


def mark_process_dead() -> None:
    """In multiprocess mode, drop this process's live gauges (call on exit)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(os.getpid())


def exposition() -> tuple[bytes, str]:
    """The text exposition for a /metrics endpoint."""
    return generate_latest(registry()), CONTENT_TYPE_LATEST
