"""Sweeps: POST /api/sweeps/preview (the plan: how many runs, which fields vary) and POST
/api/sweeps (queue them all, tagged "sweep:<id>"). Both expand the grid with `plan_sweep`
(backend/sweeps.py), the one owner of that expansion; the queue takes the runs in one transaction.
"""

from __future__ import annotations

from fastapi import APIRouter, status

from marginscope.backend.deps import LauncherDep, SettingsDep, StoreDep, TokenDep
from marginscope.backend.routes.runs import body_errors
from marginscope.backend.schemas import (
    BODY_ERRORS,
    TOKEN_ERRORS,
    RunPublic,
    SweepCreate,
    SweepPlanPublic,
    SweepPublic,
    SweepRun,
    errors,
)
from marginscope.backend.store import NewRun
from marginscope.backend.sweeps import SWEEP_TAG, SweepPlan, new_sweep_id, plan_sweep

router = APIRouter(prefix="/api/sweeps", tags=["sweeps"])


def new_runs(plan: SweepPlan, body: SweepCreate, *, tags: list[str]) -> list[NewRun]:
    return [NewRun(name=r.name, config=r.config, tags=tags, notes=body.notes) for r in plan.runs]


@router.post("/preview", response_model=SweepPlanPublic, dependencies=[TokenDep],
             responses=errors(*BODY_ERRORS, *TOKEN_ERRORS))
def preview_sweep(body: SweepCreate, store: StoreDep, settings: SettingsDep) -> SweepPlanPublic:
    """The runs POST /api/sweeps would queue for this body, validated; queues nothing."""
    plan = plan_sweep(body.config, body.grid, name=body.name, settings=settings)
    with body_errors():
        store.check_new_runs(new_runs(plan, body, tags=body.tags))
    return SweepPlanPublic(count=len(plan.runs), varying=plan.varying,
                           runs=[SweepRun(name=r.name, values=r.values, config=r.config) for r in plan.runs])


@router.post("", response_model=SweepPublic, status_code=status.HTTP_201_CREATED,
             dependencies=[TokenDep], responses=errors(*BODY_ERRORS, *TOKEN_ERRORS))
def create_sweep(body: SweepCreate, store: StoreDep, settings: SettingsDep,
                 launcher: LauncherDep) -> SweepPublic:
    """Queue one run per combination of the grid, all or none, each tagged "sweep:<id>"."""
    plan = plan_sweep(body.config, body.grid, name=body.name, settings=settings)
    sweep_id = new_sweep_id()
    tags = [*body.tags, f"{SWEEP_TAG}{sweep_id}"]
    with body_errors():
        runs = store.create_runs(new_runs(plan, body, tags=tags), launcher=launcher.name)
    launcher.wake()
    return SweepPublic(id=sweep_id, tag=tags[-1], count=len(runs), varying=plan.varying,
                       data=[RunPublic.from_entity(r) for r in runs])
