"""Who may import whom (docs/architecture.md), checked by importing with a layer made unimportable.

Each check runs in a fresh interpreter whose import system refuses one top-level package, then
imports every module of another: an import running the wrong way fails there, however deep or lazy
it is at module level. Lazy imports inside functions are caught by the source scan below.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

_IMPORT_ALL_WITH_BLOCK = """
import importlib, pkgutil, sys

class Block:
    def find_spec(self, name, path=None, target=None):
        if name == {blocked!r} or name.startswith({blocked!r} + "."):
            raise ImportError(f"{{name}} is blocked: it must not be imported from here")
        return None

sys.meta_path.insert(0, Block())
package = importlib.import_module({package!r})
names = [package.__name__]
if hasattr(package, "__path__"):
    names += [m.name for m in pkgutil.walk_packages(package.__path__, package.__name__ + ".")]
for name in names:
    importlib.import_module(name)
print(len(names))
"""


def _import_all(package: str, blocked: str) -> int:
    code = _IMPORT_ALL_WITH_BLOCK.format(package=package, blocked=blocked)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return int(proc.stdout.strip().splitlines()[-1])


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if parts[0] == "marginscope" and len(parts) > 1 else parts[0]


def _imported_packages(path: Path) -> set[str]:
    """The layers (`marginscope.engine` -> "engine") and other top-level names of every import
    statement in a file, at any depth (functions included)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(_layer(alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(_layer(node.module))
    return names


def test_every_engine_module_imports_without_the_backend() -> None:
    assert _import_all("marginscope.engine", blocked="marginscope.backend") > 10


def test_the_store_imports_without_the_engine() -> None:
    assert _import_all("marginscope.backend.store", blocked="marginscope.engine") > 3


@pytest.mark.parametrize("folder, forbidden", [("engine", "backend"), ("backend/store", "engine")])
def test_no_import_runs_the_wrong_way_even_inside_functions(folder: str, forbidden: str) -> None:
    offenders = [str(p.relative_to(ROOT)) for p in sorted((ROOT / folder).rglob("*.py"))
                 if forbidden in _imported_packages(p)]
    assert offenders == [], f"{forbidden} imported from {offenders}"


LONG_MODULE = 400
REASON = "Kept as one module:"


def test_long_modules_say_why_they_are_long() -> None:
    """A module over ~400 lines states at its top why it is not split (docs/architecture.md)."""
    long_ones = []
    for folder in ("engine", "backend", "scripts"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            lines = path.read_text(encoding="utf-8").count("\n")
            if lines > LONG_MODULE:
                doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
                if REASON not in doc:
                    long_ones.append(f"{path.relative_to(ROOT)} ({lines} lines)")
    assert long_ones == [], f"over {LONG_MODULE} lines without '{REASON} ...' in the docstring: {long_ones}"
