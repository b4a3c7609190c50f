"""Optional parts of MarginScope and the one-line error that names the extra to install.

`pip install marginscope` gives the dashboard, the store on SQLite and the engine. A cluster
executor, another database driver or another export format is an extra, so that a user who needs
none of them installs none of their dependencies: `marginscope[dask]`, `[postgres]`, `[parquet]`.
"""

from __future__ import annotations

from importlib import import_module
from types import ModuleType


class MissingExtra(ImportError):
    """An optional dependency is not installed; the message names the extra that brings it."""


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """`module` imported, or MissingExtra: "<purpose> needs the '<extra>' extra: pip install ..."."""
    try:
        return import_module(module)
    except ImportError as exc:
        raise MissingExtra(f"{purpose} needs the '{extra}' extra: pip install 'marginscope[{extra}]' "
                           f"({module} is not installed)") from exc
