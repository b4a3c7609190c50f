"""GET /api/compare: several runs on one metric and x axis, and a time-to-target table.

For a target value of the metric (given, or by default the baseline run's best), each row gives the
first logged point where the run reached it (step, samples back-propagated and forwarded, wall
time) and the ratios run / baseline for each (lower is faster). A run that never reached the target
stays in the table with `reached: false` and no ratios; it is never dropped. Ratios pair only like
with like: a run of another dataset or model than the baseline's gets none (`unlike_baseline`
names what differs), since steps to a digits target say nothing about MNIST.
"""

from __future__ import annotations

import math

from fastapi import APIRouter, Query
from fastapi.exceptions import RequestValidationError

from marginscope.backend.deps import StoreDep
from marginscope.backend.routes.metrics import split_keys
from marginscope.backend.schemas import (
    ComparePublic,
    CompareRow,
    HistogramsPublic,
    Population,
    Ratios,
    RunPublic,
    SeriesPublic,
    XAxis,
    errors,
)
from marginscope.backend.store import Run, TargetReached
from marginscope.engine.events import COUNTER_KEYS

router = APIRouter(prefix="/api/compare", tags=["compare"])

# the counters a run's cost is measured in (epoch is step rescaled, so it adds no ratio)
RATIO_AXES = tuple(k for k in COUNTER_KEYS if k != "epoch")
# what a run must share with the baseline for a ratio between them to mean anything
LIKE_FIELDS = ("dataset", "model")
MAX_RUNS = 50
RUN_IDS = f"^ *[0-9]+ *(, *[0-9]+ *){{0,{MAX_RUNS - 1}}}$"  # ASCII digits: "²".isdigit() too


def _query_error(name: str, message: str, value: object) -> RequestValidationError:
    return RequestValidationError([{"type": "value_error", "loc": ("query", name), "msg": message,
                                    "input": str(value)}])


def parse_run_ids(raw: str) -> list[int]:
    """"1,2,3" → [1, 2, 3] (order kept, duplicates dropped); 422 naming `runs` otherwise."""
    ids: list[int] = []
    for part in raw.split(","):
        part = part.strip()
        if not part:
            continue
        if not (part.isascii() and part.isdigit()):
            raise _query_error("runs", f"run ids are integers, got {part!r}", raw)
        if int(part) not in ids:
            ids.append(int(part))
    if not ids:
        raise _query_error("runs", "give at least one run id, e.g. runs=1,2", raw)
    if len(ids) > MAX_RUNS:
        raise _query_error("runs", f"compare at most {MAX_RUNS} runs at once", raw)
    return ids


def higher_is_better(key: str) -> bool:
    """Accuracy-like metrics grow, losses and times shrink."""
    return not any(word in key for word in ("loss", "time", "misclassified"))


def ratios(row: TargetReached, base: TargetReached) -> Ratios | None:
    """run / baseline per axis when both reached the target (None for an axis where baseline is 0)."""
    if not (row.reached and base.reached):
        return None
    values: dict[str, float | None] = {}
    for axis in RATIO_AXES:
        mine, theirs = getattr(row, axis), getattr(base, axis)
        values[axis] = (mine / theirs) if mine is not None and theirs else None
    return Ratios(**values)


def unlike(run: Run, base: Run) -> list[str]:
    """The LIKE_FIELDS in which `run` differs from the baseline run `base`."""
    return [f for f in LIKE_FIELDS if getattr(run, f) != getattr(base, f)]


@router.get("", response_model=ComparePublic, responses=errors(404))
def read_compare(
    store: StoreDep,
    runs: str = Query(..., pattern=RUN_IDS, description="comma-separated run ids (at most 50)"),
    key: str = "val/accuracy",
    x: XAxis = "step",
    baseline: int | None = Query(None, description="run id (default: the first run)"),
    target: float | None = Query(None, description="default: the baseline's best value of key"),
    max_points: int = Query(2000, ge=2, le=100_000),
    also: str | None = Query(None, description="more comma-separated metric keys to send each run's "
                             "series of (same x and max_points), e.g. val/loss"),
    histograms: Population | None = Query(None, description="also send each run's margin "
                                          "histograms of this population"),
    hist_rows: int = Query(150, ge=1, le=100_000, description="at most this many histogram rows per run"),
) -> ComparePublic:
    """Runs overlaid on one metric, with steps and time to a target and ratios to a baseline.

    `also` and `histograms` let a page draw everything from this one answer: ten runs would
    otherwise cost it twenty-odd requests."""
    ids = parse_run_ids(runs)
    base_id = ids[0] if baseline is None else baseline
    if base_id not in ids:
        raise _query_error("baseline", f"baseline {base_id} is not among runs={runs}", baseline)
    if target is not None and not math.isfinite(target):
        raise _query_error("target", "target must be a finite number", target)
    found = [store.get_run(i) for i in ids]  # 404 for an unknown run
    up = higher_is_better(key)
    never = math.inf if up else -math.inf  # a target no value reaches: probes only `best`
    if target is None:
        target = store.time_to_target(base_id, key, never, higher_is_better=up).best
    reached = {i: store.time_to_target(i, key, never if target is None else target,
                                       higher_is_better=up) for i in ids}
    base = reached[base_id]
    base_run = found[ids.index(base_id)]
    table = [CompareRow(run_id=run.id, name=run.name, selector=run.selector,
                        reached=reached[run.id].reached, step=reached[run.id].step,
                        samples_backpropagated=reached[run.id].samples_backpropagated,
                        samples_forwarded=reached[run.id].samples_forwarded,
                        wall_time=reached[run.id].wall_time, best=reached[run.id].best,
                        final_test=run.latest.get("test/accuracy"),
                        ratios=None if differs else ratios(reached[run.id], base),
                        unlike_baseline=differs)
             for run in found for differs in [unlike(run, base_run)]]
    extra = [k for k in split_keys(also) or [] if k != key]
    per_run = {run.id: store.get_series(run.id, [key, *extra], x=x, max_points=max_points)
               for run in found}
    series = {str(i): SeriesPublic.from_entity(s[key]) for i, s in per_run.items()}
    also_series = {k: {str(i): SeriesPublic.from_entity(s[k]) for i, s in per_run.items()} for k in extra}
    hists: dict[str, HistogramsPublic] = {}
    if histograms is not None:
        for run in found:
            h = store.get_histograms(run.id, histograms, max_rows=hist_rows)
            if h.steps:
                hists[str(run.id)] = HistogramsPublic.from_entity(h)
    return ComparePublic(runs=[RunPublic.from_entity(r) for r in found], key=key, x=x,
                         baseline=base_id, target=target, series=series, table=table,
                         also=also_series, histograms=hists)
