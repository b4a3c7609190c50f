"""A real dashboard for the ingest tests: uvicorn on 127.0.0.1 in a thread, or `marginscope
serve` in a subprocess (to kill it), on a real SQLite file.

`ThreadServer(settings)`: `with ThreadServer(settings) as server: server.url`. The app is the
production one (`create_app`), its launcher supervising (stale remote runs are crashed by it)
unless `supervise=False` (then nothing starts a queued run but a claim).
`ProcessServer(data_dir, env)`: start() / kill() / start() again on the same port and data dir.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from backend.main import create_app
from backend.settings import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_up(url: str, timeout: float = 60.0, alive: Any = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if alive is not None:
            alive()
        try:
            if httpx.get(f"{url}/api/options", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} did not come up")


class ThreadServer:
    def __init__(self, settings: Settings, *, supervise: bool = True) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(create_app(settings, supervise=supervise), host="127.0.0.1", port=self.port, log_level="warning",
                                lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        wait_up(self.url)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(20)


class ProcessServer:
    """`python -m backend.cli serve` on a fixed port and data dir, to be killed and restarted."""

    def __init__(self, data_dir: Path, **env: str) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("MARGINSCOPE_")}
        self.env.update(env)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = (self.data_dir / "server.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "backend.cli", "serve", "--port", str(self.port), "--data-dir",
             str(self.data_dir)], env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

        def alive() -> None:
            assert self.proc is not None and self.proc.poll() is None, (self.data_dir / "server.log").read_text()
        wait_up(self.url, 90, alive)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(20)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None
