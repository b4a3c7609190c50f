"""Names a package offers but loads on first use (PEP 562's module `__getattr__`).

Why: the dashboard server imports the engine's torch-free parts (the config, the events, the
vocabulary, where datasets are) through packages whose other names need torch; loading those
only when asked for keeps torch out of the server. One helper, so every lazy package behaves alike.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib import import_module
from typing import Any


def lazy_getattr(package: str, names: Mapping[str, str], namespace: dict[str, Any]) -> Callable[[str], Any]:
    """A module `__getattr__` for `package`: each of `names` (public name -> the module defining
    it) is imported when first asked for and kept in `namespace`, so later lookups skip it."""

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(names[name]), name)
        namespace[name] = value
        return value

    return __getattr__
