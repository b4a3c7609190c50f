"""The `marginscope` command: the engine's `train`, `demo` and `bench`, plus the server's commands.

    marginscope --version
    marginscope serve [--host 127.0.0.1] [--port 8000] [--db-url URL] [--data-dir DIR]
    marginscope db upgrade
    marginscope runs list | show ID | cancel ID | export ID --format csv|json|parquet
    marginscope bench ... [--db-url URL]

The engine's typer app (`marginscope.engine.cli.app`) gets these commands added here, and its `bench` gains
the store option (`--db-url`: record every training of the suite as a run of that store); the
engine never imports the backend. Every command reads the same settings as the server
(MARGINSCOPE_* variables, then the options) and works on the same store, so `runs` commands work
with or without a server.
`serve` refuses a non-loopback host unless MARGINSCOPE_TOKEN is set (the app factory's own check,
backend/security.py), a token under 16 characters, and a database it cannot serve (out of date,
naming `marginscope db upgrade`; from a newer MarginScope; damaged) in one line.
`--help`, `--version`, `serve`, `db` and `runs` never import torch (tests/test_torch_free.py):
the engine's commands import what trains inside themselves.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

try:
    from marginscope.engine.cli import app
except ImportError:  # the engine's CLI is optional for the server's commands
    app = typer.Typer(help="MarginScope", no_args_is_help=True, add_completion=False)

import marginscope
from marginscope.backend.settings import Settings
from marginscope.engine.config import describe_validation_error

db_app = typer.Typer(help="Database schema (Alembic migrations).", no_args_is_help=True)
runs_app = typer.Typer(help="Runs in the store (works with or without a server).", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(runs_app, name="runs")

DbUrl = typer.Option(None, "--db-url", help="SQLAlchemy URL [default: MARGINSCOPE_DB_URL or "
                     "<data dir>/marginscope.db]", show_default=False)
DataDir = typer.Option(None, "--data-dir", help="Datasets, checkpoints, SQLite [default: "
                       "MARGINSCOPE_DATA_DIR or ./data]", show_default=False)


def _print_version(wanted: bool) -> None:
    if wanted:
        typer.echo(f"marginscope {marginscope.__version__}")
        raise typer.Exit()


@app.callback()
def _options(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                          help="Print the installed version and exit.")) -> None:
    """The options of `marginscope` itself (the commands' are theirs)."""


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment with the given command-line values on top."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        _fail(describe_validation_error(exc))
    raise AssertionError("unreachable")


def _open_store(settings: Settings, *, check_pages: bool = False) -> Any:
    from marginscope.backend.store import StoreError, open_store

    try:
        return open_store(settings, check_pages=check_pages)
    except StoreError as exc:  # out-of-date schema (names the command), missing driver, unreachable
        _fail(str(exc), code=1)


# --------------------------------------------------------------------------- serve


@app.command()
def serve(
    host: str | None = typer.Option(None, help="Interface [default: MARGINSCOPE_HOST or 127.0.0.1]",
                                       show_default=False),
    port: int | None = typer.Option(None, help="Port [default: MARGINSCOPE_PORT or 8000]",
                                       show_default=False),
    db_url: str | None = DbUrl,
    data_dir: Path | None = DataDir,
) -> None:
    """Serve the dashboard and the API (and run queued trainings)."""
    import logging

    import uvicorn

    from marginscope.backend import collector
    from marginscope.backend.main import create_app
    from marginscope.backend.security import RefusedToServe, check_exposure

    settings = load_settings(host=host, port=port, db_url=db_url, data_dir=data_dir)  # token length
    try:
        check_exposure(settings)
    except RefusedToServe as exc:
        _fail(str(exc))
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    _open_store(settings, check_pages=True).close()  # checks before binding, with a readable message
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    shown = f"[{settings.host}]" if ":" in settings.host else settings.host
    typer.echo(f"MarginScope: http://{shown}:{settings.port}/  (API docs: /docs, data: {settings.data_dir})")
    served = create_app(settings)
    collector.tune()  # after the app exists: its objects live as long as the process
    uvicorn.run(served, host=settings.host, port=settings.port, log_level="info", timeout_graceful_shutdown=5)


# --------------------------------------------------------------------------- db


@db_app.command("upgrade")
def db_upgrade(db_url: str | None = DbUrl, data_dir: Path | None = DataDir) -> None:
    """Migrate the database to the newest schema (creates it if missing). A database from a newer
    MarginScope, or a damaged one, is refused in one line, like every other failure."""
    from alembic.util import CommandError
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from marginscope.backend.store import StoreError
    from marginscope.backend.store.db import describe_error, head_revision, upgrade

    settings = load_settings(db_url=db_url, data_dir=data_dir)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    shown = make_url(settings.db_url).render_as_string(hide_password=True)
    try:
        upgrade(settings.db_url)
    except StoreError as exc:  # its message names the database and what to do
        _fail(str(exc), code=1)
    except (SQLAlchemyError, CommandError, OSError) as exc:
        _fail(f"cannot migrate {shown}: {describe_error(exc)}", code=1)
    typer.echo(f"database {shown} is at revision {head_revision()}")


# --------------------------------------------------------------------------- runs


def _run_line(run: Any) -> str:
    total = f"/{run.total_steps}" if run.total_steps else ""
    acc = run.latest.get("val/best_accuracy")
    best = f"{acc:.2%}" if acc is not None else "-"
    return (f"{run.id:>5}  {run.status!s:<9}  {run.name[:24]:<24}  {run.dataset or '-':<10}  "
            f"{run.selector or '-':<12}  {run.step}{total:<8}  {best}")


@runs_app.command("list")
def runs_list(
    status: str | None = typer.Option(None, help="queued, running, finished, failed, cancelled, crashed"),
    limit: int = typer.Option(50, min=1),
    as_json: bool = typer.Option(False, "--json", help="Print RunPublic JSON."),
    db_url: str | None = DbUrl,
    data_dir: Path | None = DataDir,
) -> None:
    """List runs, newest first."""
    from marginscope.backend.schemas import run_json
    from marginscope.backend.store import InvalidArgument

    store = _open_store(load_settings(db_url=db_url, data_dir=data_dir))
    try:
        runs, count = store.list_runs(status=status, limit=limit)
    except InvalidArgument as exc:
        _fail(str(exc))
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps({"data": [run_json(r) for r in runs], "count": count}, indent=2))
        return
    typer.echo(f"{'id':>5}  {'status':<9}  {'name':<24}  {'dataset':<10}  {'selector':<12}  "
               f"{'step':<9}  best val")
    for run in runs:
        typer.echo(_run_line(run))
    typer.echo(f"({len(runs)} of {count})")


@runs_app.command("show")
def runs_show(run_id: int, db_url: str | None = DbUrl, data_dir: Path | None = DataDir) -> None:
    """Print one run as JSON."""
    from marginscope.backend.schemas import run_json
    from marginscope.backend.store import RunNotFound

    store = _open_store(load_settings(db_url=db_url, data_dir=data_dir))
    try:
        typer.echo(json.dumps(run_json(store.get_run(run_id)), indent=2))
    except RunNotFound as exc:
        _fail(str(exc), code=1)
    finally:
        store.close()


@runs_app.command("cancel")
def runs_cancel(
    run_id: int,
    wait: float = typer.Option(15.0, help="Seconds to wait for the worker to stop (SIGKILL after 10)."),
    db_url: str | None = DbUrl,
    data_dir: Path | None = DataDir,
) -> None:
    """Cancel a queued run, or stop a running one (SIGTERM, then SIGKILL)."""
    from marginscope.backend.launcher import Launcher
    from marginscope.backend.store import Conflict, RunNotFound

    settings = load_settings(db_url=db_url, data_dir=data_dir)
    store = _open_store(settings)
    try:
        launcher = Launcher(store, settings)
        run = launcher.cancel(run_id)
        run = launcher.wait_stopped(run_id, timeout=wait)
        typer.echo(f"run {run_id}: {run.status}")
    except (RunNotFound, Conflict) as exc:
        _fail(str(exc), code=1)
    finally:
        store.close()


@runs_app.command("export")
def runs_export(
    run_id: int,
    format: str = typer.Option("csv", help="csv, json or parquet"),
    out: Annotated[Path | None, typer.Option(help="File to write [default: run-<id>.<format>]")] = None,
    db_url: str | None = DbUrl,
    data_dir: Path | None = DataDir,
) -> None:
    """Write a run's scalars, histograms and selection counts to a file."""
    from marginscope.backend.extras import MissingExtra
    from marginscope.backend.routes.export import export_chunks
    from marginscope.backend.store import RunNotFound

    if format not in ("csv", "json", "parquet"):
        _fail(f"--format must be csv, json or parquet, not {format!r}")
    store = _open_store(load_settings(db_url=db_url, data_dir=data_dir))
    path = out or Path(f"run-{run_id}.{format}")
    try:
        run = store.get_run(run_id)
        chunks = export_chunks(store, run, format)  # type: ignore[arg-type]
        with path.open("wb") as file:
            size = sum(file.write(chunk) for chunk in chunks)
    except RunNotFound as exc:
        _fail(str(exc), code=1)
    except MissingExtra as exc:
        _fail(str(exc))
    finally:
        store.close()
    typer.echo(f"wrote {path} ({size:,} bytes)")


# --------------------------------------------------------------------------- bench


def _bench_records_runs(app: typer.Typer) -> None:
    """Give the engine's `bench` command the store option.

    The engine's command reads an optional tracker (marginscope.engine.bench.TrackRun) from its context
    object, `ctx.obj["track"]`. Here it is wrapped: the same parameters plus `--db-url` (default
    MARGINSCOPE_DB_URL; neither given: nothing is recorded), and a callback that opens that store,
    hands the command `marginscope.backend.recording.store_tracker` for it, and calls the engine's callback.
    Every training is then a run of the store (tagged with the benchmark id by the engine),
    recorded by `record_run` in this process (no dashboard involved)."""
    info = next((c for c in app.registered_commands
                 if c.callback is not None and (c.name or c.callback.__name__) == "bench"), None)
    if info is None or info.callback is None:
        return
    engine_bench = info.callback
    signature = inspect.signature(engine_bench, eval_str=True)
    context = next((p.name for p in signature.parameters.values() if p.annotation is typer.Context), None)
    if context is None:  # an engine whose bench takes no tracker: it stays as it is
        return

    def bench(**params: Any) -> Any:
        db_url = params.pop("db_url")
        if not db_url:
            return engine_bench(**params)
        from marginscope.backend.recording import store_tracker

        settings = load_settings(db_url=db_url)
        store = _open_store(settings)
        try:
            params[context].obj = {"track": store_tracker(store, heartbeat_interval=settings.heartbeat_interval)}
            return engine_bench(**params)
        finally:
            store.close()

    db_url = inspect.Parameter(
        "db_url", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=str | None,
        default=typer.Option(None, "--db-url", envvar="MARGINSCOPE_DB_URL", show_default=False,
                             help="Also record every run in this store, tagged with the benchmark id "
                                  "(default: MARGINSCOPE_DB_URL; neither given: not recorded)."))
    params = [*signature.parameters.values(), db_url]
    bench.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    bench.__annotations__ = {p.name: p.annotation for p in params}
    bench.__doc__ = engine_bench.__doc__
    info.callback = bench


_bench_records_runs(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
