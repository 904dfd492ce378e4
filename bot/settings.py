"""One Settings object, read once at start and passed down (no module-level env reads)."""

from __future__ import annotations

from datetime import time
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_TELEGRAM_API_URL = "https://api.telegram.org"


class MqttTarget:
    """The broker address split out of ``MQTT_URL`` (mqtt:// or mqtts://, user:password@)."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
            raise ValueError(f"scheme must be mqtt:// or mqtts://, got {parts.scheme or 'none'!r}")
        if not parts.hostname:
            raise ValueError("no host in the URL")
        self.tls = parts.scheme in ("mqtts", "ssl")
        self.host = parts.hostname
        self.port = parts.port or (8883 if self.tls else 1883)
        self.username = parts.username
        self.password = parts.password


class Settings(BaseSettings):
    """Environment variables (upper case) or an optional ``loyalty.env`` file."""

    model_config = SettingsConfigDict(
        env_file="loyalty.env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    bot_token: SecretStr | None = Field(default=None, description="Telegram bot token from @BotFather")
    telegram_api_url: str = Field(default=DEFAULT_TELEGRAM_API_URL, description="Bot API server")
    database_url: str = Field(default="sqlite://data/loyalty.sqlite3", description="sqlite:// or postgres://")
    mqtt_url: str = Field(default="mqtt://127.0.0.1:1883", description="broker, mqtt:// or mqtts://")
    mqtt_topic_root: str = Field(default="loyalty/v1")
    mqtt_client_id: str = Field(default="loyalty-desk", description="fixed id: the persistent session")
    mqtt_shared_group: str | None = Field(default=None, description="MQTT 5 shared subscription group")
    org_file: Path | None = Field(default=None, description="org YAML imported on start")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    default_language: Literal["ru", "en"] = "ru"
    ingest_batch_size: int = Field(default=500, ge=1, le=10000)
    ingest_batch_wait_ms: int = Field(default=20, ge=0, le=5000)
    repeat_press_seconds: int = Field(default=10, ge=0)
    presence_grace_seconds: int = Field(default=60, ge=0)
    max_future_seconds: int = Field(default=300, ge=0)
    anomaly_window_minutes: int = Field(default=15, ge=1)
    anomaly_min_ratings: int = Field(default=4, ge=1)
    anomaly_negative_share: float = Field(default=0.5, gt=0, le=1)
    group_messages_per_minute: int = Field(default=20, ge=1)
    global_messages_per_second: int = Field(default=30, ge=1)
    coalesce_after: int = Field(default=3, ge=1, description="pending messages to one chat that get merged")
    scheduler_interval_seconds: float = Field(default=15.0, gt=0)
    audio_dir: Path = Field(default=Path("data/audio"), description="segment store and snippets")
    audio_retention_hours: float = Field(default=72, gt=0, description="desk audio no negative refers to")
    audio_keep_days: int = Field(default=180, ge=1, description="audio a negative refers to")
    snippet_before_seconds: int = Field(default=180, ge=0)
    snippet_after_seconds: int = Field(default=20, ge=0)
    snippet_wait_seconds: int = Field(default=300, ge=0, description="how long to wait for late audio")
    whisper_model: str = Field(default="small", description="model name, local directory or packaged:base")
    whisper_cache_dir: Path = Field(default=Path("data/models"))
    whisper_threads: int = Field(default=2, ge=1)
    whisper_vad: bool = True
    audio_disk_cap_mb: int = Field(default=20480, ge=1, description="segment store size; oldest evicted first")
    retention_interval_seconds: float = Field(default=600, gt=0, description="how often retention runs")
    http_host: str = Field(default="127.0.0.1", description="the HTTP API (audio upload) listens here")
    http_port: int = Field(default=8080, ge=0, le=65535, description="0 picks a free port")
    digest_time: time | None = Field(default=time(9, 0), description="local time of the managers' morning digest; off: none")
    upload_max_mb: float = Field(default=50, gt=0, description="largest accepted upload")
    public_url: str | None = Field(default=None, description="base URL of the survey pages in QR codes; default http://HTTP_HOST:HTTP_PORT")
    survey_secret: SecretStr | None = Field(default=None, description="signs QR survey codes; default derived from BOT_TOKEN")
    survey_ip_per_minute: int = Field(default=20, ge=1, description="QR survey submissions per minute from one IP")
    survey_repeat_minutes: int = Field(default=60, ge=0, description="a phone rating the same target again within this is not counted")
    kiosk_display_seconds: int = Field(default=300, ge=1, description="how long a review QR sent to a kiosk stays fresh")
    complaint_contact_days: int = Field(default=365, ge=1, description="complaint contact details are erased after this")
    battery_alert_percent: int = Field(default=15, ge=1, le=100, description="battery level that alerts the admin chat")
    device_offline_grace_seconds: int = Field(default=120, ge=0, description="a device back online within this is not reported")

    @field_validator("digest_time", mode="before")
    @classmethod
    def _digest_off(cls, value: object) -> object:
        return None if isinstance(value, str) and value.strip().lower() in ("off", "none", "") else value

    @field_validator("telegram_api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("database_url")
    @classmethod
    def _db_scheme(cls, value: str) -> str:
        if not value.startswith(("sqlite://", "postgres://", "postgresql://", "asyncpg://")):
            raise ValueError("must start with sqlite:// or postgres://")
        return value

    @field_validator("mqtt_url")
    @classmethod
    def _mqtt_url(cls, value: str) -> str:
        MqttTarget(value)
        return value

    @field_validator("mqtt_topic_root")
    @classmethod
    def _root(cls, value: str) -> str:
        value = value.strip("/")
        if not value or "#" in value or "+" in value:
            raise ValueError("must be a plain topic prefix such as loyalty/v1")
        return value

    @property
    def mqtt(self) -> MqttTarget:
        return MqttTarget(self.mqtt_url)

    def require_bot_token(self) -> str:
        if self.bot_token is None or ":" not in self.bot_token.get_secret_value():
            raise SettingsError("BOT_TOKEN: not set or not a bot token (123456:ABC…); get one from @BotFather")
        return self.bot_token.get_secret_value()


class SettingsError(Exception):
    """A setting is missing or wrong; the message names it and says what to do."""


def load_settings(**overrides: object) -> Settings:
    """Read settings, turning pydantic's report into one line per bad variable."""
    from pydantic import ValidationError

    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            name = str(err["loc"][0]).upper() if err["loc"] else "settings"
            lines.append(f"{name}: {err['msg']}")
        raise SettingsError("; ".join(lines)) from None
