"""deploy/: docker-compose and Kubernetes manifests parse and agree with each other, with the
vLLM pool files (configs/vllm/) and with the gateway's config schema."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from gateway.config import Settings, load_settings
from workers.vllm import PoolSpec, compose_service, find_pool, k8s_objects, replica_name

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S = DEPLOY / "k8s"
ENV = {"FRUGATE_MASTER_KEY": "fk-test", "POSTGRES_PASSWORD": "pw", "HF_TOKEN": ""}
POOLS = ("small", "large")


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    return data


def k8s_docs() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            docs += [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    return docs


def by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in k8s_docs() if d["kind"] == kind}


def settings_from(text: str, tmp_path: Path) -> Settings:
    path = tmp_path / "frugate.yaml"
    path.write_text(text)
    return load_settings(path, env=ENV)


def flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


Replicas = dict[str, list[tuple[str, int, bool]]]


def check_pool_matches(settings: Settings, urls_for: Replicas) -> None:
    """Each gateway pool names its vLLM pool's served model and exactly its replicas."""
    for name in POOLS:
        spec = find_pool(name)
        pool = next(p for p in settings.pools if p.name == name)
        assert pool.model == spec.served_name
        assert pool.max_context <= spec.max_model_len
        got = [(urlparse(r.url).hostname, urlparse(r.url).port, r.speculative)
               for r in pool.replicas]
        assert got == urls_for[name]


# -- docker compose ---------------------------------------------------------------------------

def test_compose_has_the_stack() -> None:
    services = compose()["services"]
    assert set(services) == {"lb", "gateway-1", "gateway-2", "redis", "postgres",
                             "vllm-small", "vllm-large"}
    assert services["redis"]["image"].startswith("redis:7")
    assert services["postgres"]["image"].startswith("postgres:16")
    for name, service in services.items():
        assert "healthcheck" in service, name
    assert services["lb"]["ports"] == ["8080:8080"]


def test_compose_vllm_services_are_the_rendered_pools() -> None:
    services = compose()["services"]
    for name in POOLS:
        spec = find_pool(name)
        assert services[f"vllm-{name}"] == compose_service(spec, 0)
        devices = services[f"vllm-{name}"]["deploy"]["resources"]["reservations"]["devices"]
        assert devices[0]["count"] == spec.tensor_parallel_size


def test_compose_gateways_share_image_config_and_dependencies() -> None:
    services = compose()["services"]
    gateways = [services["gateway-1"], services["gateway-2"]]
    assert gateways[0] == gateways[1]
    gw = gateways[0]
    assert gw["command"] == ["frugate", "serve", "--config", "/etc/frugate/frugate.yaml"]
    assert "./frugate.compose.yaml:/etc/frugate/frugate.yaml:ro" in gw["volumes"]
    assert (DEPLOY / "frugate.compose.yaml").is_file()
    assert set(gw["depends_on"]) == {"redis", "postgres"}
    assert "/healthz" in " ".join(gw["healthcheck"]["test"])
    assert "8080" in gw["expose"]


def test_compose_gateway_config_is_valid_and_points_at_the_pools(tmp_path: Path) -> None:
    settings = settings_from((DEPLOY / "frugate.compose.yaml").read_text(), tmp_path)
    services = compose()["services"]
    assert settings.port == 8080 and settings.redis_url and settings.database_url
    assert urlparse(settings.redis_url).hostname == "redis"
    assert "@postgres:5432/" in settings.database_url
    urls = {}
    for name in POOLS:
        svc = services[f"vllm-{name}"]
        urls[name] = [(f"vllm-{name}", int(flag(svc["command"], "--port")),
                       "--speculative-config" in svc["command"])]
    check_pool_matches(settings, urls)


def test_nginx_balances_over_both_gateways() -> None:
    conf = (DEPLOY / "nginx.conf").read_text()
    upstreams = re.findall(r"server\s+([\w-]+):(\d+)", conf)
    assert upstreams == [("gateway-1", "8080"), ("gateway-2", "8080")]
    assert re.search(r"listen\s+8080;", conf)
    assert "proxy_buffering off;" in conf  # SSE


def compose_client() -> list[str] | None:
    """`docker compose` (v2 plugin) or `docker-compose` (v1), whichever is installed."""
    if shutil.which("docker") and subprocess.run(
            ["docker", "compose", "version"], capture_output=True, check=False).returncode == 0:
        return ["docker", "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def test_docker_compose_config_accepts_the_file() -> None:
    client = compose_client()
    if client is None:
        pytest.skip("no docker compose client installed")
    done = subprocess.run(
        [*client, "-f", str(DEPLOY / "docker-compose.yml"), "config", "-q"],
        capture_output=True, text=True, env={"PATH": "/usr/bin:/bin:/usr/local/bin", **ENV},
        check=False)
    assert done.returncode == 0, done.stderr


# -- kubernetes -------------------------------------------------------------------------------

def test_every_k8s_file_parses_and_kustomization_lists_them() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(kustomization["resources"]) == sorted(files)
    for doc in k8s_docs():
        assert {"apiVersion", "kind", "metadata"} <= set(doc)


def test_vllm_manifests_are_the_rendered_pools() -> None:
    for name in POOLS:
        docs = list(yaml.safe_load_all((K8S / f"vllm-{name}.yaml").read_text()))
        assert docs == k8s_objects(find_pool(name))


def test_vllm_deployments_request_gpus_and_probe_health() -> None:
    deployments = by_kind("Deployment")
    for name in POOLS:
        spec: PoolSpec = find_pool(name)
        for i in range(spec.replicas):
            (c,) = deployments[replica_name(spec, i)]["spec"]["template"]["spec"]["containers"]
            assert c["resources"]["limits"]["nvidia.com/gpu"] == str(spec.tensor_parallel_size)
            assert c["readinessProbe"]["httpGet"]["path"] == "/health"
            assert c["image"] == spec.image


def test_services_select_pods_on_named_ports() -> None:
    pods: list[tuple[dict[str, str], set[str]]] = []
    for doc in k8s_docs():
        if doc["kind"] in {"Deployment", "StatefulSet"}:
            template = doc["spec"]["template"]
            assert doc["spec"]["selector"]["matchLabels"].items() <= (
                template["metadata"]["labels"].items())
            ports = {p["name"] for c in template["spec"]["containers"] for p in c["ports"]}
            pods.append((template["metadata"]["labels"], ports))
    for name, svc in by_kind("Service").items():
        selector = svc["spec"]["selector"]
        matches = [ports for labels, ports in pods if selector.items() <= labels.items()]
        assert len(matches) == 1, name
        for port in svc["spec"]["ports"]:
            assert port["targetPort"] in matches[0], (name, port)


def test_gateway_deployment_mounts_config_and_secret() -> None:
    deployment = by_kind("Deployment")["frugate-gateway"]
    (c,) = deployment["spec"]["template"]["spec"]["containers"]
    assert c["args"] == ["frugate", "serve", "--config", "/etc/frugate/frugate.yaml"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert {"containerPort": 8080, "name": "http"} in c["ports"]
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    mount = next(m for m in c["volumeMounts"] if m["mountPath"] == "/etc/frugate")
    assert volumes[mount["name"]]["configMap"]["name"] in by_kind("ConfigMap")
    secret_name = c["envFrom"][0]["secretRef"]["name"]
    secret = by_kind("Secret")[secret_name]
    config = by_kind("ConfigMap")["frugate-config"]["data"]["frugate.yaml"]
    needed = set(re.findall(r"\$\{([A-Z_]+)", config))
    assert needed <= set(secret["stringData"])
    hpa = by_kind("HorizontalPodAutoscaler")["frugate-gateway"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == "frugate-gateway"
    assert hpa["spec"]["minReplicas"] >= 2


def test_k8s_gateway_config_lists_every_vllm_replica(tmp_path: Path) -> None:
    config = by_kind("ConfigMap")["frugate-config"]["data"]["frugate.yaml"]
    settings = settings_from(config, tmp_path)
    services = by_kind("Service")
    urls = {}
    for name in POOLS:
        spec = find_pool(name)
        urls[name] = [(replica_name(spec, i),
                       services[replica_name(spec, i)]["spec"]["ports"][0]["port"],
                       spec.speculates(i)) for i in range(spec.replicas)]
    check_pool_matches(settings, urls)
    assert urlparse(settings.redis_url or "").hostname in services
    assert "@postgres:5432/" in (settings.database_url or "") and "postgres" in services


def test_stateful_backends_use_the_expected_images() -> None:
    sets = by_kind("StatefulSet")
    assert sets["redis"]["spec"]["template"]["spec"]["containers"][0]["image"].startswith("redis:7")
    assert sets["postgres"]["spec"]["template"]["spec"]["containers"][0]["image"].startswith(
        "postgres:16")
