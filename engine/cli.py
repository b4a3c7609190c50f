"""The engine's command line: `marginscope train`, `demo`, `bench` and `sync`.

`train` exposes every TrainConfig field as an option, generated from the pydantic model so the
CLI can never drift from the config. Values are parsed by pydantic (the same rules as the API);
a bad value exits with status 2 and a one-line message naming the field. `train --server URL`
trains here and streams the run to a dashboard (marginscope.engine.remote); `sync DIR` uploads a spooled run. The backend adds its
own commands (serve, db, runs) to this app in backend/cli.py and gives `bench` its store option
(a tracker handed in through the command's context); the engine never imports the backend.

This module imports without torch (the config and the default arms are plain Python; everything
that trains is imported inside the command that needs it), so `marginscope --help`, `runs`, `db`
and `serve` never load it.
"""

from __future__ import annotations

import inspect
import json
import sys
from pathlib import Path
from typing import Any, Optional

import typer
from pydantic import ValidationError

from marginscope.engine.bench.arms import DEFAULT_ARMS
from marginscope.engine.config import TrainConfig, describe_validation_error

app = typer.Typer(help="MarginScope: train image classifiers with Minimal-Margin-Score selective sampling.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)


def fail(message: str) -> None:
    """One line on stderr, exit status 2: how every bad option ends."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def load_config_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        fail(f"--config {path}: no such file")
    text = path.read_text()
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            data = json.loads(text)
    except Exception as exc:  # noqa: BLE001 - any parse error becomes one line
        fail(f"--config {path}: cannot parse ({exc})")
    if not isinstance(data, dict):
        fail(f"--config {path}: expected a mapping of config fields")
    return data


def _parse_value(name: str, raw: str) -> Any:
    """Structured fields (regime lists, selector options) are given as JSON on the command line."""
    field = TrainConfig.model_fields[name]
    structured = name in ("regime", "selector_options")
    if structured and raw.strip()[:1] in "[{":
        try:
            return json.loads(raw)
        except json.JSONDecodeError as exc:
            fail(f"--{name.replace('_', '-')}: not valid JSON ({exc.msg})")
    if raw.lower() in ("none", "null") and not field.is_required() and field.default is None:
        return None
    return raw


def build_config(overrides: dict[str, Optional[str]], config_file: Optional[Path]) -> TrainConfig:
    values = load_config_file(config_file) if config_file else {}
    values.update({k: _parse_value(k, v) for k, v in overrides.items() if v is not None})
    try:
        return TrainConfig.from_text(values)
    except ValidationError as exc:
        fail(describe_validation_error(exc))
    raise AssertionError("unreachable")


def run_training(config: TrainConfig, *, out: Optional[Path], label: str, quiet: bool = False):
    """Train with a progress bar (and an event log under `out`); bad data setups exit 2."""
    from marginscope.engine.callbacks import JsonlWriter, ProgressBar
    from marginscope.engine.data import DatasetUnavailable
    from marginscope.engine.distributed import env_rank
    from marginscope.engine.loop import train

    main_rank = env_rank() == 0  # under torchrun only rank 0 reports (it alone calls callbacks)
    callbacks: list = [] if quiet or not main_rank else [ProgressBar(label)]
    if out is not None and not main_rank:
        config = config if config.out_dir is not None else config.model_copy(update={"out_dir": str(out)})
        out = None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        callbacks.append(JsonlWriter(out / "events.jsonl"))
        if config.out_dir is None:
            config = config.model_copy(update={"out_dir": str(out)})
    try:
        result = train(config, callbacks)
    except DatasetUnavailable as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted")
    if out is not None:
        (out / "summary.json").write_text(json.dumps(result.summary, indent=2))
    return result


def run_remote_training(config: TrainConfig, *, server: str, token: Optional[str], out: Optional[Path],
                        label: str) -> Any:
    """Train here, reporting to the dashboard at `server` (marginscope.engine.remote); SIGTERM / Ctrl-C stop
    the run cleanly with a checkpoint, as a cancel from the dashboard does."""
    import signal
    import threading

    from marginscope.engine.callbacks import JsonlWriter, ProgressBar
    from marginscope.engine.data import DatasetUnavailable
    from marginscope.engine.remote import RemoteRefused, train_remote
    from marginscope.engine.loop import TrainResult

    callbacks: list = [ProgressBar(label)]
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        callbacks.append(JsonlWriter(out / "events.jsonl"))
        if config.out_dir is None:
            config = config.model_copy(update={"out_dir": str(out)})
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        typer.echo(f"signal {signum}: stopping after the current step (with a checkpoint)", err=True)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        summary = train_remote(config, server=server, token=token, callbacks=callbacks,
                               should_stop=stop.is_set)
    except DatasetUnavailable as exc:
        fail(str(exc))
    except RemoteRefused as exc:
        fail(str(exc))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    typer.echo(f"run {summary['run_id']} on {server}; its events are kept in {summary['spool']}")
    fields = {k: summary[k] for k in TrainResult.__dataclass_fields__ if k in summary}
    result = TrainResult(**fields)
    if out is not None:
        (out / "summary.json").write_text(json.dumps(result.summary, indent=2))
    return result


def _train_command(**kwargs: Any) -> None:
    from marginscope.engine.distributed import env_rank, env_world_size

    config_file = kwargs.pop("config")
    out = kwargs.pop("out")
    server, token = kwargs.pop("server"), kwargs.pop("token")
    config = build_config(kwargs, config_file)
    if config.nproc > 1 and env_world_size() == 1:
        _run_under_torchrun(config.nproc)
    if server and env_rank() == 0:  # under torchrun, rank 0 alone reports (engine/distributed.py)
        result = run_remote_training(config, server=server, token=token, out=out, label=config.selector)
    else:
        result = run_training(config, out=out, label=config.selector)
    if env_rank() != 0:
        return
    test = f"{result.test_accuracy:.2%}" if result.test_accuracy is not None else "n/a"
    typer.echo(
        f"{result.status}: {result.steps} steps, best val {result.best_val_accuracy:.2%} "
        f"(step {result.best_val_step}), test {test}, {result.wall_time:.1f} s training, "
        f"{result.samples_backpropagated / max(result.wall_time, 1e-9):,.0f} samples/s back-propagated"
    )


def _run_under_torchrun(nproc: int) -> None:
    """`train --nproc N`: run this very command on N local processes (torchrun, standalone) and
    exit with its status. Each process finds itself under torchrun and trains its rank."""
    import subprocess

    from marginscope.engine.distributed import torchrun_command

    spec = getattr(sys.modules["__main__"], "__spec__", None)  # `python -m marginscope.engine.cli`, or a script
    module = spec is not None and bool(spec.name)
    command = torchrun_command(nproc, spec.name if module else sys.argv[0], sys.argv[1:], module=module)
    try:
        code = subprocess.call(command)
    except KeyboardInterrupt:  # torchrun got the Ctrl-C too and stops its ranks
        code = 130
    raise typer.Exit(code)


def _train_signature() -> inspect.Signature:
    params = [
        inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[Path],
                          default=typer.Option(None, "--config", help="JSON or YAML file of config fields; "
                                               "options given here override it.")),
        inspect.Parameter("out", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[Path],
                          default=typer.Option(None, "--out", help="Write events.jsonl, summary.json "
                                               "and checkpoints to this folder.")),
        inspect.Parameter("server", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[str],
                          default=typer.Option(None, "--server", envvar="MARGINSCOPE_SERVER",
                                               help="Stream the run to the MarginScope dashboard at "
                                               "this URL (it trains here; events are spooled "
                                               "locally first).")),
        inspect.Parameter("token", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[str],
                          default=typer.Option(None, "--token", envvar="MARGINSCOPE_TOKEN",
                                               help="The dashboard's token, when it has one.")),
    ]
    for name, field in TrainConfig.model_fields.items():
        default = field.get_default(call_default_factory=True)
        shown = json.dumps(default) if isinstance(default, (dict, list)) else default
        params.append(inspect.Parameter(
            name, inspect.Parameter.KEYWORD_ONLY, annotation=Optional[str],
            default=typer.Option(None, f"--{name.replace('_', '-')}",
                                 help=f"{field.description} [default: {shown}]", show_default=False),
        ))
    return inspect.Signature(params)


_train_command.__signature__ = _train_signature()  # type: ignore[attr-defined]
app.command("train", help="Train one run; every config field is an option.")(_train_command)


@app.command()
def sync(
    folder: Path = typer.Argument(..., help="A run's spool folder (printed by `train --server`; "
                                  "under ~/.marginscope/spool by default)."),
    server: Optional[str] = typer.Option(None, "--server", envvar="MARGINSCOPE_SERVER",
                                         help="Dashboard URL [default: the one the run reported to]."),
    token: Optional[str] = typer.Option(None, "--token", envvar="MARGINSCOPE_TOKEN",
                                        help="The dashboard's token, when it has one."),
) -> None:
    """Upload a spooled run (trained offline, or while the dashboard was down); safe to repeat."""
    from marginscope.engine.remote import Refused, RemoteRefused, Unavailable
    from marginscope.engine.remote import sync as sync_run

    if not (folder / "run.json").is_file():
        fail(f"{folder}: not a run's spool folder (no run.json)")
    try:
        done = sync_run(folder, server=server, token=token)
    except (Refused, RemoteRefused) as exc:
        fail(str(exc))
    except Unavailable as exc:
        typer.echo(f"error: the dashboard cannot be reached ({exc}); try again later", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"run {done['run_id']}: {done['sent']} events sent; the dashboard holds "
               f"{done['next_seq']} events")


@app.command()
def demo(
    steps: int = typer.Option(400, min=10, help="Training steps per run."),
    candidates: int = typer.Option(640, min=1, help="Candidate batch B for MMS."),
    batch_size: int = typer.Option(64, min=1, help="Training batch b."),
    seed: int = typer.Option(0, min=0, help="Seed shared by both runs."),
    dataset: str = typer.Option("mnist", help="Dataset (offline default: mnist)."),
) -> None:
    """Train uniform and MMS side by side on the offline default dataset and compare them."""
    common = dict(dataset=dataset, steps=steps, batch_size=batch_size, seed=seed, regime="constant",
                  eval_every=max(1, steps // 10), eval_samples=2000, hist_every=0)
    results = {}
    for selector in ("uniform", "mms"):
        try:
            config = TrainConfig(selector=selector, candidates=candidates, **common)
        except ValidationError as exc:
            fail(describe_validation_error(exc))
        results[selector] = run_training(config, out=None, label=selector)
    u, m = results["uniform"], results["mms"]
    target = u.best_val_accuracy
    reached = next((e for e in m.evaluations if e["accuracy"] >= target), None)
    when = (f"reached uniform's best val accuracy {target:.2%} at step {reached['step']} "
            f"({reached['step'] / max(u.best_val_step, 1):.2f}x uniform's steps, "
            f"{reached['wall_time'] / max(_time_at_best(u), 1e-9):.2f}x its wall-clock)"
            if reached else f"did not reach uniform's best val accuracy {target:.2%}")
    typer.echo(f"uniform: test {u.test_accuracy:.2%} in {u.wall_time:.1f} s | "
               f"mms: test {m.test_accuracy:.2%} in {m.wall_time:.1f} s | mms {when}")


def _time_at_best(result) -> float:
    return next(e["wall_time"] for e in result.evaluations if e["step"] == result.best_val_step)


@app.command()
def bench(
    ctx: typer.Context,
    out: Path = typer.Option(Path("bench-results"), "--out", help="Folder for results.json, results.md, "
                             "curves.html + plotly.min.js (micro.json, micro.md with --micro)."),
    quick: bool = typer.Option(False, "--quick", help="Short smoke run (~2 min on 2 CPU cores)."),
    micro: bool = typer.Option(False, "--micro", help="Run the micro-benchmarks instead of the suite."),
    dataset: Optional[str] = typer.Option(None, help="Dataset (default: mnist)."),
    model: Optional[str] = typer.Option(None, help="Model (default: small-cnn)."),
    candidates: Optional[int] = typer.Option(None, min=1, help="Candidate pool B (default: 640; quick 256)."),
    batch_size: Optional[int] = typer.Option(None, min=1, help="Training batch b (default: 64)."),
    steps: Optional[int] = typer.Option(None, min=1, help="Steps per run (default: 1200; quick 160)."),
    epochs: Optional[float] = typer.Option(None, help="Run length in epochs (N/b steps each); overrides --steps."),
    regime: Optional[str] = typer.Option(None, help="The suite's LR regime (default: normal); an arm "
                                         "selector@aggressive runs the paper's short aggressive regime."),
    seeds: Optional[str] = typer.Option(None, help="Comma-separated seeds (default: 0,1,2,3,4; quick 0,1)."),
    selectors: Optional[str] = typer.Option(None, help="Comma-separated arms, selector[opt=v;opt=v]@regime "
                                            "(default: " + ",".join(DEFAULT_ARMS) + ")."),
    eval_every: Optional[int] = typer.Option(None, min=1, help="Validate every N steps (default: 25)."),
    eval_samples: Optional[int] = typer.Option(None, min=1, help="Validate on N samples (default: all)."),
    chunk: Optional[int] = typer.Option(None, min=0, help="Candidate chunk size (default: measured)."),
    device: Optional[str] = typer.Option(None, help="auto, cpu, cuda or mps (default: auto)."),
    data_dir: Optional[str] = typer.Option(None, help="Data folder (default: data)."),
    threads: Optional[int] = typer.Option(None, min=0, help="Torch CPU threads (default: 1, which makes "
                                          "CPU time a second clock and is far more robust on a machine "
                                          "shared with other work; 0: all cores)."),
    bench_id: Optional[str] = typer.Option(None, "--id", help="Benchmark id (default: bench-<time>)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the suite stopped in --out "
                                "(its finished runs are kept in results.partial.json); give the same "
                                "options as the command that started it."),
    redraw: bool = typer.Option(False, "--redraw", help="Train nothing: redraw results.md and "
                                "curves.html from the results.json already in --out."),
    suite: Optional[str] = typer.Option(None, "--suite", help="A named suite: short (5 seeds, ~1.5 "
                                        "epochs), long (10 epochs, 5 seeds), noise (20% and 40% label "
                                        "noise, with a clean-only oracle) or noise-long (the noise arms for "
                                        "10 epochs); other options override its settings."),
    label_noise: Optional[float] = typer.Option(None, "--label-noise", help="Share of training labels "
                                                "flipped for every arm (default: 0)."),
    frontier: Optional[str] = typer.Option(None, "--frontier", help="Comma-separated shares of the run "
                                           "at which uniform also trains, its schedule scaled to each "
                                           "length: uniform's frontier (short and long suites: "
                                           "0.25,0.5,0.75; 'none' for none)."),
    docs: bool = typer.Option(False, "--docs", help="Train nothing: rewrite the generated tables of "
                              "docs/benchmarks.md and README.md from docs/benchmarks/*/results.json."),
) -> None:
    """Benchmark selectors side by side: steps, samples and wall-clock to target accuracies."""
    # A caller may follow each run through ctx.obj["track"] (a TrackRun): the backend's CLI wraps
    # this command with --db-url that way, to record every run in its store.
    from marginscope.engine.bench import BenchSettings, draw, run_micro, run_suite, steps_for_epochs
    from marginscope.engine.bench.arms import suite_settings

    if docs:
        from marginscope.engine.bench.docs import update

        root = Path("docs/benchmarks")
        changed = update([Path("docs/benchmarks.md"), Path("README.md")], root)
        typer.echo("rewrote " + (", ".join(map(str, changed)) if changed else "nothing (already up to date)"))
        return
    if redraw:
        try:
            from marginscope.engine.bench.results import read_results
            from marginscope.engine.bench.stats import build_table

            stored = read_results(out / "results.json")  # any format: the tables rebuilt from the runs
        except (OSError, ValueError) as exc:
            fail(f"--redraw needs a suite's results.json in {out}: {exc}")
        stored["table"] = build_table(stored)
        draw(stored, out)
        typer.echo(f"wrote {out}/results.md, curves.html, plotly.min.js")
        return

    given = dict(dataset=dataset, model=model, candidates=candidates, batch_size=batch_size, steps=steps,
                 regime=regime, eval_every=eval_every, eval_samples=eval_samples, score_chunk=chunk,
                 device=device, data_dir=data_dir, threads=threads, label_noise=label_noise,
                 seeds=tuple(int(s) for s in seeds.split(",")) if seeds else None,
                 arms=tuple(a.strip() for a in selectors.split(",") if a.strip()) if selectors else None)
    given = {k: v for k, v in given.items() if v is not None}
    if threads == 0:  # all cores: torch's default thread pool
        given["threads"] = None
    if frontier is not None:
        try:
            given["frontier"] = () if frontier.strip().lower() == "none" else tuple(
                float(f) for f in frontier.split(",") if f.strip())
        except ValueError:
            fail(f"--frontier takes shares of the run, e.g. 0.25,0.5,0.75; got {frontier!r}")
    try:
        settings = (suite_settings(suite, **given) if suite else
                    BenchSettings.quick_settings(**given) if quick else BenchSettings(**given))
    except ValueError as exc:
        fail(str(exc))
    if epochs is not None:
        settings.steps = steps_for_epochs(settings, epochs)
    command = "marginscope " + " ".join(sys.argv[1:])
    try:
        settings.arm_list()
    except ValueError as exc:  # a malformed arm, e.g. mms-memory[refresh_epochs]
        fail(str(exc))
    try:
        if micro:
            run_micro(settings, out, log=typer.echo, command=command)
            typer.echo((out / "micro.md").read_text())
            return
        run_suite(settings, out, track=(ctx.obj or {}).get("track"), bench_id=bench_id,
                  resume=resume, command=command, log=typer.echo)
    except ValidationError as exc:
        fail(describe_validation_error(exc))
    except ValueError as exc:  # --resume of nothing, or of a suite with other settings
        fail(str(exc))
    typer.echo((out / "results.md").read_text())
    typer.echo(f"wrote {out}/results.json, results.md, curves.html, plotly.min.js")


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
