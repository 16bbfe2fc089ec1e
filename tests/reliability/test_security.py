"""Security properties: API keys enforced on both transports with a constant-time compare, no pickle
on the serving path (a pickled task is refused by a live worker), bounded sizes, secrets only from
the environment. (The container's non-root user is checked in tests/deploy.)
"""

from __future__ import annotations

import ast
import hmac
import json
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from helpers.brackets import synthetic_pngs
from helpers.cluster import FAST_MODEL, multipart
from helpers.servers import (
    ROOT,
    GatewayThread,
    celery_worker,
    gateway,
    make_settings,
    redis_server,
    wait_until,
)

from service._generated import enhance_pb2 as pb
from service._generated import enhance_pb2_grpc as pb_grpc
from service.settings import Settings
from worker.celery_app import MERGE_TASK, make_celery
from worker.jobs import JobSpec
from worker.settings import WorkerSettings
from worker.store import JobStore

KEYS = ["k-alpha-0123456789", "k-beta-9876543210"]
FRAMES = synthetic_pngs(48, 64)


@pytest.fixture(scope="module")
def gw() -> Iterator[GatewayThread]:
    with gateway(make_settings(model=FAST_MODEL, api_keys=KEYS)) as g:
        yield g


@pytest.mark.integration
@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"X-API-Key": "wrong"}, 401),
        ({"X-API-Key": KEYS[0][:-1]}, 401),  # a prefix of a key is no key
        ({"X-API-Key": ""}, 401),
        ({"Authorization": "Bearer wrong"}, 401),
        ({"Authorization": KEYS[0]}, 401),  # without the Bearer scheme
        ({"X-API-Key": KEYS[0]}, 200),
        ({"Authorization": f"Bearer {KEYS[1]}"}, 200),
    ],
)
def test_rest_requires_a_configured_key(gw: GatewayThread, headers: dict[str, str], status: int) -> None:
    """With EMVNET_API_KEYS set, /v1/* needs one of them; the 401 never echoes what was sent."""
    r = httpx.post(gw.base_url + "/v1/hdr", files=multipart(FRAMES), headers=headers, timeout=30)
    assert r.status_code == status, r.text
    if status == 401:
        assert r.json()["error"]["code"] == "unauthenticated"
        assert not any(v and v in r.text for v in headers.values())
        jobs = httpx.get(gw.base_url + f"/v1/jobs/{uuid.uuid4().hex}", headers=headers, timeout=10)
        assert jobs.status_code == 401


@pytest.mark.integration
def test_probes_and_metrics_stay_open(gw: GatewayThread) -> None:
    """Orchestrators and Prometheus carry no keys: /healthz, /readyz and /metrics answer without."""
    for path in ("/healthz", "/readyz", "/metrics"):
        assert httpx.get(gw.base_url + path, timeout=10).status_code == 200


@pytest.mark.integration
def test_grpc_requires_a_configured_key(gw: GatewayThread) -> None:
    """Enhance and EnhanceStream: UNAUTHENTICATED without a valid key, served with one."""
    with grpc.insecure_channel(f"127.0.0.1:{gw.settings.grpc_port}") as ch:
        stub = pb_grpc.EnhancerStub(ch)
        request = pb.EnhanceRequest(frames=FRAMES, exposures=[0.25, 1, 4])
        for meta in ([], [("x-api-key", "wrong")], [("authorization", "Bearer wrong")]):
            with pytest.raises(grpc.RpcError) as info:
                stub.Enhance(request, metadata=meta, timeout=20)
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as info:
            list(stub.EnhanceStream(iter([pb.StreamRequest(end=pb.BracketEnd())]), timeout=20))
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert stub.Enhance(request, metadata=[("x-api-key", KEYS[1])], timeout=30).image
        assert stub.Enhance(request, metadata=[("authorization", f"Bearer {KEYS[0]}")], timeout=30).image


@pytest.mark.integration
def test_keys_are_compared_in_constant_time(gw: GatewayThread, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both transports check keys with hmac.compare_digest (timing does not leak a key's prefix)."""
    calls: list[int] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append(1)
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    httpx.post(gw.base_url + "/v1/hdr", files=multipart(FRAMES), headers={"X-API-Key": "x"}, timeout=30)
    rest_calls = len(calls)
    with grpc.insecure_channel(f"127.0.0.1:{gw.settings.grpc_port}") as ch, pytest.raises(grpc.RpcError):
        pb_grpc.EnhancerStub(ch).Enhance(pb.EnhanceRequest(frames=FRAMES), metadata=[("x-api-key", "x")])
    assert rest_calls >= len(KEYS) and len(calls) >= rest_calls + len(KEYS)


FORBIDDEN_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "marshal", "shelve"}


def unsafe_calls(path: Path) -> list[str]:
    """Deserialisers that can run code: pickle-family imports, torch.load without weights_only=True,
    yaml.load, eval/exec."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            bad = [n for n in names if n.split(".")[0] in FORBIDDEN_MODULES]
            found += [f"{path}:{node.lineno} import {n}" for n in bad]
        if isinstance(node, ast.Call):
            func = ast.unparse(node.func)
            if func in ("eval", "exec", "yaml.load", "yaml.unsafe_load"):
                found.append(f"{path}:{node.lineno} {func}()")
            if func.endswith("torch.load"):
                safe = any(
                    k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
                    for k in node.keywords
                )
                if not safe:
                    found.append(f"{path}:{node.lineno} torch.load without weights_only=True")
    return found


def serving_modules() -> list[Path]:
    """Source files of every project module that a gateway and a worker import (a fresh process)."""
    code = (
        "import json, sys; import service.api, service.cli, service.grpc_server, "
        "service.backends.redis_celery, worker.cli, worker.celery_app, worker.runner, emvnet.registry, "
        "emvnet.infer; "
        "print(json.dumps([m.__file__ for n, m in sys.modules.items() "
        "if n.split('.')[0] in ('emvnet', 'service', 'worker') and getattr(m, '__file__', None)]))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    files = [Path(f) for f in json.loads(out.stdout.strip().splitlines()[-1])]
    return [f for f in files if "_generated" not in f.parts]


def test_no_pickle_on_the_serving_path() -> None:
    """No module a gateway or worker loads can unpickle (or eval) data: JSON and safetensors only."""
    files = serving_modules()
    assert any(f.match("service/api/*.py") for f in files) and any(f.match("worker/*.py") for f in files)
    problems = [p for f in files for p in unsafe_calls(f)]
    assert not problems, problems
    settings = WorkerSettings(redis_url="redis://127.0.0.1:1/0")
    conf = make_celery(settings).conf
    assert list(conf.accept_content) == ["json"] and conf.task_serializer == "json"
    assert conf.result_serializer == "json"


class _Payload:
    """Unpickling this creates `marker`: proof that a worker would have run attacker code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


@pytest.mark.integration
@pytest.mark.slow
def test_worker_refuses_a_pickled_task(tmp_path: Path) -> None:
    """A pickle-serialised task put on the queue is refused unread; the worker keeps serving."""
    prefix = f"sec{uuid.uuid4().hex[:6]}"
    marker = tmp_path / "pwned"
    with redis_server() as url:
        env = {
            "EMVNET_REDIS_URL": url,
            "EMVNET_KEY_PREFIX": prefix,
            "EMVNET_QUEUE_NAME": prefix,
            "EMVNET_MODEL": FAST_MODEL,
        }
        settings = WorkerSettings(redis_url=url, key_prefix=prefix, queue_name=prefix)
        store = JobStore.from_url(url, prefix, 300)
        app = make_celery(settings)
        app.conf.accept_content = ["json", "pickle"]  # the attacker's producer, not ours
        with celery_worker(env, tmp_path / "w.log") as proc:
            wait_until(lambda: bool(store.client.zcard(f"{prefix}:workers")), 60, "worker ready")
            app.send_task(MERGE_TASK, args=[_Payload(marker), {}], queue=prefix, serializer="pickle")
            spec = JobSpec(uuid.uuid4().hex, FAST_MODEL, 3, 64, 48, exposures=(0.25, 1.0, 4.0))
            store.put(spec, tuple(FRAMES))
            app.send_task(MERGE_TASK, args=[spec.job_id, spec.to_dict()], queue=prefix)
            wait_until(lambda: store.state(spec.job_id) == "done", 30, "the JSON job after the pickled one")
            time.sleep(0.5)
            assert proc.poll() is None
        log = (tmp_path / "w.log").read_text()
        app.close()
        store.client.close()
    assert not marker.exists(), "the worker unpickled a task"
    assert re.search(r"pickle|disallowed", log, re.I), log[-2000:]  # refused, and said so


def test_every_size_is_bounded() -> None:
    """Every size a client controls has a finite default limit, and a bad limit fails at startup."""
    s = Settings()
    assert s.max_request_bytes <= 1024**3 and s.max_pixels <= 200_000_000
    assert s.max_frames <= 64 and s.max_queue < 10_000 and s.body_timeout_s <= 120
    assert s.sync_timeout_s <= s.task_time_limit_s < s.visibility_timeout_s
    for bad in ({"max_request_bytes": 0}, {"max_frames": 65}, {"max_pixels": -1}, {"body_timeout_s": 0}):
        with pytest.raises(ValueError, match="validation error"):
            Settings(**bad)  # type: ignore[arg-type]


@pytest.mark.integration
def test_many_parts_and_huge_fields_are_refused(gw: GatewayThread) -> None:
    """Thousands of parts, or a form field of megabytes: a 4xx, never a 5xx."""
    key = {"X-API-Key": KEYS[0]}
    many = [("frames", (f"f{i}", b"x", "image/png")) for i in range(1500)]
    r = httpx.post(gw.base_url + "/v1/hdr", files=many, headers=key, timeout=30)
    assert 400 <= r.status_code < 500, r.text
    r = httpx.post(
        gw.base_url + "/v1/hdr",
        files=multipart(FRAMES),
        data={"exposures": "1," * 1_000_000},
        headers=key,
        timeout=30,
    )
    assert 400 <= r.status_code < 500, r.text[:300]


def test_secrets_come_only_from_the_environment() -> None:
    """No key or password is written in the deployment files; each is read from the environment."""
    assert Settings().api_keys == [] or "EMVNET_API_KEYS" in __import__("os").environ
    files = [ROOT / "docker-compose.yml", ROOT / "Dockerfile", *sorted((ROOT / "deploy").rglob("*.y*ml"))]
    secret_line = re.compile(r"(API_KEYS|PASSWORD|SECRET|TOKEN)\w*\s*[:=]\s*(?P<value>[^\s#]+)", re.I)
    for path in files:
        for line in path.read_text().splitlines():
            m = secret_line.search(line)
            if m and not line.lstrip().startswith("#"):
                value = m.group("value").strip("\"'")
                from_env = value.startswith("${") or value in ("", "{name:")
                assert from_env or value.startswith("{"), f"{path.name}: literal secret in {line.strip()!r}"
