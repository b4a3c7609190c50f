"""The server's commands: serve's safety checks, db upgrade, runs list/show/cancel/export."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from marginscope.backend.cli import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MARGINSCOPE_TOKEN", "MARGINSCOPE_DB_URL", "MARGINSCOPE_DATA_DIR", "MARGINSCOPE_HOST"):
        monkeypatch.delenv(name, raising=False)


def test_serve_refuses_a_public_host_without_a_token(tmp_path: Path) -> None:
    result = runner.invoke(app, ["serve", "--host", "0.0.0.0", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "MARGINSCOPE_TOKEN" in result.output


def test_serve_refuses_an_out_of_date_schema(tmp_path: Path) -> None:
    result = runner.invoke(app, ["serve", "--data-dir", str(tmp_path / "fresh"), "--port", "1"])
    assert result.exit_code == 1
    assert "marginscope db upgrade" in result.output


def test_db_upgrade_then_runs_commands(tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path)]
    assert runner.invoke(app, ["db", "upgrade", *data]).exit_code == 0
    assert runner.invoke(app, ["db", "upgrade", *data]).exit_code == 0  # idempotent

    from marginscope.backend.settings import Settings
    from marginscope.backend.store import open_store

    store = open_store(Settings(data_dir=tmp_path))
    run = store.create_run(name="cli-run", config={"dataset": "digits"})
    store.close()

    listing = runner.invoke(app, ["runs", "list", *data])
    assert listing.exit_code == 0 and "cli-run" in listing.output and "queued" in listing.output
    as_json = json.loads(runner.invoke(app, ["runs", "list", "--json", *data]).output)
    assert as_json["count"] == 1 and as_json["data"][0]["id"] == run.id
    shown = json.loads(runner.invoke(app, ["runs", "show", str(run.id), *data]).output)
    assert shown["name"] == "cli-run"
    assert runner.invoke(app, ["runs", "show", "999", *data]).exit_code == 1
    assert runner.invoke(app, ["runs", "list", "--status", "bogus", *data]).exit_code == 2

    out = tmp_path / "export.csv"
    exported = runner.invoke(app, ["runs", "export", str(run.id), "--out", str(out), *data])
    assert exported.exit_code == 0
    assert next(csv.reader(out.open()))[:3] == ["kind", "key", "step"]
    assert runner.invoke(app, ["runs", "export", str(run.id), "--format", "xml", *data]).exit_code == 2

    cancelled = runner.invoke(app, ["runs", "cancel", str(run.id), *data])
    assert cancelled.exit_code == 0 and "cancelled" in cancelled.output
    again = runner.invoke(app, ["runs", "cancel", str(run.id), *data])
    assert again.exit_code == 1 and "already cancelled" in again.output
