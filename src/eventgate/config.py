"""Settings: frozen, read once at start-up, passed down; never read from the environment later."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from eventgate.errors import ConfigError

__all__ = [
    "DEFAULT_APP",
    "DEFAULT_DATA_DIR",
    "Settings",
    "app_reference",
    "broker_url",
    "database_url",
    "read_toml",
    "redact",
]

DEFAULT_DATA_DIR = Path(".eventgate")
DEFAULT_APP = "eventgate.examples.inventory:app"
"""The app `eventgate` serves when neither `--app` nor the config file names one."""


@dataclass(frozen=True)
class Settings:
    """Where the data lives and how the embedded components behave."""

    data_dir: Path = DEFAULT_DATA_DIR
    poll_interval: float = 0.25
    projection_batch_size: int = 500
    database_url: str | None = None
    """PostgreSQL for the event store, read models and idempotency keys; None: SQLite files."""
    broker_url: str | None = None
    """NATS JetStream that carries the events to their consumers; None: they read the store."""

    def __post_init__(self) -> None:
        if self.database_url is not None and not self.database_url.startswith(
            ("postgresql://", "postgres://")
        ):
            raise ConfigError("the database URL must start with postgresql://")
        if self.broker_url is not None and not self.broker_url.startswith(("nats://", "tls://")):
            raise ConfigError("the broker URL must start with nats:// or tls://")
        if self.poll_interval <= 0:
            raise ConfigError("poll_interval must be positive")
        if self.projection_batch_size < 1:
            raise ConfigError("projection_batch_size must be at least 1")

    @property
    def event_store_path(self) -> Path:
        return self.data_dir / "events.sqlite"

    @property
    def read_store_path(self) -> Path:
        return self.data_dir / "readmodels.sqlite"

    @property
    def functions_path(self) -> Path:
        return self.data_dir / "functions.sqlite"

    @property
    def app_record(self) -> Path:
        """Where `eventgate up` notes the app it serves, for the commands run on this data."""
        return self.data_dir / "app"

    @property
    def database_shown(self) -> str:
        """Where the data lives, for people: the database URL without its password."""
        if self.database_url is None:
            return str(self.data_dir.resolve())
        return redact(self.database_url)

    def ensure_data_dir(self) -> None:
        """Create the data directory, or fail with one clear line."""
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"cannot create data directory {self.data_dir}: {e}") from e
        if not self.data_dir.is_dir():
            raise ConfigError(f"data directory {self.data_dir} is not a directory")


def read_toml(path: Path) -> dict[str, Any]:
    """The config file as a dict, or a ConfigError saying in one line what is wrong."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"cannot read config {path}: {e.strerror}") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config {path} is not valid TOML: {e}") from e


def redact(url: str) -> str:
    """`url` with any password (and a NATS token, given as the user) replaced by `***`."""
    parts = urlsplit(url)
    if parts.password is not None:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    elif parts.username is not None and parts.scheme in ("nats", "tls"):
        netloc = "***@" + parts.netloc.split("@", 1)[1]  # nats://TOKEN@host: the user is the secret
    else:
        return url
    return urlunsplit(parts._replace(netloc=netloc))


def database_url(option: str | None, config: Path | None) -> str | None:
    """`--database-url` (or EVENTGATE_DATABASE_URL), else the config's `database_url`."""
    if option:
        return option
    if config is not None:
        configured = read_toml(config).get("database_url")
        if configured is not None and not isinstance(configured, str):
            raise ConfigError('database_url must be a string like "postgresql://host/db"')
        return configured
    return None


def broker_url(option: str | None, config: Path | None) -> str | None:
    """`--broker` (or EVENTGATE_BROKER_URL), else the config's `broker_url`."""
    if option:
        return option
    if config is not None:
        configured = read_toml(config).get("broker_url")
        if configured is not None and not isinstance(configured, str):
            raise ConfigError('broker_url must be a string like "nats://host:4222"')
        return configured
    return None


def app_reference(option: str | None, config: Path | None, data_dir: Path | None = None) -> str:
    """The app to serve: `--app` (or EVENTGATE_APP), else the config's `app`, else the app
    `eventgate up` last served on `data_dir`, else the default."""
    if option:
        return option
    if config is not None:
        configured = read_toml(config).get("app")
        if configured is not None:
            if not isinstance(configured, str) or not configured:
                raise ConfigError('app must be a string like "my_module:app"')
            return configured
    recorded = Settings(data_dir=data_dir).app_record if data_dir is not None else None
    if recorded is not None and recorded.is_file():
        return recorded.read_text(encoding="utf-8").strip() or DEFAULT_APP
    return DEFAULT_APP
