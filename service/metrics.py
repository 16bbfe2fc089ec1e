"""Prometheus metrics of the gateway (prefix `emvnet_`, base units, low-cardinality labels).

`transport` is rest or grpc; `endpoint` a route template or gRPC method (never a job id); `code`
the HTTP status or the gRPC status name. An embedded gateway also records the merging side's
metrics (`worker/metrics.py`): one registry, one `/metrics`.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from worker.metrics import SECONDS_BUCKETS, exposition

REQUESTS = Counter(
    "emvnet_requests_total",
    "Requests answered, by transport, endpoint and status code.",
    ["transport", "endpoint", "code"],
)
REQUEST_LATENCY = Histogram(
    "emvnet_request_duration_seconds",
    "Time from receiving a request to its answer.",
    ["transport", "endpoint"],
    buckets=SECONDS_BUCKETS,
)
INFLIGHT_REQUESTS = Gauge(
    "emvnet_inflight_requests", "Requests being handled now.", ["transport"], multiprocess_mode="livesum"
)
QUEUE_DEPTH = Gauge(
    "emvnet_queue_depth",
    "Jobs queued and not yet taken by a batch (the broker's queue in Redis mode).",
    multiprocess_mode="max",
)
UPLOAD_BYTES = Counter("emvnet_upload_bytes_total", "Frame bytes received.", ["transport"])

__all__ = ["INFLIGHT_REQUESTS", "QUEUE_DEPTH", "REQUESTS", "REQUEST_LATENCY", "UPLOAD_BYTES", "exposition"]
