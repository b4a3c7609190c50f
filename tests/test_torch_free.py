"""The dashboard server and the server's commands never import torch (600-800 MB, seconds).

Each check runs in a fresh interpreter, so nothing this test process imported counts:
- the app answers the launch form's options, refuses bad launches, queues a good one and draws a
  sample's thumbnail, and afterwards no torch module is loaded (sys.modules is read; no import
  is blocked, since a blocked import could be swallowed by a fallback and look like success);
- `marginscope --help`, `--version`, `serve --help`, `db upgrade` and `runs list` run with an
  import hook that refuses torch and records every attempt: they succeed, the help still lists the
  engine's commands (the backend falls back to its own commands when the engine's CLI fails to
  import), and nothing tried to import torch;
- every module of the backend, and the engine's torch-free modules, import with torch refused.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TORCH = ("torch", "torchvision")


def _python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


_SERVER = """
import io, json, sys
from pathlib import Path

from fastapi.testclient import TestClient
from PIL import Image

from marginscope.backend.main import create_app
from marginscope.backend.settings import Settings
from marginscope.backend.store.db import upgrade

settings = Settings(data_dir=Path(sys.argv[1]), db_url="", allowed_hosts=["testserver"])
upgrade(settings.db_url)
answers = {}
good = {"dataset": "digits", "selector": "mms", "candidates": 64, "batch_size": 16, "steps": 20}
bad = {"unknown selector": {**good, "selector": "nope"},
       "selector option out of range": {**good, "selector_options": {"mix": 1.5}},
       "unknown selector option": {**good, "selector": "infobatch", "selector_options": {"mixx": 0.1}},
       "B below b": {**good, "candidates": 8},
       "oversized Wide ResNet": {**good, "model": "wrn-70-2"},
       "unknown dataset": {**good, "dataset": "svhn"}}
with TestClient(create_app(settings, supervise=False)) as client:
    options = client.get("/api/options")
    answers["options"] = [options.status_code, [s["name"] for s in options.json()["selectors"]],
                          {d["name"]: d["available"] for d in options.json()["datasets"]}]
    answers["bad"] = {why: client.post("/api/runs", json={"config": c}).status_code for why, c in bad.items()}
    created = client.post("/api/runs", json={"config": good})
    answers["good"] = created.status_code
    image = client.get(f"/api/runs/{created.json()['id']}/samples/5/image.png")
    answers["thumbnail"] = [image.status_code, list(Image.open(io.BytesIO(image.content)).size)]
answers["torch_modules"] = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision"))
print(json.dumps(answers))
"""


def test_the_dashboard_server_never_imports_torch(tmp_path: Path) -> None:
    from marginscope.engine.vocabulary import list_selectors

    proc = _python(_SERVER, str(tmp_path / "data"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    answers = json.loads(proc.stdout.strip().splitlines()[-1])
    status, selectors, datasets = answers["options"]
    assert status == 200 and selectors == list_selectors() and datasets["digits"] and datasets["mnist"]
    assert answers["bad"] == dict.fromkeys(answers["bad"], 422)
    assert answers["good"] == 201
    assert answers["thumbnail"] == [200, [32, 32]]  # digits' 8x8, scaled up
    assert answers["torch_modules"] == []


_BLOCKED_CLI = """
import atexit, json, sys

attempts = []

class RefuseTorch:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchvision"):
            attempts.append(name)
            raise ImportError(f"{name} is refused: this command must not import torch")
        return None

sys.meta_path.insert(0, RefuseTorch())
atexit.register(lambda: print("TORCH IMPORTS " + json.dumps(attempts)))
sys.argv = ["marginscope", *sys.argv[1:]]
from marginscope.backend.cli import main
main()
"""


def _blocked_cli(*args: str) -> str:
    proc = _python(_BLOCKED_CLI, *args)
    assert proc.returncode == 0, f"marginscope {' '.join(args)}: {proc.stderr[-3000:]}"
    *output, last = proc.stdout.strip().splitlines()
    assert last == "TORCH IMPORTS []", f"marginscope {' '.join(args)} tried: {last}"
    return "\n".join(output)


def test_the_server_commands_run_with_torch_refused(tmp_path: Path) -> None:
    from marginscope import __version__

    listed = _blocked_cli("--help")
    assert all(command in listed for command in ("train", "bench", "serve", "runs", "db"))  # the engine's too
    assert _blocked_cli("--version") == f"marginscope {__version__}"
    assert "--port" in _blocked_cli("serve", "--help")
    data = ["--data-dir", str(tmp_path / "data")]
    assert "is at revision" in _blocked_cli("db", "upgrade", *data)
    assert "(0 of 0)" in _blocked_cli("runs", "list", *data)


_IMPORT_WITH_TORCH_REFUSED = """
import importlib, pkgutil, sys

class RefuseTorch:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchvision"):
            raise ImportError(f"{name} is refused")
        return None

sys.meta_path.insert(0, RefuseTorch())
backend = importlib.import_module("marginscope.backend")
names = [m.name for m in pkgutil.walk_packages(backend.__path__, "marginscope.backend.")]
names += sys.argv[1:]
for name in names:
    importlib.import_module(name)
print(len(names))
"""

# the engine's modules the server and the server's commands use
TORCH_FREE_ENGINE = ["marginscope.engine", "marginscope.engine.vocabulary", "marginscope.engine.config",
                     "marginscope.engine.events", "marginscope.engine.regimes", "marginscope.engine.data.files",
                     "marginscope.engine.data.arrays", "marginscope.engine.bench.arms", "marginscope.engine.cli"]


def test_every_backend_module_and_the_engines_vocabulary_import_with_torch_refused() -> None:
    proc = _python(_IMPORT_WITH_TORCH_REFUSED, *TORCH_FREE_ENGINE)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert int(proc.stdout.strip().splitlines()[-1]) > 40


def test_the_checks_fail_when_torch_is_imported() -> None:
    """Not vacuous: a module that imports torch is caught by the refusing hook."""
    proc = _python(_IMPORT_WITH_TORCH_REFUSED, "marginscope.engine.selection")
    assert proc.returncode != 0 and "torch is refused" in proc.stderr
