"""A throwaway PostgreSQL cluster for the tests: initdb in a temporary folder, serve on loopback, delete.

The cluster is Debian's `postgresql` package (`make test` installs it when it can); its binaries
are found under /usr/lib/postgresql/<version>/bin (the newest version) or on PATH. initdb refuses
to run as root, so as root every server command runs as the `postgres` user (`runuser`), in a
folder that user owns; otherwise as the current user. The server listens on 127.0.0.1 and a
Unix socket in that folder only, with `fsync=off` (a test database needs no durability: it
starts in about a second and writes at memory speed).

Each test gets its own database (`create_database`), made with `CREATE DATABASE ... TEMPLATE`,
so a test may break its database without touching the next one; `drop_database` forces out any
connection a test left behind (a worker process it spawned).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

DEBIAN_ROOT = Path("/usr/lib/postgresql")
SUPERUSER = "postgres"
START_TIMEOUT_S = 60


class PostgresMissing(RuntimeError):
    """No PostgreSQL server binaries on this machine (the message says how to install them)."""


def find_bindir() -> Path:
    """The folder holding initdb and pg_ctl: the newest Debian version, else the ones on PATH."""
    versions = [p for p in DEBIAN_ROOT.glob("*/bin") if (p / "initdb").exists() and p.parent.name.isdigit()]
    if versions:
        return max(versions, key=lambda p: int(p.parent.name))
    initdb = shutil.which("initdb")
    if initdb is not None and shutil.which("pg_ctl") is not None:
        return Path(initdb).parent
    raise PostgresMissing("PostgreSQL is not installed (no initdb under /usr/lib/postgresql/*/bin or on "
                          "PATH): run `make test` as root, or `sudo apt-get install -y postgresql`")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run(cmd: list[str]) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=START_TIMEOUT_S, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stdout}{done.stderr}")


class ThrowawayCluster:
    """`start()` makes and serves a cluster; `url` is its superuser's SQLAlchemy URL; `stop()` deletes it."""

    def __init__(self) -> None:
        self.bindir = find_bindir()
        self.as_root = os.geteuid() == 0
        self.folder = Path(tempfile.mkdtemp(prefix="marginscope-pg-"))
        self.data = self.folder / "data"
        self.port = _free_port()
        self.url = f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/postgres"

    def _cmd(self, tool: str, *args: str) -> list[str]:
        cmd = [str(self.bindir / tool), *args]
        return ["runuser", "-u", SUPERUSER, "--", *cmd] if self.as_root else cmd

    def start(self) -> ThrowawayCluster:
        if self.as_root:
            shutil.chown(self.folder, user=SUPERUSER)
        _run(self._cmd("initdb", "-D", str(self.data), "-U", SUPERUSER, "-A", "trust", "-E", "UTF8",
                       "--no-locale", "--no-sync"))
        options = (f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300")
        _run(self._cmd("pg_ctl", "-D", str(self.data), "-l", str(self.folder / "server.log"), "-w",
                       "-t", str(START_TIMEOUT_S), "-o", options, "start"))
        return self

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            subprocess.run(self._cmd("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop"),
                           capture_output=True, timeout=START_TIMEOUT_S, check=False)
        shutil.rmtree(self.folder, ignore_errors=True)


_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")


def _admin(server_url: str):  # noqa: ANN202 - an Engine; sqlalchemy is imported lazily
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    return create_engine(server_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)


def database_url(server_url: str, name: str) -> str:
    """`server_url` pointing at database `name`."""
    from sqlalchemy.engine import make_url

    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


def create_database(server_url: str, *, template: str = "template1", prefix: str = "t") -> str:
    """A new database copied from `template` (no one may be connected to it); returns its URL."""
    from sqlalchemy import text

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    assert _NAME.match(name) and _NAME.match(template), (name, template)
    engine = _admin(server_url)
    try:
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    finally:
        engine.dispose()
    return database_url(server_url, name)


def drop_database(server_url: str, url: str) -> None:
    """Drop the database of `url`, disconnecting whoever still uses it (PostgreSQL 13+)."""
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    name = make_url(url).database
    assert name and _NAME.match(name), name
    engine = _admin(server_url)
    try:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        engine.dispose()
