"""The parts of a docs page that quote a stored result, for the tests that tie the two together.

A page quotes a measurement either as a block between `<!-- name ... -->` and `<!-- /name -->`
markers (drawn by the script that wrote the JSON: the test compares the block with the script's
`render`), or as a table under a `## ` heading (the test reads its rows). Import it as
`doc_sections`: tests/ is not a package, and pytest puts this folder on sys.path for
tests/conftest.py.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType


def marked_block(doc: Path, name: str) -> str:
    """The text between the `<!-- name ... -->` line and the `<!-- /name -->` line of `doc`."""
    found = re.search(f"<!-- {re.escape(name)}[^>]*-->\n(.*?)\n<!-- /{re.escape(name)} -->", doc.read_text(),
                      re.S)
    assert found is not None, f"{doc.name} lost its {name} markers"
    return found.group(1)


def section(text: str, heading: str) -> str:
    """`text` from the line `heading` (a `## ` heading) to the next `## ` heading or the end."""
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return text[start:] if end == -1 else text[start:end]


def load_script(path: Path) -> ModuleType:
    """A file no import reaches by name (a script of scripts/, a conftest), loaded as a module."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
