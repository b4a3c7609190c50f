"""REST tests of /api/runs: happy paths and every bad input (404, 409, 422, 401 with a token)."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from api_helpers import TINY, TOKEN, create
from fastapi.testclient import TestClient
from store_events import counters, run_started, step_metrics

from marginscope.backend.recording import write_events
from marginscope.backend.settings import Settings
from marginscope.backend.store import RunStatus
from marginscope.backend.store.sqlalchemy_store import SqlAlchemyStore
from marginscope.engine.events import CheckpointSaved

pytest_plugins = ["api_fixtures"]


# --------------------------------------------------------------------------- create


def test_create_queues_a_run(client: TestClient) -> None:
    r = client.post("/api/runs", json={"name": "first", "config": TINY, "tags": ["a"], "notes": "n"})
    assert r.status_code == 201
    run = r.json()
    assert run["status"] == "queued" and run["name"] == "first" and run["tags"] == ["a"]
    assert run["config"]["candidates"] == 64 and run["selector"] == "mms"
    assert run["progress"] == {"step": 0, "total_steps": None, "epoch": 0.0}


def test_a_run_shows_exactly_the_documented_fields(client: TestClient) -> None:
    """RunPublic is derived from the store's Run: a new entity field is shown or hidden on purpose."""
    run = create(client)
    assert list(run) == [  # docs/api.md, in order
        "id", "name", "status", "config", "dataset", "model", "selector", "candidates", "batch_size",
        "created_at", "started_at", "finished_at", "heartbeat_at", "pid", "host", "error",
        "traceback", "tags", "notes", "progress", "latest", "queue_position", "checkpoint_step", "attempt", "executor",
        "stop_requested", "launcher", "summary"]
    assert client.get(f"/api/runs/{run['id']}").json() == run


def test_create_forces_the_server_data_dir(client: TestClient, settings: Settings) -> None:
    run = create(client)
    assert run["config"]["data_dir"] == str(settings.data_dir)


@pytest.mark.parametrize(("field", "value"), [
    ("batch_size", 0), ("candidates", "many"), ("lr", -1), ("selector", "nope"), ("device", "tpu"),
])
def test_create_bad_config_is_422_naming_the_field(client: TestClient, field: str, value: object) -> None:
    r = client.post("/api/runs", json={"config": {**TINY, field: value}})
    assert r.status_code == 422
    assert ["body", "config", field] in [e["loc"][:3] for e in r.json()["detail"]]


def test_create_unknown_field_is_422(client: TestClient) -> None:
    r = client.post("/api/runs", json={"config": {**TINY, "bogus": 1}})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "config", "bogus"]


def test_create_cross_field_rule_is_422(client: TestClient) -> None:
    r = client.post("/api/runs", json={"config": {**TINY, "candidates": 8, "batch_size": 16}})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"][:2] == ["body", "config"]
    assert "candidates" in r.json()["detail"][0]["msg"]


@pytest.mark.parametrize(("field", "value"), [
    ("dataset", "imagefolder:/etc"), ("dataset", "imagefolder:../../outside"), ("dataset", "imagefolder:"),
    ("data_dir", "/tmp"), ("out_dir", "/tmp/elsewhere"), ("resume_from", "/tmp/x.pt"),
])
def test_create_paths_outside_the_data_dir_are_422(client: TestClient, field: str, value: str) -> None:
    r = client.post("/api/runs", json={"config": {**TINY, field: value}})
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["body", "config", field]


def test_create_imagefolder_inside_the_data_dir_is_accepted(client: TestClient) -> None:
    run = create(client, dataset="imagefolder:my-images")
    assert run["dataset"] == "imagefolder:my-images"


def test_create_bad_body_is_422(client: TestClient) -> None:
    assert client.post("/api/runs", content=b"not json",
                       headers={"content-type": "application/json"}).status_code == 422
    assert client.post("/api/runs", json={"config": TINY, "tags": "x"}).status_code == 422


# --------------------------------------------------------------------------- list / get / patch


def test_list_filters_sorts_and_paginates(client: TestClient) -> None:
    a = create(client, selector="mms")
    b = create(client, selector="uniform")
    client.patch(f"/api/runs/{b['id']}", json={"tags": ["keep"]})
    page = client.get("/api/runs").json()
    assert page["count"] == 2 and [r["id"] for r in page["data"]] == [b["id"], a["id"]]
    assert [r["id"] for r in client.get("/api/runs?sort=id").json()["data"]] == [a["id"], b["id"]]
    assert client.get("/api/runs?selector=uniform").json()["count"] == 1
    assert client.get("/api/runs?tag=keep").json()["data"][0]["id"] == b["id"]
    assert client.get("/api/runs?status=queued,running").json()["count"] == 2
    assert client.get("/api/runs?status=finished").json()["count"] == 0
    one = client.get("/api/runs?limit=1&offset=1&sort=id").json()
    assert one["count"] == 2 and [r["id"] for r in one["data"]] == [b["id"]]


@pytest.mark.parametrize("query", ["sort=bogus", "limit=0", "offset=-1", "status=nope"])
def test_list_bad_query_is_422(client: TestClient, query: str) -> None:
    assert client.get(f"/api/runs?{query}").status_code == 422


def test_get_unknown_is_404_and_malformed_is_422(client: TestClient) -> None:
    assert client.get("/api/runs/999").status_code == 404
    assert "999" in client.get("/api/runs/999").json()["detail"]
    assert client.get("/api/runs/abc").status_code == 422
    for huge in (2**31, 2**63, 10**20):  # past the id column: unknown, not a database error
        assert client.get(f"/api/runs/{huge}").status_code == 404
        assert client.post(f"/api/runs/{huge}/cancel").status_code == 404
        assert client.delete(f"/api/runs/{huge}").status_code == 404


@pytest.mark.parametrize(("body", "loc"), [
    ({"name": "a\x00b"}, ["body", "name"]),
    ({"notes": "\x00"}, ["body", "notes"]),
    ({"notes": "x" * 20001}, ["body", "notes"]),
    ({"tags": ["ok\x00"]}, ["body", "tags", 0]),
    ({"tags": ["ok", "x" * 101]}, ["body", "tags", 1]),
    ({"config": {"dataset": "digits\x00"}}, ["body", "config", "dataset"]),
    ({"config": {"dataset": "imagefolder:" + "x" * 400}}, ["body", "config", "dataset"]),
    ({"config": {"model": "m" * 101}}, ["body", "config", "model"]),
    ({"config": {"steps": 2**31}}, ["body", "config", "steps"]),
    ({"config": {"out_dir": "a\x00b"}}, ["body", "config", "out_dir"]),
])
def test_create_text_no_backend_can_keep_is_422(client: TestClient, body: dict[str, object],
                                                loc: list[object]) -> None:
    """NUL characters and text past a column's length: PostgreSQL would refuse them with a 500."""
    body = dict(body)  # the parameters are shared by both database backends: pop from a copy
    config = {**TINY, **body.pop("config", {})}  # type: ignore[dict-item]
    r = client.post("/api/runs", json={**body, "config": config})
    assert r.status_code == 422, r.text
    assert loc in [e["loc"] for e in r.json()["detail"]]


def test_patch_changes_only_given_fields(client: TestClient) -> None:
    run = create(client)
    r = client.patch(f"/api/runs/{run['id']}", json={"notes": "hello"})
    assert r.status_code == 200 and r.json()["notes"] == "hello" and r.json()["name"] == run["name"]
    r = client.patch(f"/api/runs/{run['id']}", json={"name": "renamed", "tags": ["x", "y"]})
    assert r.json()["name"] == "renamed" and r.json()["tags"] == ["x", "y"] and r.json()["notes"] == "hello"
    assert client.patch("/api/runs/999", json={"notes": "x"}).status_code == 404
    for blank in ("", "  "):
        r = client.patch(f"/api/runs/{run['id']}", json={"name": blank})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "name"]
    r = client.patch(f"/api/runs/{run['id']}", json={"tags": ["ok", "t" * 101]})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "tags", 1]
    assert client.patch(f"/api/runs/{run['id']}", json={"tags": "x"}).status_code == 422


# --------------------------------------------------------------------------- cancel / resume / delete


def test_cancel_queued_is_immediate_and_cancel_again_is_409(client: TestClient) -> None:
    run = create(client)
    r = client.post(f"/api/runs/{run['id']}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert client.post(f"/api/runs/{run['id']}/cancel").status_code == 409
    assert client.post("/api/runs/999/cancel").status_code == 404


def test_cancel_running_signals_the_worker_group(client: TestClient, store: SqlAlchemyStore) -> None:
    run = create(client)
    # a stand-in worker: its command line names the run like the real one's
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "marginscope.backend.worker",
                             str(run["id"])], start_new_session=True)
    try:
        store.set_status(run["id"], RunStatus.RUNNING, pid=proc.pid, host=socket.gethostname())
        r = client.post(f"/api/runs/{run['id']}/cancel")
        assert r.status_code == 200 and r.json()["status"] == "running"  # stopping, not yet stopped
        assert proc.wait(timeout=10) == -signal.SIGTERM
        client.app.state.launcher.tick()  # type: ignore[attr-defined]
        assert client.get(f"/api/runs/{run['id']}").json()["status"] == "cancelled"
    finally:
        proc.kill()
        proc.wait()


def test_cancel_never_signals_a_recycled_pid(client: TestClient, store: SqlAlchemyStore) -> None:
    """The recorded pid now belongs to an unrelated process (the worker died, the pid was reused):
    that process is left alone and the run ends as cancelled at once."""
    run = create(client)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                             start_new_session=True)
    try:
        store.set_status(run["id"], RunStatus.RUNNING, pid=other.pid, host=socket.gethostname())
        r = client.post(f"/api/runs/{run['id']}/cancel")
        assert r.status_code == 200 and r.json()["status"] == "cancelled"
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


def test_resume_waits_for_the_previous_worker_to_exit(client: TestClient, store: SqlAlchemyStore,
                                                      tmp_path: Path) -> None:
    run = create(client)
    rid = run["id"]
    old = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "marginscope.backend.worker",
                            str(rid)], start_new_session=True)
    try:
        store.set_status(rid, RunStatus.RUNNING, pid=old.pid, host=socket.gethostname())
        ckpt = tmp_path / "ckpt.pt"
        ckpt.write_bytes(b"x")
        write_events(store, rid, [CheckpointSaved(counters=counters(1), path=str(ckpt))])
        store.set_status(rid, RunStatus.CANCELLED)  # recorded, but that worker is still stopping
        check = client.get(f"/api/runs/{rid}/resume").json()
        r = client.post(f"/api/runs/{rid}/resume")
        assert r.status_code == 409 and "still stopping" in r.json()["detail"]
        assert check == {"can_resume": False, "reason": r.json()["detail"], "wait": True}
    finally:
        old.kill()
        old.wait()
    assert client.get(f"/api/runs/{rid}/resume").json() == {"can_resume": True, "reason": None, "wait": False}
    assert client.post(f"/api/runs/{rid}/resume").json()["status"] == "queued"


def test_resume_needs_crashed_or_cancelled_with_a_checkpoint(client: TestClient, store: SqlAlchemyStore,
                                                             tmp_path: Path) -> None:
    run = create(client)
    rid = run["id"]

    def refused(wait: bool) -> str:
        """The POST's 409, after the GET said the same in advance."""
        check = client.get(f"/api/runs/{rid}/resume").json()
        r = client.post(f"/api/runs/{rid}/resume")
        assert r.status_code == 409
        assert check == {"can_resume": False, "reason": r.json()["detail"], "wait": wait}
        return str(r.json()["detail"])

    refused(wait=False)  # queued
    store.set_status(rid, RunStatus.RUNNING)
    assert "running" in refused(wait=True)  # it ends (or stops) by itself
    write_events(store, rid, [run_started(), step_metrics(1)])
    store.set_status(rid, RunStatus.CRASHED, error="boom")
    assert "checkpoint" in refused(wait=False)
    ckpt = tmp_path / "ckpt.pt"
    ckpt.write_bytes(b"x")
    write_events(store, rid, [CheckpointSaved(counters=counters(1), path=str(ckpt))])
    assert client.get(f"/api/runs/{rid}/resume").json()["can_resume"] is True
    r = client.post(f"/api/runs/{rid}/resume")
    assert r.status_code == 200 and r.json()["status"] == "queued" and r.json()["error"] is None
    assert client.post("/api/runs/999/resume").status_code == 404
    assert client.get("/api/runs/999/resume").status_code == 404


def test_delete_removes_the_run_and_its_files(client: TestClient, store: SqlAlchemyStore) -> None:
    run = create(client)
    folder = Path(store.run_dir(run["id"]))
    folder.mkdir(parents=True)
    (folder / "worker.log").write_text("x")
    assert client.delete(f"/api/runs/{run['id']}").status_code == 204
    assert client.get(f"/api/runs/{run['id']}").status_code == 404
    assert not folder.exists()
    assert client.delete(f"/api/runs/{run['id']}").status_code == 404


def test_delete_running_is_409(client: TestClient, store: SqlAlchemyStore) -> None:
    run = create(client)
    store.set_status(run["id"], RunStatus.RUNNING)
    r = client.delete(f"/api/runs/{run['id']}")
    assert r.status_code == 409 and r.json()["detail"]


def test_logs_after_a_seq(client: TestClient, store: SqlAlchemyStore) -> None:
    run = create(client)
    first = store.append_log(run["id"], "info", "one")
    store.append_log(run["id"], "warning", "two")
    data = client.get(f"/api/runs/{run['id']}/logs").json()
    assert [line["message"] for line in data["data"]][-2:] == ["one", "two"]
    after = client.get(f"/api/runs/{run['id']}/logs?after={first}").json()
    assert [line["message"] for line in after["data"]] == ["two"] and after["count"] == 1
    assert client.get("/api/runs/999/logs").status_code == 404
    assert client.get(f"/api/runs/{run['id']}/logs?after=-1").status_code == 422


# --------------------------------------------------------------------------- token and errors


def test_token_guards_mutations_not_reads(token_client: TestClient) -> None:
    c = token_client
    assert c.post("/api/runs", json={"config": TINY}).status_code == 401
    assert c.post("/api/runs", json={"config": TINY},
                  headers={"Authorization": "Bearer wrong"}).status_code == 401
    r = c.post("/api/runs", json={"config": TINY}, headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 201
    rid = r.json()["id"]
    assert c.get("/api/runs").status_code == 200 and c.get(f"/api/runs/{rid}").status_code == 200
    assert c.patch(f"/api/runs/{rid}", json={"notes": "x"}).status_code == 401
    assert c.post(f"/api/runs/{rid}/cancel").status_code == 401
    assert c.delete(f"/api/runs/{rid}").status_code == 401
    assert c.post(f"/api/runs/{rid}/cancel?token={TOKEN}").status_code == 401  # never in a URL
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert c.post(f"/api/runs/{rid}/cancel", headers=auth).status_code == 200
    assert c.delete(f"/api/runs/{rid}", headers=auth).status_code == 204


def test_a_database_error_is_a_json_500(settings: Settings) -> None:
    from sqlalchemy import text

    from marginscope.backend.main import create_app
    from marginscope.backend.store.db import make_engine

    with TestClient(create_app(settings, supervise=False), raise_server_exceptions=False) as c:
        rid = create(c)["id"]
        engine = make_engine(settings.db_url)
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE run_logs"))  # a broken database, not a mock
        engine.dispose()
        r = c.get(f"/api/runs/{rid}/logs")
        assert r.status_code == 500
        assert r.headers["content-type"].startswith("application/json")
        assert "Traceback" not in r.text and r.json()["detail"]
