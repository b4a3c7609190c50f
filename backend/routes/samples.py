"""The samples a run looks at: ranked lists, one sample's story, suspect labels, thumbnails, and
the overlap of two runs' hardest sets (docs/samples.md; the engine side is engine/samples.py).

    GET /api/runs/{id}/samples?view=lowest|selected|misclassified&step=&cls=&limit=
    GET /api/runs/{id}/samples/{index}
    GET /api/runs/{id}/samples/{index}/image.png
    GET /api/runs/{id}/suspects?limit=&format=json|csv
    GET /api/compare/samples?runs=A,B&k=
"""

from __future__ import annotations

import csv
import io
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Response
from fastapi.exceptions import RequestValidationError

from marginscope.backend.deps import SettingsDep, StoreDep
from marginscope.backend.sample_images import DatasetUnavailable, SampleOutOfRange, sample_png
from marginscope.backend.samples_view import (
    CompareSamplesPublic,
    HistoryPoint,
    SampleStory,
    SamplesPublic,
    SelectedPoint,
    SuspectItem,
    SuspectsPublic,
    View,
    class_name,
    sample_item,
    samples_view,
)
from marginscope.backend.schemas import errors
from marginscope.backend.store import MAX_INT32, Run
from marginscope.engine.events import SUSPECT_RULE, SUSPECTS_KEPT

router = APIRouter(tags=["samples"])

MAX_LIMIT = SUSPECTS_KEPT  # 500: the most items one answer holds
Index = Annotated[int, Path(ge=0, le=MAX_INT32, description="Dataset index in the run's training split.")]


# ---------------------------------------------------------------------- helpers


def _num_train(run: Run) -> int | None:
    n = run.run_info.get("dataset", {}).get("num_train")
    return int(n) if isinstance(n, int) else None


def _check_index(run: Run, index: int) -> None:
    n = _num_train(run)
    if n is not None and index >= n:
        raise RequestValidationError([{"type": "value_error", "loc": ("path", "index"),
                                       "msg": f"index {index} is not a training sample of run {run.id} "
                                              f"(0..{n - 1})", "input": str(index)}])


# ---------------------------------------------------------------------- routes


@router.get("/api/runs/{run_id}/samples", response_model=SamplesPublic, responses=errors(404))
def get_samples(run_id: int, store: StoreDep, view: View = "lowest",
                step: Annotated[int | None, Query(ge=0, le=MAX_INT32, description=
                                "lowest: the snapshot at or before this step (default: the latest).")] = None,
                cls: Annotated[int | None, Query(ge=0, le=MAX_INT32, description="Only this class (label).")] = None,
                limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100) -> SamplesPublic:
    """Ranked samples of a run: the lowest-margin samples of a snapshot, the most often selected,
    or the selected samples the model misclassified when it last scored them."""
    return samples_view(store, store.get_run(run_id), view, step=step, cls=cls, limit=limit)


@router.get("/api/runs/{run_id}/samples/{index}", response_model=SampleStory, responses=errors(404))
def get_sample(run_id: int, index: Index, store: StoreDep) -> SampleStory:
    """One sample over the run: its margin and prediction at every snapshot that saw it, and when
    it was selected."""
    run = store.get_run(run_id)
    _check_index(run, index)
    story = store.sample_history(run_id, index)
    record = story.record
    label = record.label if record else None
    return SampleStory(index=index, label=label, class_name=class_name(run, label),
                       flipped=bool(record and record.flipped),
                       history=[HistoryPoint(**h) for h in story.history],
                       selected=[SelectedPoint(**p) for p in story.selected],
                       selected_total=record.selected if record else 0)


@router.get("/api/runs/{run_id}/samples/{index}/image.png", response_class=Response,
            responses={**errors(404), 200: {"content": {"image/png": {}},
                                            "description": "The sample as a small PNG."}})
def get_sample_image(run_id: int, index: Index, store: StoreDep, settings: SettingsDep) -> Response:
    """A training sample of the run's dataset as a small PNG (pixels as stored; cached)."""
    run = store.get_run(run_id)
    _check_index(run, index)
    try:
        png = sample_png(run.config, settings.data_dir, index)
    except SampleOutOfRange as exc:
        raise RequestValidationError([{"type": "value_error", "loc": ("path", "index"),
                                       "msg": str(exc), "input": str(index)}]) from None
    except (DatasetUnavailable, ValueError, OSError, RuntimeError) as exc:  # missing or unreadable files
        raise HTTPException(404, detail=f"the dataset of run {run_id} cannot be read here: {exc}") from None
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=86400"})


SUSPECT_COLUMNS = tuple(SuspectItem.model_fields)


@router.get("/api/runs/{run_id}/suspects", response_model=SuspectsPublic,
            responses={**errors(404), 200: {"content": {"application/json": {}, "text/csv": {}}}})
def get_suspects(run_id: int, store: StoreDep, limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
                 format: Literal["json", "csv"] = "json") -> Any:
    """Samples whose history marks them as likely mislabelled, best first (`rule` says how);
    format=csv downloads the same columns."""
    run = store.get_run(run_id)
    steps = store.sample_steps(run_id)
    items = [SuspectItem(index=r.index, label=r.label, prediction=r.last_prediction, score=r.suspect_score,
                         selected=r.selected, mean_mms=r.mean_mms, observed=r.observed,
                         class_name=class_name(run, r.label), flipped=r.flipped)
             for r in store.suspects(run_id, limit=limit)]
    if format == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=SUSPECT_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for item in items:
            writer.writerow(item.model_dump())
        return Response(out.getvalue(), media_type="text/csv", headers={
            "Content-Disposition": f'attachment; filename="run-{run_id}-suspects.csv"'})
    return SuspectsPublic(rule=SUSPECT_RULE, step=steps[-1] if steps else None, items=items)


TWO_RUN_IDS = "^ *[0-9]+ *, *[0-9]+ *$"  # ASCII digits only


@router.get("/api/compare/samples", response_model=CompareSamplesPublic, responses=errors(404))
def compare_samples(store: StoreDep, runs: Annotated[str, Query(pattern=TWO_RUN_IDS,
                                                                description="Two run ids: A,B")],
                    k: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100) -> CompareSamplesPublic:
    """How much two runs' hardest sets overlap. A run's hardest set is the k samples it selected
    most often (what its selector judged hardest); the answer lists the samples in one set only."""
    ids = [int(part) for part in runs.split(",")]  # the pattern admits exactly two (possibly equal)
    a, b = ids
    found = {rid: store.get_run(rid) for rid in ids}
    hardest = {rid: store.ranked_samples(rid, "selected", limit=k) for rid in ids}
    sets = {rid: {r.index for r in records} for rid, records in hardest.items()}
    shared = sets[a] & sets[b]
    smaller = min(len(sets[a]), len(sets[b]))
    return CompareSamplesPublic(
        overlap=len(shared) / smaller if smaller else 0.0, count=len(shared), k=k,
        only={str(rid): [sample_item(found[rid], r) for r in hardest[rid] if r.index not in shared]
              for rid in ids})
