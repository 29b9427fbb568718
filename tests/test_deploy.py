"""deploy/ and docker-compose.yml agree with the code: the ports Prometheus scrapes are the
ones the services listen on, every metric the dashboard plots is one a service exports, and
the monitoring services start only with their profile."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
SERVICE_PACKAGES = ("engine", "risk", "history", "gateway", "marketdata", "api")


def _compose() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _exported_names() -> set[str]:
    """Every ``streamex_*`` metric name written in a service's code."""
    names: set[str] = set()
    for package in SERVICE_PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            names |= set(re.findall(r"\"(streamex_[a-z0-9_]+)\"", path.read_text()))
    return names


def test_prometheus_scrapes_every_service_on_its_configured_port() -> None:
    config = tomllib.loads((DEPLOY / "streamex.toml").read_text())
    expected = {
        "engine": config["engine"]["metrics_port"], "risk": config["risk"]["metrics_port"],
        "history": config["history"]["metrics_port"], "gateway": config["gateway"]["port"],
        "marketdata": config["marketdata"]["port"], "api": config["api"]["port"]}
    prometheus = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    targets = {job["job_name"]: job["static_configs"][0]["targets"]
               for job in prometheus["scrape_configs"]}
    assert targets == {name: [f"{name}:{port}"] for name, port in expected.items()}
    services = _compose()["services"]
    assert set(expected) <= set(services)
    for name in ("engine", "risk", "history"):  # listening inside the network
        assert config[name]["metrics_host"] == "0.0.0.0"


def test_every_streamex_service_has_a_readyz_healthcheck_on_its_port() -> None:
    config = tomllib.loads((DEPLOY / "streamex.toml").read_text())
    ports = {"engine": config["engine"]["metrics_port"], "risk": config["risk"]["metrics_port"],
             "history": config["history"]["metrics_port"],
             "gateway": config["gateway"]["port"], "marketdata": config["marketdata"]["port"],
             "api": config["api"]["port"]}
    services = _compose()["services"]
    for name, port in ports.items():
        test = " ".join(services[name]["healthcheck"]["test"])
        assert f"http://127.0.0.1:{port}/readyz" in test, name


def test_monitoring_services_start_only_with_their_profile() -> None:
    services = _compose()["services"]
    assert services["prometheus"]["profiles"] == ["monitoring"]
    assert services["grafana"]["profiles"] == ["monitoring"]
    others = [n for n, s in services.items() if n not in ("prometheus", "grafana")]
    assert all("profiles" not in services[n] for n in others)
    # Published on loopback only, like every other port of the compose file.
    for name, svc in services.items():
        for port in svc.get("ports", []):
            assert port.startswith("127.0.0.1:"), (name, port)


def test_the_dashboard_plots_only_metrics_the_services_export() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "streamex.json").read_text())
    used = {re.sub(r"_(bucket|sum|count)$", "", name)
            for panel in dashboard["panels"] for target in panel["targets"]
            for name in re.findall(r"streamex_[a-z0-9_]+", target["expr"])}
    assert len(used) >= 20
    exported = _exported_names()
    missing = sorted(n for n in used if n not in exported
                     and n.removesuffix("_total") not in exported)
    assert missing == []
    provider = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "dashboards" / "streamex.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


CONTRACT_METRICS = {
    "streamex_engine_commands_applied_total", "streamex_engine_batch_size",
    "streamex_engine_commit_seconds", "streamex_engine_lag_entries",
    "streamex_engine_lag_seconds", "streamex_engine_snapshot_age_seconds",
    "streamex_engine_lease_held", "streamex_engine_epoch", "streamex_engine_reconnects_total",
    "streamex_gateway_connections", "streamex_gateway_requests_total",
    "streamex_gateway_rate_limited_total", "streamex_gateway_order_latency_seconds",
    "streamex_gateway_messages_sent_total", "streamex_gateway_slow_closes_total",
    "streamex_marketdata_connections",
    "streamex_marketdata_subscribers", "streamex_marketdata_slow_snapshots_total",
    "streamex_marketdata_slow_closes_total", "streamex_marketdata_messages_sent_total",
    "streamex_api_requests_total", "streamex_api_request_seconds",
    "streamex_gateway_reconnects_total", "streamex_marketdata_reconnects_total",
    "streamex_api_reconnects_total",
    "streamex_history_entries_total", "streamex_history_lag_seconds",
    "streamex_history_write_seconds"}
"""The metric names of issue 17's contract (histograms by their base name)."""
HISTOGRAMS = {n for n in CONTRACT_METRICS if n.endswith(("_seconds", "_size"))
              and "lag" not in n and "age" not in n}


def test_the_dashboard_uses_only_the_contract_s_metrics_and_covers_them() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "streamex.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"]
             for target in panel.get("targets", [])]
    used = {name for expr in exprs for name in re.findall(r"streamex_[a-z0-9_]+", expr)}
    for name in sorted(used):
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        if base != name:
            assert base in HISTOGRAMS, name
        else:
            assert name in CONTRACT_METRICS, name
    covered = {re.sub(r"_(bucket|sum|count)$", "", n) for n in used}
    assert covered == CONTRACT_METRICS, sorted(CONTRACT_METRICS - covered)
    quantiles = [e for e in exprs if e.startswith("histogram_quantile(")]
    for histogram in ("streamex_engine_commit_seconds_bucket",
                      "streamex_gateway_order_latency_seconds_bucket"):
        assert {q.split(",")[0] for q in quantiles if histogram in q} == {
            "histogram_quantile(0.5", "histogram_quantile(0.99"}, histogram
    datasource = {p["datasource"]["uid"] for p in dashboard["panels"] if "datasource" in p}
    assert datasource == {"prometheus"}
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])


def test_compose_prometheus_and_grafana_provisioning_agree() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    streamex = {n for n, s in services.items() if s.get("image", "").startswith("streamex:")}
    assert streamex == {"engine", "risk", "gateway", "marketdata", "history", "api"}
    for name in streamex:
        test = " ".join(services[name]["healthcheck"]["test"])
        assert re.search(r"urllib\.request\.urlopen\('http://127\.0\.0\.1:\d+/(readyz|healthz)'",
                         test), name
        assert "profiles" not in services[name]
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["monitoring"]
    prometheus = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    jobs = {job["job_name"]: [t for c in job["static_configs"] for t in c["targets"]]
            for job in prometheus["scrape_configs"]}
    assert set(jobs) == streamex
    for name, targets in jobs.items():  # the port the service's healthcheck asks
        port = re.search(r":(\d+)/", " ".join(services[name]["healthcheck"]["test"]))
        assert port is not None and targets == [f"{name}:{port.group(1)}"], name
    mounts = " ".join(services["grafana"]["volumes"])
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning" in mounts
    datasources = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert datasources["datasources"][0]["uid"] == "prometheus"
    assert datasources["datasources"][0]["url"] == "http://prometheus:9090"
    providers = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "dashboards" / "streamex.yml").read_text())
    path = providers["providers"][0]["options"]["path"]
    assert f"./deploy/grafana/dashboards:{path}" in mounts
