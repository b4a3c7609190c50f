"""Measure two versions of MarginScope with one script, side by side in one session.

    --before DIR   a source tree of the older code (a checkout, or `git archive <rev> | tar -x -C DIR`)

Timings on a shared machine drift with its load, so a before/after comparison is only fair when
both sides run in the same session, interleaved. A measuring script hands its one-side
measurement to `run_sides`, which runs it in a child process per side and repeat (`python
<script> <args> --side-out FILE`), alternating before and after, and collects what each child
wrote to FILE.

The "before" child imports the older package: DIR goes first on PYTHONPATH (its `marginscope/`
gets links to its engine/ and backend/, as pyproject.toml maps them), and PYTHONSAFEPATH=1 keeps
a script's folder or a server's working directory from putting this checkout's package ahead of
it. Every server process the child starts inherits both, so server and client are the old code.
The "after" child is this checkout, as installed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

SIDES = ("before", "after")


def prepare_tree(src: Path) -> None:
    """Link `src/marginscope/engine` and `.../backend` to the tree's own folders (what the
    editable install's mapping does for a checkout)."""
    for name in ("engine", "backend"):
        link = src / "marginscope" / name
        if not link.exists():
            link.symlink_to(Path("..") / name)


def side_env(before: Path | None) -> dict[str, str]:
    """The environment of a child measuring the old code (`before`) or this checkout (None)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARGINSCOPE_")}
    env.pop("PYTHONPATH", None)
    if before is not None:
        prepare_tree(before)
        env.update(PYTHONPATH=str(before.resolve()), PYTHONSAFEPATH="1")
    return env


def run_sides(script: Path, args: list[str], before: Path | None, repeats: int) -> dict[str, list[dict[str, Any]]]:
    """{side: [one child's result per repeat]}; without `before`, only "after" is measured."""
    results: dict[str, list[dict[str, Any]]] = {side: [] for side in SIDES if side == "after" or before}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(repeats):
            for side in results:
                out = Path(tmp) / f"{side}-{repeat}.json"
                print(f"[{side} {repeat + 1}/{repeats}] {script.name} {' '.join(args)}", flush=True)
                subprocess.run([sys.executable, str(script), *args, "--side-out", str(out)], check=True,
                               cwd=tmp, env=side_env(before if side == "before" else None))
                results[side].append(json.loads(out.read_text()))
    return results
