"""`emvnet serve`: the REST and gRPC gateway in one process, sharing one backend.

Without Redis the backend is the embedded batcher and runner; with `--redis URL` (or
EMVNET_REDIS_URL) the gateway only validates and queues, and `emvnet worker` processes merge.
SIGINT/SIGTERM stop accepting, let calls in flight finish (`graceful_stop_s`), then close.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator

import uvicorn

from service.settings import Settings, get_settings

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `serve` subcommand (entry point of the `emvnet.commands` group)."""
    p = sub.add_parser(
        "serve",
        help="run the REST + gRPC gateway (embedded worker unless --redis is given)",
        description="Serve POST /v1/hdr (REST, OpenAPI at /docs) and emvnet.v1.Enhancer (gRPC). "
        "Every option also reads an EMVNET_* environment variable (e.g. EMVNET_API_KEYS=k1,k2).",
    )
    p.add_argument("--host", metavar="H", help="address to bind (env EMVNET_HOST; default 127.0.0.1)")
    p.add_argument("--port", type=int, metavar="P", help="REST port (default 8000; 0 = any free port)")
    p.add_argument("--grpc-port", type=int, metavar="P", help="gRPC port (default 50051; 0 = any free port)")
    p.add_argument("--no-grpc", action="store_true", help="serve REST only")
    p.add_argument("--redis", dest="redis_url", metavar="URL", help="queue jobs for `emvnet worker`s")
    p.add_argument("--model", metavar="NAME", help="default model (default auto)")
    p.add_argument("--device", metavar="D", help="embedded mode: cpu, cuda, cuda:N or auto")
    p.add_argument("--max-batch-size", type=int, metavar="N", help="embedded mode: jobs per batch")
    p.add_argument("--max-wait-ms", type=float, metavar="MS", help="embedded mode: batching window")
    p.set_defaults(run=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    settings = get_settings(
        host=args.host,
        port=args.port,
        grpc_port=args.grpc_port,
        redis_url=args.redis_url,
        model=args.model,
        device=args.device,
        max_batch_size=args.max_batch_size,
        max_wait_ms=args.max_wait_ms,
    )
    if args.no_grpc:
        settings = settings.model_copy(update={"grpc_port": None})
    asyncio.run(serve(settings))
    return 0


class _QuietServer(uvicorn.Server):
    """Uvicorn without its own signal handling: `serve` stops REST and gRPC together."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Run REST (uvicorn) and gRPC on one event loop until `stop` is set (or a stop signal)."""
    from service.api import create_app
    from service.backends import build_backend
    from service.grpc_server import create_server
    from worker.logs import setup_logging
    from worker.metrics import mark_process_dead

    if stop is None:  # the command line: signals stop us; tests pass their own event instead
        setup_logging(settings.log_level, settings.log_json)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
    backend = build_backend(settings)
    await backend.start()
    app = create_app(settings, backend, manage_backend=False)
    config = uvicorn.Config(
        app, host=settings.host, port=settings.port, log_config=None, access_log=False, lifespan="on"
    )
    http = _QuietServer(config)
    grpc_server = None
    try:
        if settings.grpc_port is not None:
            grpc_server, grpc_port = create_server(settings, backend)
            await grpc_server.start()
            log.info("gRPC listening on %s:%d", settings.host, grpc_port)
        http_task = asyncio.create_task(http.serve())
        mode = "embedded" if settings.embedded else f"redis ({settings.redis_url})"
        log.info("REST on %s:%d, mode %s, model %s", settings.host, settings.port, mode, settings.model)
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait([stopped, http_task], return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        log.info("stopping: letting calls in flight finish for up to %.0f s", settings.graceful_stop_s)
        http.should_exit = True
        if grpc_server is not None:
            await grpc_server.stop(settings.graceful_stop_s)
        await asyncio.gather(http_task, return_exceptions=True)
    finally:
        await backend.close()
        mark_process_dead()
