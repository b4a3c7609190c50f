"""Runs: list, create (validated, queued), read, update, cancel, resume, delete, log lines, and
the download of a run's checkpoint.

Routes follow the template's shape: fetch (404), check, act through the store or the launcher,
return the public schema. Lifecycle changes (cancel, resume, delete) go through the launcher so
they cannot race its scheduler. Paths inside a config are confined to the server's data dir.
Text the store refuses (NUL, too long: it owns those limits) comes back as a 422 naming the field.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from fastapi import APIRouter, HTTPException, Query, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse

from marginscope.backend.deps import LauncherDep, SettingsDep, StoreDep, TokenDep
from marginscope.backend.schemas import (
    BODY_ERRORS,
    STATUS_LIST,
    TOKEN_ERRORS,
    LogPublic,
    LogsPublic,
    QueueState,
    RunCreate,
    ResumePublic,
    RunPublic,
    RunsPublic,
    RunUpdate,
    errors,
)
from marginscope.backend.settings import Settings
from marginscope.backend.store import MAX_INT32, RUN_SORT_KEYS, AbstractStore, InvalidArgument
from marginscope.backend.store.search import MAX_FILTER_CHARS, SearchError
from marginscope.backend.worker import CHECKPOINT
from marginscope.engine.config import TrainConfig
from marginscope.engine.vocabulary import IMAGEFOLDER_PREFIX

router = APIRouter(prefix="/api/runs", tags=["runs"])

SORT = f"^[-+]?({'|'.join(RUN_SORT_KEYS)})$"  # a column, "-" for descending
FILTER_HELP = ("MLflow's search syntax, clauses joined by AND: metrics.`val/accuracy` > 0.98 and "
               "config.seed = 0 and tags.baseline and attributes.status IN ('running') "
               "(docs/api.md, \"Searching runs\")")
ORDER_HELP = ("a comma list of metrics.`key`, config.key or attributes.name, each ASC or DESC; "
              "replaces `sort`; runs without the value come last")


def _config_error(field: str, message: str, value: Any) -> RequestValidationError:
    return RequestValidationError([{
        "type": "value_error", "loc": ("body", "config", field), "msg": message, "input": value,
    }])


@contextmanager
def body_errors() -> Iterator[None]:
    """The store's refusal of a body field ("tags.1") as FastAPI's 422 at ["body", "tags", 1]."""
    try:
        yield
    except InvalidArgument as exc:
        if exc.field is None:
            raise
        loc = ("body", *(int(p) if p.isdigit() else p for p in exc.field.split(".")))
        raise RequestValidationError([{"type": "value_error", "loc": loc, "msg": str(exc)}]) from exc


def _inside(path: str, root: Path) -> bool:
    candidate = Path(path).expanduser()
    candidate = candidate if candidate.is_absolute() else root / candidate
    try:
        return candidate.resolve().is_relative_to(root.resolve())
    except (OSError, ValueError):  # no path the system can resolve (e.g. one holding NUL)
        return False


def check_steps(config: TrainConfig) -> None:
    """422 for more steps than the store's 32-bit step columns hold."""
    if config.steps is not None and config.steps > MAX_INT32:
        raise _config_error("steps", f"at most {MAX_INT32} steps", config.steps)


def confine_config(config: TrainConfig, settings: Settings) -> dict[str, Any]:
    """The config the worker will run: data_dir forced to the server's; paths must stay inside it.

    Raises RequestValidationError (422 naming the field) for a path outside the data dir and for
    more steps than the store's 32-bit step columns hold.
    """
    root = settings.data_dir
    check_steps(config)
    if config.dataset.startswith(IMAGEFOLDER_PREFIX):
        folder = config.dataset[len(IMAGEFOLDER_PREFIX):].strip()
        if not folder or not _inside(folder, root):
            raise _config_error("dataset", f"image folder must be inside the server's data dir {root}",
                                config.dataset)
    if "data_dir" in config.model_fields_set and not _inside(config.data_dir, root):
        raise _config_error("data_dir", f"the server keeps datasets in {root}; leave data_dir unset",
                            config.data_dir)
    if config.out_dir is not None and not _inside(config.out_dir, root):
        raise _config_error("out_dir", f"out_dir must be inside the server's data dir {root}",
                            config.out_dir)
    if config.resume_from is not None:
        raise _config_error("resume_from", "the server manages checkpoints: use "
                            "POST /api/runs/{id}/resume instead", config.resume_from)
    data = config.model_dump(mode="json")
    data["data_dir"] = str(root)
    return data


@router.get("", response_model=RunsPublic, responses=errors())
def read_runs(
    store: StoreDep,
    launcher: LauncherDep,
    status_: str | None = Query(None, alias="status", pattern=STATUS_LIST,
                                description="queued, running, ... (comma list)"),
    dataset: str | None = None,
    model: str | None = None,
    selector: str | None = None,
    tag: str | None = None,
    sort: str = Query("-created_at", pattern=SORT, description="a column, '-' prefix for descending"),
    limit: int = Query(50, ge=1, le=1000),
    offset: int = Query(0, ge=0),
    filter_: str | None = Query(None, alias="filter", max_length=MAX_FILTER_CHARS,
                                description=FILTER_HELP),
    order_by: str | None = Query(None, max_length=MAX_FILTER_CHARS, description=ORDER_HELP),
) -> RunsPublic:
    """List runs, filtered (MLflow's search syntax), sorted and paginated, with the queue's state."""
    statuses = [s.strip() for s in status_.split(",") if s.strip()] if status_ else None
    with search_errors():
        runs, count = store.list_runs(status=statuses, dataset=dataset, model=model, selector=selector,
                                      tag=tag, sort=sort, limit=limit, offset=offset,
                                      filter_string=filter_, order_by=order_by)
    return RunsPublic(data=[RunPublic.from_entity(r) for r in runs], count=count,
                      queue=QueueState(**launcher.queue_state()))


@contextmanager
def search_errors() -> Iterator[None]:
    """The grammar's refusal as a 422 at ["query", "filter" | "order_by"] naming the bad token."""
    try:
        yield
    except SearchError as exc:
        raise RequestValidationError([{
            "type": "value_error", "loc": ("query", exc.field), "msg": str(exc), "input": exc.token,
            "ctx": {"token": exc.token, "position": exc.position},
        }]) from exc


@router.post("", response_model=RunPublic, status_code=status.HTTP_201_CREATED,
             dependencies=[TokenDep], responses=errors(*BODY_ERRORS, *TOKEN_ERRORS))
def create_run(body: RunCreate, store: StoreDep, settings: SettingsDep,
               launcher: LauncherDep) -> RunPublic:
    """Validate a training config and queue a run."""
    config = confine_config(body.config, settings)
    with body_errors():
        run = store.create_run(name=body.name, config=config, tags=body.tags, notes=body.notes,
                               launcher=launcher.name)
    launcher.wake()
    return RunPublic.from_entity(run)


@router.get("/{run_id}", response_model=RunPublic, responses=errors(404))
def read_run(run_id: int, store: StoreDep) -> RunPublic:
    """Get one run."""
    return RunPublic.from_entity(store.get_run(run_id))


@router.patch("/{run_id}", response_model=RunPublic, dependencies=[TokenDep],
              responses=errors(404, *BODY_ERRORS, *TOKEN_ERRORS))
def update_run(run_id: int, body: RunUpdate, store: StoreDep) -> RunPublic:
    """Change a run's name, tags or notes."""
    fields = body.model_dump(exclude_unset=True)
    with body_errors():
        run = store.update_run(run_id, name=fields.get("name"), tags=fields.get("tags"),
                               notes=fields.get("notes"))
    return RunPublic.from_entity(run)


@router.post("/{run_id}/cancel", response_model=RunPublic, dependencies=[TokenDep],
             responses=errors(404, 409, *TOKEN_ERRORS))
def cancel_run(run_id: int, launcher: LauncherDep) -> RunPublic:
    """Cancel a queued run at once, or stop a running one (SIGTERM, then SIGKILL)."""
    return RunPublic.from_entity(launcher.cancel(run_id))


@router.post("/{run_id}/resume", response_model=RunPublic, dependencies=[TokenDep],
             responses=errors(404, 409, *TOKEN_ERRORS))
def resume_run(run_id: int, launcher: LauncherDep) -> RunPublic:
    """Queue a crashed or cancelled run again, to continue from its last checkpoint."""
    return RunPublic.from_entity(launcher.resume(run_id))


@router.get("/{run_id}/resume", response_model=ResumePublic, responses=errors(404))
def read_resume(run_id: int, launcher: LauncherDep) -> ResumePublic:
    """Whether the run can resume now, and if not why: a page offers Resume only when it would work."""
    check = launcher.resume_check(run_id)
    return ResumePublic(can_resume=check.can_resume, reason=check.reason, wait=check.wait)


@router.delete("/{run_id}", status_code=status.HTTP_204_NO_CONTENT, dependencies=[TokenDep],
               responses=errors(404, 409, *TOKEN_ERRORS))
def delete_run(run_id: int, launcher: LauncherDep) -> Response:
    """Delete a run that is not running, with its rows and files."""
    launcher.delete(run_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{run_id}/logs", response_model=LogsPublic, responses=errors(404))
def read_logs(run_id: int, store: StoreDep, after: int = Query(0, ge=0),
              limit: int = Query(500, ge=1, le=10000)) -> LogsPublic:
    """Log lines of a run after a seq."""
    store.get_run(run_id)  # 404 for an unknown run
    lines = store.get_logs(run_id, after=after, limit=limit)
    return LogsPublic(data=[LogPublic.from_entity(line) for line in lines], count=len(lines))


CHUNK_BYTES = 1 << 20  # a checkpoint is sent in pieces of this size
_CHECKPOINT_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/octet-stream": {}}, "description": "the checkpoint file (PyTorch's format)"},
    **errors(404)}


@router.get("/{run_id}/checkpoint", response_class=StreamingResponse, responses=_CHECKPOINT_ANSWERS)
def download_checkpoint(run_id: int, store: StoreDep) -> Response:
    """The run's latest checkpoint as a file download.

    Only the file in the run's folder on this server is served, never a path a trainer reported
    (a remote run's checkpoint stays on its own machine). The file is opened before its size is
    read: a trainer replacing it meanwhile (an atomic rename) cannot change what is sent."""
    handle, headers = _open_checkpoint(run_id, store)
    return StreamingResponse(_chunks(handle), media_type="application/octet-stream", headers=headers)


@router.head("/{run_id}/checkpoint", responses=_CHECKPOINT_ANSWERS)
def check_checkpoint(run_id: int, store: StoreDep) -> Response:
    """Whether GET would download a checkpoint (200, with its size) or not (404); no body."""
    handle, headers = _open_checkpoint(run_id, store)
    handle.close()
    return Response(headers=headers, media_type="application/octet-stream")


def _open_checkpoint(run_id: int, store: AbstractStore) -> tuple[BinaryIO, dict[str, str]]:
    store.get_run(run_id)  # 404 for an unknown run
    path = Path(store.run_dir(run_id)) / CHECKPOINT
    try:
        handle = path.open("rb")
    except (FileNotFoundError, NotADirectoryError):
        raise HTTPException(status.HTTP_404_NOT_FOUND,
                            detail=f"run {run_id} has no checkpoint on this server: a run saves one at "
                                   "each validation (or every checkpoint_every steps); a run that "
                                   "trains on another machine keeps its own there") from None
    return handle, {"Content-Length": str(os.fstat(handle.fileno()).st_size),
                    "Content-Disposition": f'attachment; filename="run-{run_id}-{CHECKPOINT}"'}


def _chunks(handle: BinaryIO) -> Iterator[bytes]:
    with handle:
        while chunk := handle.read(CHUNK_BYTES):
            yield chunk
