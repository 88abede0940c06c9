"""One Settings object, built at the edges (CLI, worker, web app) and passed down.

Nothing here reads the environment at import time; call :func:`load_settings`.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AnyHttpUrl, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DATA_DIR = Path(".data")


class Settings(BaseSettings):
    """The contract's NURTURE_* variables (CONTRACT.md, "Configuration")."""

    model_config = SettingsConfigDict(
        env_prefix="NURTURE_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    temporal_address: str = "localhost:7233"
    temporal_namespace: str = "default"
    task_queue: str = "nurture"
    database_url: str = "sqlite+aiosqlite:///.data/nurture.db"
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=1025, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    # Reused SMTP connections per worker (sends side by side, one message on each at a time).
    smtp_connections: int = Field(default=4, ge=1, le=50)
    webhook_secret: SecretStr | None = None
    # Keys the login sessions and email links; never shared. Unset: a random one is made
    # once and kept in the app database (nurture.adapters.secrets).
    app_secret: SecretStr | None = None
    public_url: AnyHttpUrl = AnyHttpUrl("http://localhost:8000")
    cadences_dir: Path = Path("cadences")
    templates_dir: Path = Path("templates")
    http_port: int = Field(default=8000, ge=1, le=65535)
    crm_webhook_url: AnyHttpUrl | None = None
    # Where ops open a lead's workflow from its page (the dev server's UI by default).
    temporal_ui_url: AnyHttpUrl = AnyHttpUrl("http://localhost:8233")
    sending_paused: bool = False
    # Set by `nurture dev` (`make run`) for its own web app only: the sign-in page lists the
    # demo logins that still have the demo password. Never set it anywhere else.
    demo_logins: bool = False
    # Activities one worker runs at once; its database pool is sized from this (worker.py).
    max_concurrent_activities: int = Field(default=40, ge=1, le=1000)
    # Lead workflows one worker keeps in memory between wake-ups (the SDK's sticky cache);
    # the least recently used is evicted, and replays its history when it wakes again. The
    # SDK's default, 1,000: memory per cached lead is measured in docs/benchmarks.md.
    max_cached_workflows: int = Field(default=1000, ge=0, le=1_000_000)
    # Run the lead workflow in Temporal's sandbox (worker.py, "runner"). Off by default: the
    # workflow's logic lives in nurture.domain, which the sandbox passes through unguarded
    # anyway, and the recorded-history replay tests (in the sandbox too) guard determinism.
    workflow_sandbox: bool = False

    # --- Production (CONTRACT.md, "Production") ---
    # Prometheus endpoint (GET /metrics) of this process; unset: none.
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    # `id:base64key,...`: every Temporal payload AES-GCM encrypted, the first key encrypts.
    encryption_keys: SecretStr | None = None
    # A bearer token that may call the codec endpoints besides a signed-in ops user (for
    # the `temporal` CLI's --codec-auth, or a UI whose users have no login here).
    codec_token: SecretStr | None = None
    # mTLS to a Temporal cluster: PEM file paths (or the PEM text itself).
    temporal_tls_cert: str | None = None
    temporal_tls_key: SecretStr | None = None
    temporal_tls_ca: str | None = None
    # Temporal Cloud: an API key (TLS is then on, with the system's trust store).
    temporal_api_key: SecretStr | None = None
    # CRM adapters (POST /webhooks/hubspot, POST /webhooks/salesforce); unset: answered 503.
    # HubSpot signs with the app's client secret (its v3 request signature).
    hubspot_client_secret: SecretStr | None = None
    # Salesforce Outbound Messages must come from this organization (15 or 18 characters).
    salesforce_org_id: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9]{15}([A-Za-z0-9]{3})?$"
    )
    # Outbound Messages carry no signature: when set, the endpoint URL configured in
    # Salesforce must carry it as `?token=...` (besides TLS client certificates or an IP
    # allow list at the proxy).
    salesforce_token: SecretStr | None = None

    # --- Mail that comes back (README, "Mail that comes back") ---
    # The IMAP folder `nurture mailbox` reads: imaps://user:password@host:993/INBOX, or
    # imap://... upgraded with STARTTLS. Unset: no mailbox is read.
    mailbox_url: SecretStr | None = None
    # A PEM bundle of the CA(s) that signed the mail server's certificate (a private CA);
    # unset: the system's trust store.
    mailbox_ca: str | None = None
    # Seconds between two searches of the folder: the polling period when the server has no
    # IDLE, and how long one IDLE lasts before it is renewed (RFC 2177: under 29 minutes).
    mailbox_poll_seconds: float = Field(default=60.0, ge=1.0, le=1740.0)

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError(
                "use an async driver URL: sqlite+aiosqlite:///path.db or "
                "postgresql+asyncpg://user@host/db"
            )
        return value

    @field_validator("temporal_address")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError("expected host:port, for example localhost:7233")
        return value

    @field_validator("encryption_keys")
    @classmethod
    def _keys(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        from nurture.adapters.codec import EncryptionKeyError, parse_keys

        try:
            parse_keys(value.get_secret_value())
        except EncryptionKeyError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("mailbox_url")
    @classmethod
    def _mailbox_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        from nurture.adapters.imap import MailboxUrlError, parse_mailbox_url

        try:
            parse_mailbox_url(value.get_secret_value())
        except MailboxUrlError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator(
        "temporal_tls_key",
        "temporal_api_key",
        "codec_token",
        "smtp_password",
        "hubspot_client_secret",
        "salesforce_token",
        mode="before",
    )
    @classmethod
    def _blank_secret(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    # Compose passes an unset variable through as empty: empty means unset.
    @field_validator(
        "temporal_tls_cert",
        "temporal_tls_ca",
        "mailbox_ca",
        "metrics_port",
        "smtp_username",
        "salesforce_org_id",
        mode="before",
    )
    @classmethod
    def _blank(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @property
    def encryption_spec(self) -> str | None:
        """The raw key list, for the data converter (never print it)."""
        return self.encryption_keys.get_secret_value() if self.encryption_keys else None

    @property
    def mailbox(self):  # type: ignore[no-untyped-def]
        """The parsed NURTURE_MAILBOX_URL (a ``MailboxUrl``), or None when it is unset."""
        if self.mailbox_url is None:
            return None
        from nurture.adapters.imap import parse_mailbox_url

        return parse_mailbox_url(self.mailbox_url.get_secret_value())

    @property
    def public_base(self) -> str:
        return str(self.public_url).rstrip("/")

    def require_webhook_secret(self) -> str:
        """The webhook secret, or a clear error: it is required outside `make run`."""
        if self.webhook_secret is None or not self.webhook_secret.get_secret_value():
            raise SettingsError(
                "NURTURE_WEBHOOK_SECRET is not set: set it to a long random string "
                "(`make run` generates one into .data/webhook_secret)"
            )
        return self.webhook_secret.get_secret_value()


class SettingsError(RuntimeError):
    """Configuration that cannot be used, with a message naming the variable."""


def load_settings(**overrides: object) -> Settings:
    """Build the settings from the environment (and `.env`), refusing bad values clearly.

    Raises:
        SettingsError: naming each bad NURTURE_* variable and why.
    """
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            name = "NURTURE_" + "_".join(str(p) for p in error["loc"]).upper()
            lines.append(f"{name}: {error['msg']}")
        raise SettingsError("bad configuration:\n  " + "\n  ".join(lines)) from None
