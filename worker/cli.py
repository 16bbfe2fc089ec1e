"""`emvnet worker --redis URL [--model NAME]`: a Celery worker that merges queued jobs.

The model is loaded (and warmed up, unless `warmup` is off) by `ModelRunner.load` before the worker
consumes anything; only then does it announce itself as ready (the `emvnet_model_ready` gauge, and
a heartbeat in Redis that gateways read for `/readyz` and that orphan recovery reads to find the
jobs of dead workers: `worker.recovery`). Tasks run on a threads pool (never forked after CUDA
initialised) and feed one process-wide dynamic batcher.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import threading

from worker.settings import WorkerSettings, get_worker_settings

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `worker` subcommand (entry point of the `emvnet.commands` group)."""
    p = sub.add_parser(
        "worker",
        help="run a Celery worker that merges jobs queued in Redis",
        description="Merge jobs queued by `emvnet serve --redis URL`. Any number may run, CPU or GPU. "
        "Every option also reads an EMVNET_* environment variable (e.g. EMVNET_MAX_BATCH_SIZE).",
    )
    p.add_argument("--redis", dest="redis_url", metavar="URL", help="Redis URL (env EMVNET_REDIS_URL)")
    p.add_argument("--model", metavar="NAME", help="default model (env EMVNET_MODEL; default auto)")
    p.add_argument("--device", metavar="D", help="cpu, cuda, cuda:N or auto (env EMVNET_DEVICE)")
    p.add_argument("--concurrency", dest="worker_concurrency", type=int, metavar="N", help="task threads")
    p.add_argument("--max-batch-size", type=int, metavar="N", help="jobs per batch (default 4)")
    p.add_argument("--max-wait-ms", type=float, metavar="MS", help="batching window (default 5)")
    p.add_argument("--metrics-port", type=int, metavar="PORT", help="serve /metrics on this port")
    p.add_argument("--name", metavar="NAME", help="worker name (default emvnet@HOST:PID)")
    p.set_defaults(run=run_worker)


def run_worker(args: argparse.Namespace) -> int:
    settings = get_worker_settings(
        redis_url=args.redis_url,
        model=args.model,
        device=args.device,
        worker_concurrency=args.worker_concurrency,
        max_batch_size=args.max_batch_size,
        max_wait_ms=args.max_wait_ms,
        metrics_port=args.metrics_port,
    )
    if settings.redis_url is None:
        from emvnet.errors import EmvnetError

        raise EmvnetError("emvnet worker needs --redis URL (or EMVNET_REDIS_URL)")
    name = args.name or f"emvnet@{socket.gethostname()}:{os.getpid()}"
    return start_worker(settings, name)


def start_worker(settings: WorkerSettings, name: str) -> int:
    """Load (and warm up), announce readiness, and consume until stopped."""
    from prometheus_client import start_http_server

    from worker import metrics
    from worker.batcher import DynamicBatcher
    from worker.celery_app import WorkerContext, make_celery, register_tasks, send_merge
    from worker.logs import setup_logging
    from worker.recovery import Recovery
    from worker.runner import ModelRunner
    from worker.store import JobStore

    assert settings.redis_url is not None
    setup_logging(settings.log_level, settings.log_json)
    runner = ModelRunner.from_settings(settings)
    runner.load(warmup=settings.warmup)
    # The worker's own batcher never refuses: Celery prefetch already bounds what reaches it.
    batcher = DynamicBatcher(
        runner.run,
        max_batch_size=settings.max_batch_size,
        max_wait_s=settings.max_wait_s,
        max_queue=max(settings.max_queue, settings.concurrency),
    )
    batcher.start()
    store = JobStore.from_url(settings.redis_url, settings.key_prefix, settings.job_ttl_s)
    if settings.metrics_port is not None:
        start_http_server(settings.metrics_port, registry=metrics.registry())
    app = make_celery(settings)
    register_tasks(app, WorkerContext(store, batcher, settings, name))

    stop = threading.Event()
    recovery = Recovery(
        store, name, settings, lambda job_id, params: send_merge(app, settings.queue_name, job_id, params)
    )
    recovery.start(stop)
    log.info("worker %s ready: model %s, batch %d", name, settings.model, settings.max_batch_size)
    try:
        app.worker_main(
            [
                "worker",
                "--pool=threads",
                f"--concurrency={settings.concurrency}",
                f"--queues={settings.queue_name}",
                f"--hostname={name}",
                f"--loglevel={settings.log_level}",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ]
        )
    finally:
        stop.set()
        try:
            store.retire(name)
        except Exception:
            log.warning("could not retire %s from the ready set", name)
        batcher.stop()
        metrics.mark_process_dead()
    return 0
