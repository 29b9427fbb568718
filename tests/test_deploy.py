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
