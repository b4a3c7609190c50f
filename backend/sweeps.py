"""Sweeps: one config and a grid of values (seeds, learning rates, selectors...) as many runs.

`plan_sweep` is the one expansion of a grid, used by both sweep routes (POST /api/sweeps/preview
shows the plan, POST /api/sweeps queues it), so what a form previews is what launches. Every run of
the grid is validated before any is queued (the very TrainConfig rules and data-dir confinement of
POST /api/runs), and the store inserts them in one transaction: a sweep launches whole or not at
all. A refusal is a 422 naming each bad place: `["body", "grid", "<field>", <index>]` for a value of
the grid, `["body", "config", "<field>"]` for the base config, `["body", "grid"]` for a grid too
large or a rule between fields that one combination breaks (its message names the combination).
"""

from __future__ import annotations

import itertools
import json
import math
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from marginscope.backend.routes.runs import confine_config  # the one confinement of a config
from marginscope.backend.settings import Settings
from marginscope.backend.store import TEXT_LIMITS
from marginscope.engine.config import TrainConfig

MAX_SWEEP_RUNS = 100  # runs one sweep may queue: a typo in a grid must not queue thousands
MAX_ERRORS = 20  # distinct problems listed in one 422
SWEEP_TAG = "sweep:"  # every run of a sweep carries the tag "sweep:<id>"
# what the server decides itself (routes/runs.py confine_config): never a grid's
SERVER_FIELDS = frozenset({"data_dir", "out_dir", "resume_from"})


@dataclass(frozen=True)
class PlannedRun:
    """One run of a sweep: its name, the grid values that set it apart, its whole config."""

    name: str | None
    values: dict[str, Any]
    config: dict[str, Any]


@dataclass(frozen=True)
class SweepPlan:
    """The runs a grid makes, in order (the last field of the grid varies fastest)."""

    varying: list[str]  # the grid's fields with more than one value
    runs: list[PlannedRun]


def new_sweep_id() -> str:
    """A short id for the sweep's tag; unique enough among one user's sweeps (16M values)."""
    return secrets.token_hex(3)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def describe(values: Mapping[str, Any]) -> str:
    """`lr=0.05 seed=1`: a run's place in its grid, as its name and the errors show it."""
    return " ".join(f"{field}={_text(value)[:40]}" for field, value in values.items())


def _run_name(base: str | None, values: Mapping[str, Any]) -> str | None:
    """The base name followed by the run's grid values, cut to what the store keeps (a base name
    over the limit is left whole, for the store to refuse naming the field)."""
    base = (base or "").strip()
    if not values:
        return base or None
    if len(base) > TEXT_LIMITS["name"]:
        return base
    return f"{base} {describe(values)}".strip()[:TEXT_LIMITS["name"]]


def _grid_errors(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Fields the grid cannot vary, and repeated values (they would launch the same run twice)."""
    errors: list[dict[str, Any]] = []
    for field, values in grid.items():
        loc = ("body", "grid", field)
        if field not in TrainConfig.model_fields:
            errors.append({"type": "value_error", "loc": loc, "input": field,
                           "msg": f"{field!r} is not a config field (the fields are GET /api/options `fields`)"})
        elif field in SERVER_FIELDS:
            errors.append({"type": "value_error", "loc": loc, "input": field,
                           "msg": f"the server sets {field} itself; it cannot vary in a sweep"})
        seen: set[str] = set()
        for i, value in enumerate(values):
            key = json.dumps(value, sort_keys=True)
            if key in seen:
                errors.append({"type": "value_error", "loc": (*loc, i), "input": value,
                               "msg": f"{field} = {_text(value)} is listed twice: each value once"})
            seen.add(key)
    return errors


def _size_error(grid: Mapping[str, Sequence[Any]]) -> dict[str, Any] | None:
    count = math.prod(len(values) for values in grid.values())
    if count <= MAX_SWEEP_RUNS:
        return None
    sizes = " × ".join(f"{len(values)} {field}" for field, values in grid.items())
    return {"type": "value_error", "loc": ("body", "grid"), "input": count,
            "msg": f"this grid makes {count} runs ({sizes}); a sweep queues at most "
                   f"{MAX_SWEEP_RUNS}: list fewer values, or split it into several sweeps"}


class _Problems:
    """The distinct problems found over all combinations, each placed where it can be fixed."""

    def __init__(self, grid: Mapping[str, Sequence[Any]]) -> None:
        self.grid = grid
        self.found: dict[tuple[Any, ...], dict[str, Any]] = {}

    def add(self, loc: Sequence[Any], msg: str, value: Any, chosen: Mapping[str, Any],
            index: Mapping[str, int]) -> None:
        field = loc[0] if loc else None
        if field in self.grid:
            where: tuple[Any, ...] = ("body", "grid", field, index[str(field)])
            text = f"{field} = {_text(chosen[str(field)])}: {msg}"
        elif field is not None:
            where, text = ("body", "config", *loc), msg
        else:  # a rule between fields, broken by this combination
            where = ("body", "grid") if self.grid else ("body", "config")
            text = f"{msg} (in the run with {describe(chosen)})" if chosen else msg
        key = (where, msg)
        if key not in self.found and len(self.found) < MAX_ERRORS:
            self.found[key] = {"type": "value_error", "loc": where, "msg": text, "input": value}


def plan_sweep(config: TrainConfig, grid: Mapping[str, Sequence[Any]], *, name: str | None,
               settings: Settings) -> SweepPlan:
    """Every run of `grid` over `config` (a grid value replaces the config's), each validated and
    confined like a POST /api/runs config. Raises RequestValidationError (a 422) listing every
    distinct problem, so the caller queues nothing."""
    errors = _grid_errors(grid)
    if errors:
        raise RequestValidationError(errors)
    too_large = _size_error(grid)
    if too_large:
        raise RequestValidationError([too_large])
    fields = list(grid)
    varying = [f for f in fields if len(grid[f]) > 1]
    given = config.model_dump(mode="json", exclude_unset=True)
    problems = _Problems(grid)
    runs: list[PlannedRun] = []
    for combo in itertools.product(*(list(enumerate(grid[f])) for f in fields)):
        index = {f: i for f, (i, _) in zip(fields, combo, strict=True)}
        chosen = {f: v for f, (_, v) in zip(fields, combo, strict=True)}
        try:
            confined = confine_config(TrainConfig.model_validate({**given, **chosen}), settings)
        except ValidationError as exc:
            for e in exc.errors():
                problems.add(e["loc"], e["msg"], e.get("input"), chosen, index)
            continue
        except RequestValidationError as exc:  # confinement: loc is ("body", "config", field)
            for e in exc.errors():
                problems.add(tuple(e["loc"])[2:], e["msg"], e.get("input"), chosen, index)
            continue
        values = {f: chosen[f] for f in varying}
        runs.append(PlannedRun(name=_run_name(name, values), values=values, config=confined))
    if problems.found:
        raise RequestValidationError(list(problems.found.values()))
    return SweepPlan(varying=varying, runs=runs)
