"""Backend settings, read from the environment (prefix MARGINSCOPE_) or passed explicitly.

One pydantic-settings class (full-stack-fastapi-template `core/config.py`). `get_settings()` caches
the environment's settings for the app and the CLI; tests build `Settings(...)` directly instead.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Where the data lives, where the server listens, and how workers are supervised."""

    model_config = SettingsConfigDict(env_prefix="MARGINSCOPE_", extra="ignore")

    data_dir: Path = Field(Path("data"), description="Datasets, checkpoints and the SQLite file.")
    db_url: str = Field("", description="SQLAlchemy URL; empty = sqlite:///<data_dir>/marginscope.db.")
    host: str = Field("127.0.0.1", description="Interface the server binds to.")
    port: int = Field(8000, ge=1, le=65535)
    token: str | None = Field(None, description="When set, mutating endpoints and websockets need it.")
    max_concurrent_runs: int = Field(1, ge=1, le=1024)
    heartbeat_interval: float = Field(2.0, gt=0.0, description="Seconds between worker heartbeats.")
    stale_after: float = Field(15.0, gt=0.0, description="A heartbeat older than this is stale (s).")
    max_body_bytes: int = Field(1024 * 1024, ge=1024, description="Larger request bodies are refused (413).")

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @field_validator("token")
    @classmethod
    def _empty_token_is_none(cls, value: str | None) -> str | None:
        return value or None

    @model_validator(mode="after")
    def _default_db_url(self) -> Settings:
        if not self.db_url:
            self.db_url = f"sqlite:///{self.data_dir / 'marginscope.db'}"
        return self

    @property
    def runs_dir(self) -> Path:
        """Per-run folders (checkpoints, worker logs): <data_dir>/runs/<id>."""
        return self.data_dir / "runs"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings from the environment (cached; call `get_settings.cache_clear()` to re-read)."""
    return Settings()  # type: ignore[call-arg]  # values come from the environment
