"""The Dask executor on a real `distributed.LocalCluster` (loopback only, one worker process).

A dashboard (`marginscope serve` with MARGINSCOPE_EXECUTOR=dask) submits each queued run to the
cluster; the task trains it with `marginscope.backend.worker.train_run(<id>, ...)`, as a local worker
does, and reports back over the ingest API with the run's own credential. Checked: a launched run trains to the end with its steps arriving while it runs,
a cancel from the dashboard ends it (the heartbeat's stop flag), and a killed Dask worker leaves
its run crashed, which then resumes on the cluster from its checkpoint.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from servers import wait_for
from test_two_dashboards import TINY, Dashboard

from marginscope.backend.store.db import upgrade

pytestmark = pytest.mark.slow

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    # the worker processes inherit the environment: spooled events stay in the test's folder
    saved = os.environ.get("MARGINSCOPE_SPOOL_DIR")
    os.environ["MARGINSCOPE_SPOOL_DIR"] = str(tmp_path_factory.mktemp("spool"))
    with distributed.LocalCluster(host="127.0.0.1", processes=True, dashboard_address=None, n_workers=1,
                                  threads_per_worker=2, silence_logs=40) as c:
        yield c
    if saved is None:
        os.environ.pop("MARGINSCOPE_SPOOL_DIR", None)
    else:
        os.environ["MARGINSCOPE_SPOOL_DIR"] = saved


@pytest.fixture(scope="module")
def dashboard(cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    data_dir = tmp_path_factory.mktemp("dask-dashboard")
    db_url = f"sqlite:///{data_dir / 'marginscope.db'}"
    upgrade(db_url)
    d = Dashboard(data_dir, db_url)
    d.env.update({"MARGINSCOPE_EXECUTOR": "dask", "MARGINSCOPE_DASK_SCHEDULER": cluster.scheduler_address,
                  "MARGINSCOPE_STALE_AFTER": "20"})
    d.start()
    yield d
    d.stop()


def _training(d: Dashboard, run_id: int) -> bool:
    run = d.run(run_id)
    assert run["status"] in ("queued", "running"), run
    return run["status"] == "running" and run["progress"]["step"] > 0


def test_a_run_trains_on_the_cluster_and_reports_live(dashboard: Dashboard) -> None:
    run = dashboard.post("/api/runs", {"name": "on-dask", "config": {**TINY, "steps": 300}}, expect=201)
    steps_seen: list[int] = []

    def finished() -> bool:
        now = dashboard.run(run["id"])
        if now["status"] == "running":
            steps_seen.append(now["progress"]["step"])
        return now["status"] in ("finished", "failed", "crashed", "cancelled")

    wait_for(finished, "the run to end on the cluster")
    done = dashboard.run(run["id"])
    assert done["status"] == "finished", done
    assert done["progress"]["step"] == 300 and done["executor"] == "remote"
    assert len({s for s in steps_seen if 0 < s < 300}) >= 2  # its steps arrived while it trained


def test_cancel_from_the_dashboard_reaches_the_dask_task(dashboard: Dashboard) -> None:
    run = dashboard.post("/api/runs", {"name": "cancel-me", "config": {**TINY, "steps": 100_000}},
                         expect=201)
    wait_for(lambda: _training(dashboard, run["id"]), "the run to train on the cluster")
    dashboard.post(f"/api/runs/{run['id']}/cancel")
    wait_for(lambda: dashboard.run(run["id"])["status"] != "running", "the run to stop", 120)
    assert dashboard.run(run["id"])["status"] == "cancelled"


def test_a_killed_dask_worker_leaves_its_run_crashed_and_it_resumes(dashboard: Dashboard,
                                                                     cluster: Any) -> None:
    """The Dask worker dies (its nanny starts another): the run is crashed; resumed, a new task
    continues it from its checkpoint in the run folder (shared with the cluster here), sending
    first what the killed task spooled, so its series is one continuous curve."""
    config = {**TINY, "steps": 300, "checkpoint_every": 20, "eval_every": 100}
    run = dashboard.post("/api/runs", {"name": "lost", "config": config}, expect=201)
    wait_for(lambda: _training(dashboard, run["id"]) and (dashboard.run(run["id"])["checkpoint_step"] or 0) >= 20,
             "the run to train and checkpoint on the cluster")
    with distributed.Client(cluster, set_as_default=False) as client:
        pids = client.run(os.getpid)
    assert dashboard.run(run["id"])["pid"] in pids.values()  # it trains in that worker process
    for pid in pids.values():
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: dashboard.run(run["id"])["status"] != "running", "the run to be marked crashed", 120)
    crashed = dashboard.run(run["id"])
    assert crashed["status"] == "crashed", crashed
    assert crashed["progress"]["step"] < 300, "the run ended before the kill: make it longer"

    assert dashboard.post(f"/api/runs/{run['id']}/resume")["status"] == "queued"
    wait_for(lambda: dashboard.run(run["id"])["status"] not in ("queued", "running"), "the resumed run", 240)
    done = dashboard.run(run["id"])
    assert done["status"] == "finished", done
    loss = dashboard.get(f"/api/runs/{run['id']}/metrics?keys=train/loss&max_points=10000")
    assert loss["series"]["train/loss"]["step"] == list(range(5, 301, 5))
    logs = [line["message"] for line in dashboard.get(f"/api/runs/{run['id']}/logs")["data"]]
    assert any(m.startswith("resuming from the checkpoint") for m in logs)


def test_dask_needs_a_scheduler_address(tmp_path: Path) -> None:
    from marginscope.backend.executors import ExecutorError, make_executor
    from marginscope.backend.settings import Settings

    with pytest.raises(ExecutorError, match="MARGINSCOPE_DASK_SCHEDULER"):
        make_executor(Settings(data_dir=tmp_path, executor="dask"))


def test_dask_without_its_extra_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The server says at start-up, in one line, which extra brings the Dask executor."""
    from marginscope.backend.executors import ExecutorError, make_executor
    from marginscope.backend.settings import Settings

    monkeypatch.setitem(sys.modules, "distributed", None)  # importing it now raises ImportError
    with pytest.raises(ExecutorError, match=r"pip install 'marginscope\[dask\]'"):
        make_executor(Settings(data_dir=tmp_path, executor="dask", dask_scheduler="tcp://127.0.0.1:1"))
