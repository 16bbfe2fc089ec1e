"""Processes for reliability tests: a Redis that persists and can be killed and restarted in place,
the gateway as its own process (so its memory is its own), and small measuring helpers.

Builds on `helpers.servers` (free ports, readiness waits, process-group teardown); loopback only.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx

from helpers.servers import ROOT, _kill, free_port, redis_binary, wait_until

# The classical merge: fast, needs no weights, and does not change when trained weights land.
FAST_MODEL = "weighted"


class PersistentRedis:
    """redis-server with an append-only file (fsync on every write) in `directory`, on a fixed port.

    `kill()` is a crash (SIGKILL: no shutdown save); `start()` again reloads the AOF on the same port.
    """

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 15) -> PersistentRedis:
        import redis

        cmd = [
            redis_binary(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "yes",
            "--appendfsync", "always",
            "--maxmemory-policy", "noeviction",
        ]  # fmt: skip
        log = open(self.directory / "redis.log", "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        client = redis.Redis.from_url(self.url)
        try:
            wait_until(lambda: bool(client.ping()), timeout, "redis-server answering PING")
        finally:
            client.close()
        return self

    def kill(self) -> None:
        """Crash it: SIGKILL, no chance to write anything more."""
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None:
            _kill(self.proc)


@contextlib.contextmanager
def persistent_redis(directory: Path) -> Iterator[PersistentRedis]:
    server = PersistentRedis(directory).start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def gateway_process(
    env: dict[str, str], log_path: Path, ready: bool = True, timeout: float = 60
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`emvnet serve` as a subprocess configured by EMVNET_* `env`; yields (process, base URL)."""
    port = free_port()
    grpc_port = free_port()
    cmd = [sys.executable, "-m", "emvnet.cli", "serve", "--port", str(port), "--grpc-port", str(grpc_port)]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EMVNET_")}
    base_url = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env={**clean, "EMVNET_HOST": "127.0.0.1", **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            path = "/readyz" if ready else "/healthz"
            try:
                wait_until(lambda: httpx.get(base_url + path, timeout=2).status_code == 200, timeout, path)
            except TimeoutError:
                raise AssertionError(
                    f"gateway not up (exit {proc.poll()}):\n{log_path.read_text()[-3000:]}"
                ) from None
            yield proc, base_url
        finally:
            _kill(proc, grace=15)


def rss_bytes(pid: int) -> int:
    """Resident set size of a process (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def multipart(
    frames: list[bytes], ctype: str = "application/octet-stream"
) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("frames", (f"f{i}", data, ctype)) for i, data in enumerate(frames)]


def report(test: str, **figures: object) -> None:
    """Print a test's figures (run pytest with -s to see them) and append them as one JSON line to
    $EMVNET_RELIABILITY_LOG when set: deploy/RELIABILITY.md quotes them."""
    import json

    line = json.dumps({"test": test, **figures}, sort_keys=True)
    print(f"\nRELIABILITY {line}")
    target = os.environ.get("EMVNET_RELIABILITY_LOG")
    if target:
        with open(target, "a") as out:
            out.write(line + "\n")


class DoneCounter:
    """Counts completion messages per job id on a gateway's `P:done` channel (a thread).

    A job whose result is published twice was finished twice: a duplicate from the client's view.
    """

    def __init__(self, url: str, channel: str) -> None:
        import threading

        import redis

        self.counts: dict[str, int] = {}
        self._client = redis.Redis.from_url(url)
        self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        self._pubsub.subscribe(channel)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="done-counter", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                message = self._pubsub.get_message(timeout=0.2)
            except Exception:  # Redis restarting: the counter resubscribes on the next call
                self._stop.wait(0.2)
                continue
            if message and message["type"] == "message":
                job_id = message["data"].decode()
                self.counts[job_id] = self.counts.get(job_id, 0) + 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        with contextlib.suppress(Exception):
            self._pubsub.close()
            self._client.close()
