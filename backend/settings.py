"""Backend settings, read from the environment (prefix MARGINSCOPE_) or passed explicitly.

One pydantic-settings class (full-stack-fastapi-template `core/config.py`). `get_settings()` caches
the environment's settings for the app and the CLI; tests build `Settings(...)` directly instead.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
import socket
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

TOKEN_MIN_LENGTH = 16  # a guessable token is worse than none: it looks like protection


class Settings(BaseSettings):
    """Where the data lives, where the server listens, and how workers are supervised."""

    model_config = SettingsConfigDict(env_prefix="MARGINSCOPE_", extra="ignore",
                                      hide_input_in_errors=True)  # never echo a token

    data_dir: Path = Field(Path("data"), description="Datasets, checkpoints and the SQLite file.")
    db_url: str = Field("", description="SQLAlchemy URL; empty = sqlite:///<data_dir>/marginscope.db.")
    host: str = Field("127.0.0.1", description="Interface the server binds to.")
    port: int = Field(8000, ge=1, le=65535)
    token: str | None = Field(None, description="When set, mutating endpoints and websockets need it "
                              f"(at least {TOKEN_MIN_LENGTH} characters).")
    protect_reads: bool = Field(False, description="With a token set, read endpoints (/api GETs) need "
                                "it too: for a dashboard reachable from a network.")
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Host names the server answers besides loopback and `host` "
        "(comma-separated; `*` = any). Other Host headers are refused (DNS rebinding).")
    allowed_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Origins (scheme://host:port) besides the server's own that "
        "may send mutating requests and open websockets (comma-separated).")
    max_concurrent_runs: int = Field(1, ge=1, le=1024)
    heartbeat_interval: float = Field(2.0, gt=0.0, description="Seconds between worker heartbeats.")
    stale_after: float = Field(15.0, gt=0.0, description="A heartbeat older than this is stale (s): "
                               "the run is crashed, and a worker of this host killed (SIGKILL).")
    max_body_bytes: int = Field(1024 * 1024, ge=1024, description="Larger request bodies are refused (413).")
    executor: Literal["local", "dask"] = Field(
        "local", description="Where queued runs train: `local` worker processes on this machine, or "
        "tasks on the Dask cluster at `dask_scheduler` (backend/executors/).")
    dask_scheduler: str = Field("", description="The Dask scheduler's address (tcp://host:8786) for "
                                "the dask executor.")
    dask_gpus_per_run: float = Field(0.0, ge=0.0, description="GPUs each run asks of the Dask cluster "
                                     "(a Dask resource `GPU`; workers declare theirs with "
                                     "`dask worker --resources GPU=<n>`); 0 = none.")
    server_url: str = Field("", description="The URL at which a trainer reaches this dashboard (a Dask "
                            "worker's task; a local worker is handed the loopback URL); empty = "
                            "http://<host or this machine's name>:<port>.")

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @field_validator("token")
    @classmethod
    def _token_long_enough(cls, value: str | None) -> str | None:
        if not value:
            return None
        if len(value) < TOKEN_MIN_LENGTH:
            raise ValueError(f"MARGINSCOPE_TOKEN must be at least {TOKEN_MIN_LENGTH} characters (it has "
                             f"{len(value)}); make one with: python -c 'import secrets; "
                             "print(secrets.token_urlsafe(24))'")
        return value

    @field_validator("allowed_hosts", "allowed_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _default_db_url(self) -> Settings:
        if not self.db_url:
            self.db_url = f"sqlite:///{self.data_dir / 'marginscope.db'}"
        return self

    @property
    def public_url(self) -> str:
        """Where runs training elsewhere (Dask tasks) report to: this dashboard's URL."""
        if self.server_url:
            return self.server_url.rstrip("/")
        host = socket.gethostname() if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"

    @property
    def local_url(self) -> str:
        """Where a worker process on this machine reaches this dashboard: its loopback address
        when it listens on every interface (no name to resolve), else its own host."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        host = f"[{host}]" if ":" in host and not host.startswith("[") else host
        return f"http://{host}:{self.port}"

    @property
    def launcher_name(self) -> str:
        """This dashboard's launcher as runs record it (`runs.launcher`): host and port, so two
        dashboards on one database tell their runs apart and a restart on the same port finds
        its own again."""
        return f"{socket.gethostname()}:{self.port}"

    @property
    def runs_dir(self) -> Path:
        """Per-run folders (checkpoints, worker logs): <data_dir>/runs/<id>."""
        return self.data_dir / "runs"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings from the environment (cached; call `get_settings.cache_clear()` to re-read)."""
    return Settings()  # type: ignore[call-arg]  # values come from the environment
