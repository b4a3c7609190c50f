"""Metric series, margin histograms and per-class selection statistics of one run.

Downsampling happens in the store (min/max buckets keeping the first and last point), so a page
never receives more than `max_points` points per series however long the run.
"""

from __future__ import annotations

from fastapi import APIRouter, Query

from marginscope.backend.deps import StoreDep
from marginscope.backend.schemas import (
    HistogramsPublic,
    MetricsPublic,
    Population,
    SelectionPublic,
    SeriesPublic,
    XAxis,
    errors,
)

router = APIRouter(prefix="/api/runs", tags=["metrics"])


def split_keys(keys: str | None) -> list[str] | None:
    if keys is None:
        return None
    return [k.strip() for k in keys.split(",") if k.strip()]


@router.get("/{run_id}/metrics", response_model=MetricsPublic, responses=errors(404))
def read_metrics(
    run_id: int,
    store: StoreDep,
    keys: str | None = Query(None, description="comma-separated keys (default: every key)"),
    x: XAxis = "step",
    max_points: int = Query(2000, ge=2, le=100_000),
) -> MetricsPublic:
    """Scalar series on an x axis, downsampled to max_points."""
    wanted = split_keys(keys) or store.metric_keys(run_id)
    series = store.get_series(run_id, wanted, x=x, max_points=max_points)
    return MetricsPublic(x=x, series={k: SeriesPublic.from_entity(s) for k, s in series.items()})


@router.get("/{run_id}/histograms", response_model=HistogramsPublic, responses=errors(404))
def read_histograms(
    run_id: int,
    store: StoreDep,
    population: Population = "candidates",
    start: int | None = Query(None, ge=0),
    end: int | None = Query(None, ge=0),
    stride: int = Query(1, ge=1),
    max_rows: int = Query(500, ge=1, le=100_000),
) -> HistogramsPublic:
    """Margin histograms (fixed edges) over a step range, with quantile series."""
    h = store.get_histograms(run_id, population, start=start, end=end, stride=stride,
                             max_rows=max_rows)
    return HistogramsPublic.from_entity(h)


@router.get("/{run_id}/selection", response_model=SelectionPublic, responses=errors(404))
def read_selection(run_id: int, store: StoreDep,
                   max_points: int = Query(500, ge=1, le=100_000)) -> SelectionPublic:
    """Per-class candidate and selected counts over steps."""
    return SelectionPublic.from_entity(store.get_selection(run_id, max_points=max_points))
