"""GET/HEAD /api/runs/{id}/checkpoint: the run's checkpoint file from its folder on this server,
a clear 404 without one, never a path a trainer reported, and the access rules of every read."""

from __future__ import annotations

from pathlib import Path

from api_helpers import TINY, TOKEN, create
from fastapi.testclient import TestClient
from store_events import counters

from marginscope.backend.main import create_app
from marginscope.backend.recording import write_events
from marginscope.backend.settings import Settings
from marginscope.backend.store.sqlalchemy_store import SqlAlchemyStore
from marginscope.backend.worker import CHECKPOINT
from marginscope.engine.events import CheckpointSaved

pytest_plugins = ["api_fixtures"]

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def put_checkpoint(store: SqlAlchemyStore, run_id: int, data: bytes) -> Path:
    """The file a worker leaves in the run's folder, and the event that reports it."""
    path = Path(store.run_dir(run_id)) / CHECKPOINT
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    write_events(store, run_id, [CheckpointSaved(counters=counters(10), path=str(path))])
    return path


def test_the_checkpoint_downloads_as_a_named_file(client: TestClient, store: SqlAlchemyStore) -> None:
    rid = create(client)["id"]
    data = bytes(range(256)) * 5000  # over one chunk of the stream
    put_checkpoint(store, rid, data)
    r = client.get(f"/api/runs/{rid}/checkpoint")
    assert r.status_code == 200 and r.content == data
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.headers["content-disposition"] == f'attachment; filename="run-{rid}-checkpoint.pt"'
    assert r.headers["content-length"] == str(len(data))
    head = client.head(f"/api/runs/{rid}/checkpoint")
    assert head.status_code == 200 and head.content == b"" and head.headers["content-length"] == str(len(data))


def test_no_checkpoint_is_a_404_saying_so(client: TestClient) -> None:
    rid = create(client)["id"]
    r = client.get(f"/api/runs/{rid}/checkpoint")
    assert r.status_code == 404 and f"run {rid} has no checkpoint on this server" in r.json()["detail"]
    assert client.head(f"/api/runs/{rid}/checkpoint").status_code == 404
    assert client.get("/api/runs/999/checkpoint").status_code == 404
    assert "999" in client.get("/api/runs/999/checkpoint").json()["detail"]


def test_a_reported_path_elsewhere_is_never_served(client: TestClient, store: SqlAlchemyStore,
                                                   tmp_path: Path) -> None:
    """A trainer (a remote one, with its run credential) names any path it likes: not a download."""
    rid = create(client)["id"]
    secret = tmp_path / "elsewhere.txt"
    secret.write_text("not the dashboard's to hand out")
    write_events(store, rid, [CheckpointSaved(counters=counters(10), path=str(secret))])
    assert client.get(f"/api/runs/{rid}").json()["checkpoint_step"] == 10
    assert client.get(f"/api/runs/{rid}/checkpoint").status_code == 404


def test_the_download_takes_the_access_of_every_read(settings: Settings, store: SqlAlchemyStore) -> None:
    app = create_app(settings.model_copy(update={"token": TOKEN, "protect_reads": True}), supervise=False)
    with TestClient(app) as c:
        rid = c.post("/api/runs", json={"config": TINY}, headers=AUTH).json()["id"]
        put_checkpoint(store, rid, b"weights")
        assert c.get(f"/api/runs/{rid}/checkpoint").status_code == 401
        assert c.get(f"/api/runs/{rid}/checkpoint", headers=AUTH).content == b"weights"
        assert c.post("/api/session", json={"token": TOKEN}).status_code == 204
        assert c.get(f"/api/runs/{rid}/checkpoint").content == b"weights"  # a link: the session cookie
