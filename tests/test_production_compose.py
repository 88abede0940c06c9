"""The production compose file, read as data: the monitoring services and their provisioned
files, the marketers' files mounted (no rebuild for an edit), the first ops user, any SMTP
relay, and the production variables passed through. (`docker-compose config` validates the
syntax where Docker is installed; this runs everywhere.)"""

from __future__ import annotations

import json
from pathlib import Path

from conftest import ROOT
from ruamel.yaml import YAML


def compose() -> dict:
    return YAML(typ="safe").load((ROOT / "docker-compose.yml").read_text())


def test_services_and_their_files():
    services = compose()["services"]
    assert {"prometheus", "grafana", "create-ops-user", "worker", "web"} <= set(services)
    for name in ("prometheus", "grafana"):
        for volume in services[name]["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), source
    dashboard = json.loads((ROOT / "ops/grafana/dashboards/nurture.json").read_text())
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    for metric in (
        "nurture_leads",
        "nurture_emails_total",
        "nurture_touches_held_total",
        "nurture_call_tasks",
        "nurture_events_total",
        "nurture_webhook_duration_seconds_bucket",
        "temporal_",
    ):
        assert metric in exprs, metric
    prometheus = YAML(typ="safe").load((ROOT / "ops/prometheus.yml").read_text())
    jobs = {job["job_name"] for job in prometheus["scrape_configs"]}
    assert {"nurture-worker", "nurture-web"} <= jobs


def test_app_services_mount_the_marketers_files_and_pass_production_settings():
    services = compose()["services"]
    for name in ("worker", "web"):
        service = services[name]
        mounts = {v.split(":")[0]: v.split(":")[1] for v in service["volumes"]}
        assert mounts["./cadences"] == service["environment"]["NURTURE_CADENCES_DIR"]
        assert mounts["./templates"] == service["environment"]["NURTURE_TEMPLATES_DIR"]
        env = service["environment"]
        assert env["NURTURE_METRICS_PORT"] == "9464"
        for variable in (
            "NURTURE_ENCRYPTION_KEYS",
            "NURTURE_TEMPORAL_API_KEY",
            "NURTURE_TEMPORAL_TLS_CERT",
            "NURTURE_TEMPORAL_TLS_KEY",
            "NURTURE_TEMPORAL_TLS_CA",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "NURTURE_SMTP_USERNAME",
            "NURTURE_SMTP_PASSWORD",
        ):
            assert variable in env, variable
        assert env["NURTURE_SMTP_HOST"].startswith("${NURTURE_SMTP_HOST:-")
    ops_user = services["create-ops-user"]
    assert "users add" in " ".join(ops_user["command"])
    assert ops_user["depends_on"]["web"]["condition"] == "service_healthy"
    assert "TEMPORAL_CODEC_ENDPOINT" in services["temporal-ui"]["environment"]
    assert Path(ROOT / "ops/alerts.yml").exists()


def test_empty_production_variables_mean_unset(tmp_path):
    from nurture.settings import load_settings

    settings = load_settings(
        metrics_port="", encryption_keys="", codec_token="", temporal_api_key="",
        temporal_tls_cert="", temporal_tls_key="", temporal_tls_ca="",
        smtp_username="", smtp_password="",
    )  # fmt: skip
    assert settings.metrics_port is None and settings.encryption_keys is None
    assert settings.smtp_username is None and settings.smtp_password is None
    assert settings.temporal_api_key is None and settings.temporal_tls_cert is None


def test_cluster_connection_settings(tmp_path):
    import pytest

    from nurture.adapters.temporal import tls_config
    from nurture.settings import SettingsError, load_settings

    assert tls_config(load_settings()) is False
    # Temporal Cloud with an API key: TLS on, the system's roots.
    assert tls_config(load_settings(temporal_api_key="k")) is True
    cert = tmp_path / "client.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n")
    mtls = tls_config(
        load_settings(
            temporal_tls_cert=str(cert),
            temporal_tls_key="-----BEGIN PRIVATE KEY-----\ny\n-----END PRIVATE KEY-----\n",
            temporal_tls_ca=str(cert),
        )
    )
    assert mtls.client_cert == cert.read_bytes()
    assert mtls.client_private_key.startswith(b"-----BEGIN PRIVATE KEY")
    assert mtls.server_root_ca_cert == cert.read_bytes()
    with pytest.raises(SettingsError, match="go together"):
        tls_config(load_settings(temporal_tls_cert=str(cert)))
    with pytest.raises(SettingsError, match="NURTURE_TEMPORAL_TLS_CA"):
        tls_config(load_settings(temporal_tls_ca=str(tmp_path / "missing.pem")))
    with pytest.raises(SettingsError, match="NURTURE_ENCRYPTION_KEYS"):
        load_settings(encryption_keys="k1:short")
