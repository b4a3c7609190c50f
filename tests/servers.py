"""Real dashboards for the tests, on loopback only: a free port, a bounded wait, a server subprocess.

`DashboardProcess(data_dir, env)` runs `python -m marginscope.backend.cli serve` on 127.0.0.1 and a free port,
with its own data folder and an environment holding none of the caller's MARGINSCOPE_* variables
(only `env`'s), its whole output appended to <data_dir>/server.log. `start()` returns once
GET /api/session (never behind the token) answers 200, and fails with the log's tail if the process
exits first or does not answer within 90 s (then it is stopped: a test never leaves one behind).
`stop()` asks it to end (SIGTERM) and kills it after 20 s; `kill()` is a crash (SIGKILL to its
process group). Subclasses change `command()` (the browser tests serve `uvicorn --factory`).

Import it as `servers` from tests/backend and tests/frontend: tests/ is not a package, and pytest
puts this folder on sys.path for tests/conftest.py (as it does for postgres_cluster).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import httpx

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT = 90.0
STOP_TIMEOUT = 20.0
LOG_TAIL = 3000

D = TypeVar("D", bound="DashboardProcess")


def free_port() -> int:
    """A loopback port nothing listens on now, chosen by the OS."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_for(check: Callable[[], bool], what: str, timeout: float = 180.0, interval: float = 0.25) -> None:
    """Poll `check` until it is true; after `timeout` seconds fail saying what never happened."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def answers(url: str) -> bool:
    """Whether the dashboard at `url` serves requests (GET /api/session needs no token)."""
    try:
        return httpx.get(f"{url}/api/session", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


class DashboardProcess:
    """`marginscope serve` in a subprocess of its own session (see the module docstring)."""

    def __init__(self, data_dir: Path, env: Mapping[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.log = data_dir / "server.log"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("MARGINSCOPE_")}
        self.env.update(env or {})
        self.cwd = REPO
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        return [sys.executable, "-m", "marginscope.backend.cli", "serve", "--host", HOST, "--port", str(self.port),
                "--data-dir", str(self.data_dir)]

    def log_tail(self) -> str:
        text = self.log.read_text(errors="replace")[-LOG_TAIL:] if self.log.exists() else ""
        return text or "(its log is empty)"

    def start(self: D) -> D:
        with self.log.open("ab") as out:  # a restart appends: the log tells the whole story
            self.proc = subprocess.Popen(self.command(), cwd=self.cwd, env=self.env, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while not answers(self.url):
            if self.proc.poll() is not None:
                raise AssertionError(f"the server exited ({self.proc.returncode}): {self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"the server did not answer in {START_TIMEOUT:g} s: {self.log_tail()}")
            time.sleep(0.2)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(STOP_TIMEOUT)
        self.proc = None

    def get(self, path: str) -> Any:
        r = httpx.get(f"{self.url}{path}", timeout=30)
        assert r.status_code == 200, r.text
        return r.json()

    def post(self, path: str, body: Any = None, expect: int = 200) -> Any:
        r = httpx.post(f"{self.url}{path}", json=body, timeout=30)
        assert r.status_code == expect, r.text
        return r.json()
