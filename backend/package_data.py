"""Where the files that travel with the package are: the migrations and the pages.

Both are package data of `marginscope` (pyproject.toml), found with importlib.resources, so the
same code serves from a source checkout (an editable install, where marginscope/migrations and
marginscope/frontend link to the repository's alembic/ and frontend/) and from an installed wheel
in any folder.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def package_folder(name: str) -> Path:
    """The folder `name` ("migrations", "frontend") inside the installed `marginscope` package.

    A real folder: Alembic and the static-file server need paths, and pip installs a wheel's
    files unpacked (a zipped import would fail here, once, naming the folder)."""
    folder = Path(str(files("marginscope") / name))
    if not folder.is_dir():
        raise FileNotFoundError(f"MarginScope's {name}/ is missing from the installed package "
                                f"({folder}); reinstall it: pip install --force-reinstall marginscope")
    return folder


def migrations_dir() -> Path:
    """Alembic's script location: env.py and versions/."""
    return package_folder("migrations")


def frontend_dir() -> Path:
    """The pages, their scripts and styles, and vendor/ (what set-up fetched)."""
    return package_folder("frontend")
