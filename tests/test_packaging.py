"""What pyproject.toml installs: one import package, `marginscope`, holding every subpackage of
engine/ and backend/ and nothing else at the top level (the wheel itself: tests/test_wheel.py)."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_package_folder_is_installed() -> None:
    setuptools = PYPROJECT["tool"]["setuptools"]
    mapped = {name: ROOT / folder for name, folder in setuptools["package-dir"].items()}
    folders = {"marginscope": ROOT / "marginscope"}
    for layer in ("engine", "backend"):
        for init in sorted((ROOT / layer).rglob("__init__.py")):
            rel = init.parent.relative_to(ROOT / layer)
            folders[".".join(["marginscope", layer, *rel.parts])] = init.parent
    assert sorted(setuptools["packages"]) == sorted(folders)
    assert mapped["marginscope.engine"] == ROOT / "engine" and mapped["marginscope.backend"] == ROOT / "backend"


def test_package_data_links_point_at_the_repository_folders() -> None:
    assert (ROOT / "marginscope" / "migrations").resolve() == ROOT / "alembic"
    assert (ROOT / "marginscope" / "frontend").resolve() == ROOT / "frontend"


@pytest.mark.parametrize("folder", ["engine", "backend", "marginscope", "alembic", "tests", "scripts"])
def test_code_imports_our_modules_by_the_one_name(folder: str) -> None:
    """`import engine` / `from backend...` would load a second copy of a module (or someone
    else's `backend`): every import of our code goes through `marginscope.`."""
    offenders = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
                     else [])
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] in ("engine", "backend")]
    assert offenders == []


def test_public_names_load_from_the_package() -> None:
    import marginscope

    for name in marginscope.__all__:
        assert getattr(marginscope, name) is not None, name
    from marginscope import TrainConfig, make_selector, remote_run, train

    assert callable(train) and callable(make_selector) and callable(remote_run)
    assert TrainConfig(dataset="digits").dataset == "digits"


def test_torch_and_torchvision_are_ranges_and_constraints_pin_them() -> None:
    deps = {d.split(">")[0].split("=")[0].split("<")[0].strip(): d for d in PYPROJECT["project"]["dependencies"]}
    for name in ("torch", "torchvision"):
        assert "==" not in deps[name] and ">=" in deps[name], deps[name]
    pins = dict(line.split("==") for line in (ROOT / "constraints.txt").read_text().splitlines()
                if line and not line.startswith("#"))
    assert {"torch", "torchvision"} <= set(pins)
    from packaging.specifiers import SpecifierSet

    for name in ("torch", "torchvision"):
        assert pins[name] in SpecifierSet(deps[name][len(name):]), (name, pins[name], deps[name])
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert {"dask", "postgres", "parquet"} <= set(extras)


def test_the_package_offers_every_public_name_of_the_engine() -> None:
    import marginscope
    from marginscope.engine import LAZY_NAMES

    assert set(LAZY_NAMES) <= set(marginscope.__all__)
