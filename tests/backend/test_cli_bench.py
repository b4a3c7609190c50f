"""`marginscope bench` with the store option: the backend's CLI wraps the engine's command, adding
`--db-url` (default MARGINSCOPE_DB_URL) and handing it a tracker that records every training of
the suite as a run of that store."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from marginscope.backend.cli import app
from marginscope.backend.settings import Settings
from marginscope.backend.store import RunStatus
from marginscope.backend.store.sqlalchemy_store import SqlAlchemyStore



def tiny_suite(out: Path, selectors: str = "uniform,mms", steps: int = 20) -> list[str]:
    return ["bench", "--dataset", "digits", "--steps", str(steps), "--candidates", "64", "--batch-size",
            "16", "--seeds", "0", "--selectors", selectors, "--eval-every", "10", "--chunk", "32",
            "--threads", "1", "--id", "bench-test", "--data-dir", str(out.parent / "datasets"),
            "--out", str(out)]


def test_bench_has_the_store_option() -> None:
    result = CliRunner().invoke(app, ["bench", "--help"], terminal_width=200)
    assert result.exit_code == 0 and "--db-url" in result.output and "--quick" in result.output


def test_bench_records_every_training_in_the_configured_store(settings: Settings, store: SqlAlchemyStore,
                                                               tmp_path: Path) -> None:
    env = {"MARGINSCOPE_DB_URL": settings.db_url, "MARGINSCOPE_DATA_DIR": str(settings.data_dir)}
    result = CliRunner().invoke(app, tiny_suite(tmp_path / "out"), env=env)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "results.md").is_file()
    runs, count = store.list_runs(tag="bench-test")
    assert count == 2
    assert {r.status for r in runs} == {RunStatus.FINISHED}
    assert {t for r in runs for t in r.tags if t.startswith("arm:")} == {"arm:uniform", "arm:mms"}
    for run in runs:
        assert run.step == 20 and run.summary.get("test_accuracy") is not None
        assert run.pid and run.started_at and run.finished_at  # recorded by record_run, like a worker's
        lines = [line.message for line in store.get_logs(run.id)]
        assert [m for m in lines if m.startswith("status")] == \
            [f"status queued → running (pid {run.pid} on {run.host})"]


def test_bench_refuses_a_store_it_cannot_use_before_training(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'never-migrated.db'}"
    result = CliRunner().invoke(app, [*tiny_suite(tmp_path / "out"), "--db-url", url],
                                env={"MARGINSCOPE_DATA_DIR": str(tmp_path)})
    assert result.exit_code == 1 and "db upgrade" in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("given", ["", "--db-url="])
def test_bench_without_a_store_records_nothing(tmp_path: Path, given: str) -> None:
    """Neither --db-url nor MARGINSCOPE_DB_URL (or an empty one): the suite runs, no store is opened."""
    data = tmp_path / "data"
    args = tiny_suite(tmp_path / "out", selectors="uniform", steps=10)
    result = CliRunner().invoke(app, [*args, *([given] if given else [])],
                                env={"MARGINSCOPE_DB_URL": None, "MARGINSCOPE_DATA_DIR": str(data)})
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "results.md").is_file()
    assert not (data / "marginscope.db").exists()
