"""Settings: the contract's defaults, environment overrides, and clear refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from nurture.settings import SettingsError, load_settings

ALL = [
    "TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "TASK_QUEUE", "DATABASE_URL", "SMTP_HOST",
    "SMTP_PORT", "SMTP_USERNAME", "SMTP_PASSWORD", "SMTP_STARTTLS", "WEBHOOK_SECRET",
    "PUBLIC_URL", "CADENCES_DIR", "TEMPLATES_DIR", "HTTP_PORT", "CRM_WEBHOOK_URL",
    "SENDING_PAUSED", "TEMPORAL_UI_URL", "APP_SECRET", "HUBSPOT_CLIENT_SECRET",
    "SALESFORCE_ORG_ID", "SALESFORCE_TOKEN",
]  # fmt: skip


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ALL:
        monkeypatch.delenv(f"NURTURE_{name}", raising=False)
    monkeypatch.chdir(tmp_path)  # no .env of the developer's


def test_defaults_are_the_contracts():
    settings = load_settings()
    assert settings.temporal_address == "localhost:7233"
    assert settings.temporal_namespace == "default"
    assert settings.task_queue == "nurture"
    assert settings.database_url == "sqlite+aiosqlite:///.data/nurture.db"
    assert (settings.smtp_host, settings.smtp_port) == ("127.0.0.1", 1025)
    assert settings.smtp_username is None and settings.smtp_password is None
    assert settings.smtp_starttls is False
    assert settings.webhook_secret is None
    assert settings.public_base == "http://localhost:8000"
    assert settings.cadences_dir == Path("cadences") and settings.templates_dir == Path("templates")
    assert settings.http_port == 8000
    assert settings.crm_webhook_url is None
    assert settings.sending_paused is False


def test_environment_and_dotenv_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    (tmp_path / ".env").write_text("NURTURE_TASK_QUEUE=from-dotenv\nNURTURE_SMTP_PORT=2525\n")
    monkeypatch.setenv("NURTURE_SMTP_PORT", "2626")  # the environment wins over .env
    monkeypatch.setenv("NURTURE_SENDING_PAUSED", "true")
    monkeypatch.setenv("NURTURE_DATABASE_URL", "postgresql+asyncpg://app@db.example/nurture")
    monkeypatch.setenv("NURTURE_WEBHOOK_SECRET", "s3cret")
    settings = load_settings()
    assert settings.task_queue == "from-dotenv"
    assert settings.smtp_port == 2626
    assert settings.sending_paused is True
    assert settings.database_url.startswith("postgresql+asyncpg://")
    assert settings.require_webhook_secret() == "s3cret"
    assert "s3cret" not in repr(settings)  # never printed


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("SMTP_PORT", "not-a-port", "NURTURE_SMTP_PORT"),
        ("SMTP_PORT", "70000", "NURTURE_SMTP_PORT"),
        ("DATABASE_URL", "postgresql://sync@host/db", "async driver"),
        ("TEMPORAL_ADDRESS", "no-port-here", "host:port"),
        ("PUBLIC_URL", "not a url", "NURTURE_PUBLIC_URL"),
        ("SENDING_PAUSED", "maybe", "NURTURE_SENDING_PAUSED"),
    ],
)
def test_a_bad_value_is_refused_clearly(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
):
    monkeypatch.setenv(f"NURTURE_{name}", value)
    with pytest.raises(SettingsError) as refused:
        load_settings()
    assert message in str(refused.value)
    assert "Traceback" not in str(refused.value)


def test_a_missing_webhook_secret_says_what_to_do():
    with pytest.raises(SettingsError, match="NURTURE_WEBHOOK_SECRET is not set"):
        load_settings().require_webhook_secret()


def test_crm_adapter_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert settings.hubspot_client_secret is None and settings.salesforce_org_id is None
    # Compose passes an unset variable through as empty: empty means unset (adapter off).
    monkeypatch.setenv("NURTURE_SALESFORCE_ORG_ID", "")
    monkeypatch.setenv("NURTURE_HUBSPOT_CLIENT_SECRET", " ")
    settings = load_settings()
    assert settings.salesforce_org_id is None and settings.hubspot_client_secret is None
    monkeypatch.setenv("NURTURE_SALESFORCE_ORG_ID", "00D5e000000KQ2eEAG")
    assert load_settings().salesforce_org_id == "00D5e000000KQ2eEAG"
    monkeypatch.setenv("NURTURE_SALESFORCE_ORG_ID", "not-an-org")
    with pytest.raises(SettingsError, match="NURTURE_SALESFORCE_ORG_ID"):
        load_settings()
