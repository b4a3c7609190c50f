"""The benchmark: the table's arithmetic (reach, ratios, not reached), the outputs' structure
(JSON curves, Markdown table, offline HTML), the micro-benchmarks, a tracker following every run
(how a store records them), and `marginscope bench --quick` end to end (slow). Never a speed
assertion: timings depend on the machine."""

from __future__ import annotations

import inspect
import json
import math
import statistics
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import pytest
import torch
import typer
from typer.testing import CliRunner

from marginscope.engine.bench import (
    Arm, BenchSettings, build_table, first_reach, micro_mms_vs_naive, naive_mms, results_markdown,
    run_suite, write_outputs,
)
from marginscope.engine.config import TrainConfig
from marginscope.engine.events import Callback, Evaluation, Event, RunFailed, RunFinished, RunStarted, StepMetrics
from marginscope.engine.selection import minimal_margin_scores


def curve(accs: list[float], per_step_fwd: int, wall_per_step: float, every: int = 10) -> list[dict]:
    return [{"step": every * (i + 1), "samples_forwarded": every * (i + 1) * per_step_fwd,
             "samples_backpropagated": every * (i + 1) * 16, "wall_time": every * (i + 1) * wall_per_step,
             "accuracy": a} for i, a in enumerate(accs)]


def fake_results() -> dict:
    runs = []
    for seed in (0, 1):
        runs.append({"arm": "uniform", "seed": seed, "evaluations": curve([0.5, 0.8, 0.9, 0.95], 16, 0.1),
                     "summary": {"best_val_accuracy": 0.95, "test_accuracy": 0.94 + seed / 100}})
        runs.append({"arm": "mms", "seed": seed, "evaluations": curve([0.7, 0.95, 0.97, 0.97], 80, 0.4),
                     "summary": {"best_val_accuracy": 0.97, "test_accuracy": 0.96}})
    runs.append({"arm": "slow", "seed": 0, "evaluations": curve([0.1, 0.2, 0.3, 0.4], 16, 0.1),
                 "summary": {"best_val_accuracy": 0.4, "test_accuracy": 0.4}})
    # a protocol v1 suite: the tables of first reach and equal budgets (v2: tests/engine/test_protocol_v2.py)
    return {"bench_id": "t", "settings": {**BenchSettings(targets=(0.96,), protocol=1).__dict__,
                                          "score_chunk_used": 128},
            "runs": runs, "machine": {"cpu": "x", "cores": 2, "torch": "t", "torch_threads": 2},
            "load_average": {"before": None, "after": None}, "duration_s": 1.0}


def test_first_reach_takes_the_first_validation_at_or_above() -> None:
    evs = curve([0.5, 0.9, 0.95, 0.99], 16, 0.1)
    assert first_reach(evs, 0.9)["step"] == 20
    assert first_reach(evs, 0.991) is None


def test_table_ratios_are_per_seed_and_not_reached_is_kept() -> None:
    res = fake_results()
    table = build_table(res)
    assert table["targets"] == ["uniform's plateau", "96.0%"]
    # uniform's plateau: mean of its last 3 evaluations (0.8, 0.9, 0.95) less 0.1 point
    assert table["target_values"]["uniform's plateau"]["mms"] == [pytest.approx(0.8823333, abs=1e-6)] * 2
    rows = {(r["target"], r["arm"]): r for r in table["rows"]}
    mms = rows[("uniform's plateau", "mms")]
    # uniform reaches 0.882 at step 30 (0.9); mms at step 20 (0.95) -> 2/3 steps, 2.5x wall
    assert mms["reached"] == 2 and mms["step"] == 20
    assert mms["step_ratio"] == pytest.approx(2 / 3)
    assert mms["samples_forwarded_ratio"] == pytest.approx((20 * 80) / (30 * 16))
    assert mms["wall_time_ratio"] == pytest.approx((20 * 0.4) / (30 * 0.1))
    assert mms["step_ci"] == pytest.approx([2 / 3, 2 / 3])  # identical seeds: a zero-width interval
    assert mms["cpu_time_ratio"] is None  # no CPU time in these curves
    slow = rows[("uniform's plateau", "slow")]
    assert slow["reached"] == 0 and slow["seeds"] == 1 and slow["step"] is None
    # uniform never reaches 96%: mms did, but has no ratio
    mms96 = rows[("96.0%", "mms")]
    assert mms96["reached"] == 2 and mms96["step_ratio"] is None
    assert rows[("96.0%", "uniform")]["reached"] == 0
    acc = table["test_accuracy"]["uniform"]
    assert acc["mean"] == pytest.approx(0.945) and acc["sd"] == pytest.approx(math.sqrt(2) * 0.005)
    # paired differences: mms 0.96 against uniform 0.94 and 0.95
    diff = table["test_accuracy"]["mms"]["diff"]
    assert diff["mean"] == pytest.approx(0.015) and diff["n"] == 2
    half = 12.706 * statistics.stdev([0.02, 0.01]) / math.sqrt(2)
    assert diff["ci"] == pytest.approx([0.015 - half, 0.015 + half])
    # equal budgets: within 25% of uniform's 0.4 s, mms (0.4 s per 10 steps) has no evaluation yet;
    # within 100% it has its first (0.7) and uniform its best (0.95)
    budgets = {(b["clock"], b["budget"], b["arm"]): b for b in table["budgets"]}
    assert ("wall_time", 0.25, "mms") not in budgets
    assert budgets[("wall_time", 1.0, "mms")]["mean"] == pytest.approx(0.7)
    assert budgets[("wall_time", 1.0, "mms")]["diff"]["mean"] == pytest.approx(0.7 - 0.95)
    res["table"] = table
    md = results_markdown(res, "marginscope bench --x")
    assert "not reached" in md and "0.67× [0.67, 0.67]" in md and "`marginscope bench --x`" in md
    assert "+1.50 [" in md  # the paired difference in points


def test_ratio_and_mean_intervals() -> None:
    from marginscope.engine.bench import mean_ci, ratio_ci

    r = ratio_ci([0.5, 2.0])  # geometric mean 1, symmetric in log space
    assert r["mean"] == pytest.approx(1.0) and r["ci"][0] == pytest.approx(1 / r["ci"][1])
    assert ratio_ci([0.8])["ci"] is None and ratio_ci([])["mean"] is None
    m = mean_ci([1.0, 2.0, 3.0, 4.0, 5.0])
    assert m["ci"] == pytest.approx([3 - 2.776 * statistics.stdev([1, 2, 3, 4, 5]) / math.sqrt(5),
                                     3 + 2.776 * statistics.stdev([1, 2, 3, 4, 5]) / math.sqrt(5)])


def test_arm_order_rotates_per_seed() -> None:
    s = BenchSettings(arms=("uniform", "mms", "infobatch"), seeds=(0, 1, 2))
    arms = s.arm_list()
    orders = [[a.label for a in s.order(arms, k)] for k in range(3)]
    assert orders == [["uniform", "mms", "infobatch"], ["mms", "infobatch", "uniform"],
                      ["infobatch", "uniform", "mms"]]
    for position in range(3):  # a Latin square: each arm once in each position
        assert len({order[position] for order in orders}) == 3
    assert BenchSettings(rotate=False).order(arms, 1) == arms


def test_arms_with_run_settings_aliases_and_references() -> None:
    from marginscope.engine.bench import suite_settings

    bn = Arm.parse("mms-bn-batch")
    assert bn.label == "mms-bn-batch" and bn.config == (("bn_stats", "batch"),) and bn.reference == "uniform"
    assert BenchSettings().config(bn, 0, 64).bn_stats == "batch"
    noisy = Arm.parse("mms{label_noise=0.2}")
    assert noisy.label == "mms{label_noise=0.2}" and noisy.reference == "uniform{label_noise=0.2}"
    assert BenchSettings().config(noisy, 0, 64).label_noise == 0.2
    with pytest.raises(ValueError, match="cannot differ between arms"):
        Arm.parse("mms{steps=3}")
    s = suite_settings("noise")
    labels = [a.label for a in s.arm_list()]
    assert "uniform{label_noise=0.2}" in labels and "uniform{label_noise=0.4}" in labels
    assert "uniform" not in labels  # the references are the noisy uniform arms
    oracle = Arm.parse("uniform{label_noise=0.4;clean_only=true}")
    assert oracle.label in labels and Arm.parse(oracle.label) == oracle  # a label parses back
    assert oracle.reference == "uniform{label_noise=0.4}" and s.config(oracle, 0, 64).clean_only is True
    noise_long = suite_settings("noise-long")
    assert noise_long.steps == 7813 and noise_long.arms == s.arms
    long = suite_settings("long", seeds=(0,))
    assert long.steps == 7813 and long.eval_every == 78 and long.seeds == (0,)
    with pytest.raises(ValueError, match="unknown suite"):
        suite_settings("huge")


def test_arms_parse_regimes_and_the_aggressive_run_is_shorter() -> None:
    s = BenchSettings(steps=1000, arms=("mms", "mms@aggressive"))
    assert [a.label for a in s.arm_list()] == ["uniform", "mms", "mms@aggressive"]
    assert Arm.parse("mms@aggressive") == Arm("mms", "aggressive")
    assert s.arm_steps(Arm("mms", "aggressive")) == 200  # the paper: 40 epochs against 200
    assert s.arm_steps(Arm("mms")) == 1000
    cfg = s.config(Arm("mms", "aggressive"), seed=2, chunk=64)
    assert cfg.regime == "aggressive" and cfg.steps == 200 and cfg.seed == 2 and cfg.score_chunk == 64


def test_arms_carry_selector_options() -> None:
    arm = Arm.parse("mms-memory[refresh_epochs=2;unseen=first]@aggressive")
    assert arm == Arm("mms-memory", "aggressive", (("refresh_epochs", 2), ("unseen", "first")))
    assert arm.label == "mms-memory[refresh_epochs=2;unseen=first]@aggressive"
    cfg = BenchSettings().config(arm, seed=1, chunk=64)
    assert cfg.selector_options == {"seed": 1, "refresh_epochs": 2, "unseen": "first"}
    with pytest.raises(ValueError, match="key=value"):
        Arm.parse("mms-memory[refresh_epochs]")


def test_naive_and_vectorised_mms_agree() -> None:
    g = torch.Generator().manual_seed(0)
    w = torch.randn(7, 5, generator=g)
    logits = torch.randn(30, 5, generator=g) @ w.T
    torch.testing.assert_close(minimal_margin_scores(logits, w).double(), naive_mms(logits, w),
                               rtol=1e-4, atol=1e-5)
    row = micro_mms_vs_naive(ks=(10,), d=16)[0]
    assert row["K"] == 10 and row["max_abs_diff"] < 1e-4 and row["speedup"] > 0


def test_tiny_suite_writes_json_markdown_and_offline_html(tmp_path: Path) -> None:
    settings = BenchSettings(dataset="digits", steps=30, candidates=64, batch_size=16, seeds=(0, 1),
                             arms=("uniform", "mms", "mms-memory", "mms@aggressive"), eval_every=10,
                             targets=(0.5,), lr=0.02, score_chunk=32)
    res = run_suite(settings, tmp_path, progress=False, log=lambda _: None)
    # the second seed runs the arms rotated by one
    assert [r["arm"] for r in res["runs"]] == ["uniform", "mms", "mms-memory", "mms@aggressive",
                                               "mms", "mms-memory", "mms@aggressive", "uniform"]
    assert [r["steps"] for r in res["runs"]][:4] == [30, 30, 30, 6]
    # format 2: evaluations by column, the table rebuilt from the runs (read_results reads any format)
    from marginscope.engine.bench.results import read_results

    stored = json.loads((tmp_path / "results.json").read_text())
    assert stored["format"] == 2 and "table" not in stored
    data = read_results(tmp_path / "results.json")
    assert {"settings", "machine", "runs", "load_average", "bench_id"} <= set(data)
    assert all(len(r["evaluations"]) >= 1 and "wall_time" in r["evaluations"][0] for r in data["runs"])
    # CPU time of the process beside wall-clock, in every evaluation and summary, with the phases
    assert all(e["cpu_time"] > 0 for r in data["runs"] for e in r["evaluations"])
    assert all(r["summary"]["phase_times"]["score_wall_time"] >= 0 for r in data["runs"])
    md = (tmp_path / "results.md").read_text()
    # protocol v2 (the default): endpoints, sustained targets on both clocks; no truncated budgets
    assert "mms@aggressive" in md and "CPU time (×)" in md and "## Sustained time to target" in md
    assert "Equal CPU-time budgets" not in md and "**test-accuracy** (primary)" in md
    assert md.count("| uniform's plateau | ") == 4 and md.count("| 50.0% | ") == 4
    html = (tmp_path / "curves.html").read_text()
    assert "<html" in html and "plotly" in html.lower()
    # offline: the one script fetched is the plotly.js written beside the page, shared by its figures
    assert re.findall(r"<script[^>]*\bsrc=\"([^\"]*)\"", html) == ["plotly.min.js"]
    assert (tmp_path / "plotly.min.js").stat().st_size > 1_000_000 and len(html) < 1_000_000
    # --redraw draws the same table and figure again from the stored results.json, training nothing
    from marginscope.engine.cli import app

    table = md
    (tmp_path / "results.md").unlink()
    (tmp_path / "curves.html").unlink()
    redrawn = CliRunner().invoke(app, ["bench", "--redraw", "--out", str(tmp_path)])
    assert redrawn.exit_code == 0, redrawn.output
    assert (tmp_path / "results.md").read_text() == table and (tmp_path / "curves.html").read_text() == html
    missing = CliRunner().invoke(app, ["bench", "--redraw", "--out", str(tmp_path / "nothing")])
    assert missing.exit_code == 2 and "results.json" in missing.output
    # same seed -> same data order and init: the first validation of uniform is reproducible
    again = run_suite(BenchSettings(**{**settings.__dict__, "arms": ("uniform",), "seeds": (0,)}),
                      None, progress=False, log=lambda _: None)
    assert again["runs"][0]["evaluations"][0]["accuracy"] == res["runs"][0]["evaluations"][0]["accuracy"]


def test_a_stopped_suite_resumes_where_it_stopped(tmp_path: Path) -> None:
    """A suite killed after its third run keeps those three; --resume runs the other five in their
    places of the rotation, with the same chunk size, and refuses a different setting."""
    settings = BenchSettings(dataset="digits", steps=12, candidates=64, batch_size=16, seeds=(0, 1),
                             arms=("uniform", "mms", "mms-memory", "mms@aggressive"), eval_every=6,
                             targets=(0.5,), lr=0.02, score_chunk=32)
    started: list[str] = []

    def killed_at_fourth(name: str, config: dict, tags: list[str]):  # noqa: ANN202
        started.append(name)
        if len(started) == 4:
            raise KeyboardInterrupt  # as a Ctrl-C or the end of a session would
        return nullcontext(None)

    with pytest.raises(KeyboardInterrupt):
        run_suite(settings, tmp_path, track=killed_at_fourth, progress=False, log=lambda _: None)
    partial = json.loads((tmp_path / "results.partial.json").read_text())
    assert [r["arm"] for r in partial["runs"]] == ["uniform", "mms", "mms-memory"]
    assert not (tmp_path / "results.json").exists()

    other = BenchSettings(**{**settings.__dict__, "steps": 13})
    with pytest.raises(ValueError, match="other settings .*steps"):
        run_suite(other, tmp_path, resume=True, progress=False, log=lambda _: None)
    with pytest.raises(ValueError, match="nothing to resume"):
        run_suite(settings, tmp_path / "elsewhere", resume=True, progress=False, log=lambda _: None)

    # a run taken out of the file by hand (with the reason) runs again, and the record says so
    kept = [r for r in partial["runs"] if r["arm"] != "mms"]
    why = "the machine was busy"
    (tmp_path / "results.partial.json").write_text(json.dumps(
        {**partial, "runs": kept, "discarded": [{"arm": "mms", "seed": 0, "why": why}]}))
    res = run_suite(settings, tmp_path, resume=True, progress=False, log=lambda _: None)
    assert [r["arm"] for r in res["runs"]] == ["uniform", "mms", "mms-memory", "mms@aggressive",
                                               "mms", "mms-memory", "mms@aggressive", "uniform"]
    assert [res["runs"][0], res["runs"][2]] == kept and res["bench_id"] == partial["bench_id"]
    again, first = res["runs"][1]["evaluations"], partial["runs"][1]["evaluations"]
    assert [e["step"] for e in again] == [e["step"] for e in first]  # the same run, from its start
    assert again[0]["accuracy"] == first[0]["accuracy"]
    assert f"Discarded and run again: mms seed 0 ({why})" in (tmp_path / "results.md").read_text()
    assert len(res["resumed"]) == 1 and res["duration_s"] >= partial["duration_s"]
    assert not (tmp_path / "results.partial.json").exists() and (tmp_path / "results.json").exists()


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_cli_bench_quick(tmp_path: Path) -> None:
    """`bench --quick` end to end on real MNIST, checking the outputs' structure (never speed).

    Three arms keep CI inside its budget on 2 shared cores; the whole quick suite is the same code
    path with more arms (`marginscope bench --quick`)."""
    from marginscope.engine.cli import app

    arms = ["uniform", "mms", "mms-memory"]
    result = CliRunner().invoke(app, ["bench", "--quick", "--selectors", ",".join(arms), "--threads", "1",
                                      "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["settings"]["quick"] and len(data["runs"]) == len(arms) * 2
    assert {r["arm"] for r in data["runs"]} == set(arms)
    assert (tmp_path / "plotly.min.js").stat().st_size > 1_000_000  # beside curves.html, offline
    assert "| uniform |" in (tmp_path / "results.md").read_text()


def test_cli_bench_rejects_an_unknown_selector(tmp_path: Path) -> None:
    from marginscope.engine.cli import app

    result = CliRunner().invoke(app, ["bench", "--quick", "--selectors", "nope", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "nope" in result.output
    result = CliRunner().invoke(app, ["bench", "--quick", "--selectors", "mms[mix", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "brackets" in result.output
    result = CliRunner().invoke(app, ["bench", "--quick", "--selectors", "mms-memory[nope=1]", "--out",
                                      str(tmp_path)])
    assert result.exit_code == 2 and "nope" in result.output


def test_write_outputs_round_trip(tmp_path: Path) -> None:
    res = fake_results()
    res["table"] = build_table(res)
    write_outputs(res, tmp_path, "marginscope bench")
    from marginscope.engine.bench.results import read_results

    back = read_results(tmp_path / "results.json")  # format 2: no stored table, rebuilt from the runs
    assert build_table(back)["arms"] == ["uniform", "mms", "slow"]
    for mine, theirs in zip(back["runs"], res["runs"], strict=True):  # clocks kept to the microsecond
        assert [e["accuracy"] for e in mine["evaluations"]] == [e["accuracy"] for e in theirs["evaluations"]]
        assert [e["wall_time"] for e in mine["evaluations"]] == pytest.approx(
            [e["wall_time"] for e in theirs["evaluations"]], abs=1e-6)


def digits_bench_args(out: Path) -> list[str]:
    """A two-run suite on the bundled digits data: seconds, not minutes."""
    return ["bench", "--dataset", "digits", "--steps", "20", "--candidates", "64", "--batch-size", "16",
            "--seeds", "0", "--selectors", "uniform,mms", "--eval-every", "10", "--chunk", "32",
            "--id", "bench-test", "--out", str(out)]


class Tracker:
    """A TrackRun that keeps what it was given and every event its callback received."""

    def __init__(self) -> None:
        self.runs: list[dict] = []

    @contextmanager
    def __call__(self, name: str, config: dict, tags: Sequence[str]) -> Iterator[Callback]:
        run = {"name": name, "config": config, "tags": list(tags), "events": [], "error": None}
        self.runs.append(run)
        try:
            yield run["events"].append
        except Exception as exc:
            run["error"] = exc
            raise


def wrap_like_the_backend(engine_app: typer.Typer, tracker: Tracker) -> typer.Typer:
    """How a command line that owns a store adds `--db-url` to the engine's `bench`: the same
    options plus one, which puts a tracker in the context object, then invokes the engine's command
    callback (typer runs its own copy of click: the wrapper must be a typer command too)."""
    from marginscope.engine.cli import bench as engine_bench

    engine_command = typer.main.get_command(engine_app).commands["bench"]

    def bench(ctx: typer.Context, db_url: str | None = typer.Option(None, "--db-url"), **params: Any) -> None:
        ctx.obj = {"track": tracker} if db_url else None
        ctx.invoke(engine_command.callback, **params)

    own = inspect.signature(bench).parameters
    engine_params = [p for p in inspect.signature(engine_bench, eval_str=True).parameters.values()
                     if p.name != "ctx"]
    bench.__signature__ = inspect.Signature([own["ctx"], own["db_url"], *engine_params])  # type: ignore[attr-defined]
    wrapped = typer.Typer(add_completion=False)
    wrapped.command()(bench)
    return wrapped


@pytest.mark.parametrize("invocation", ["context object", "wrapped command"])
def test_a_tracker_follows_every_run_of_the_suite(tmp_path: Path, invocation: str) -> None:
    from marginscope.engine.cli import app

    tracker = Tracker()
    if invocation == "context object":
        result = CliRunner().invoke(app, digits_bench_args(tmp_path), obj={"track": tracker})
    else:
        wrapped = wrap_like_the_backend(app, tracker)  # one command: no "bench" in its arguments
        result = CliRunner().invoke(wrapped, [*digits_bench_args(tmp_path)[1:], "--db-url", "sqlite://"])
    assert result.exit_code == 0, result.output
    runs = json.loads((tmp_path / "results.json").read_text())["runs"]
    assert [t["name"] for t in tracker.runs] == ["bench-test uniform seed 0", "bench-test mms seed 0"]
    assert [t["tags"] for t in tracker.runs] == [["benchmark", "bench-test", "arm:uniform"],
                                                 ["benchmark", "bench-test", "arm:mms"]]
    for tracked, run in zip(tracker.runs, runs, strict=True):
        config = TrainConfig(**tracked["config"])
        assert (config.dataset, config.selector, config.steps, config.seed, config.score_chunk) == (
            "digits", run["selector"], 20, 0, 32)
        events = tracked["events"]
        assert isinstance(events[0], RunStarted)
        assert isinstance(events[-1], RunFinished) and events[-1].status == "finished"
        vals = [e.accuracy for e in events if isinstance(e, Evaluation) and e.split == "val"]
        assert vals == run["evaluations"]["accuracy"] and len(vals) == 2  # stored by column
        assert tracked["error"] is None


def test_the_command_runs_without_a_tracker_when_wrapped(tmp_path: Path) -> None:
    from marginscope.engine.cli import app

    tracker = Tracker()
    result = CliRunner().invoke(wrap_like_the_backend(app, tracker), digits_bench_args(tmp_path)[1:])
    assert result.exit_code == 0, result.output
    assert tracker.runs == [] and len(json.loads((tmp_path / "results.json").read_text())["runs"]) == 2


def test_a_failed_training_reaches_its_tracker_and_ends_the_suite() -> None:
    def failing(event: Event) -> None:
        if isinstance(event, StepMetrics):
            raise RuntimeError("disk full")

    tracker = Tracker()

    @contextmanager
    def track(name: str, config: dict, tags: Sequence[str]) -> Iterator[Callback]:
        with tracker(name, config, tags) as record:
            yield lambda event: (record(event), failing(event))

    settings = BenchSettings(dataset="digits", steps=20, candidates=64, batch_size=16, seeds=(0,),
                             arms=("uniform", "mms"), eval_every=10, score_chunk=32, lr=0.02)
    with pytest.raises(RuntimeError, match="disk full"):
        run_suite(settings, None, track=track, bench_id="bench-test", progress=False, log=lambda _: None)
    assert [t["name"] for t in tracker.runs] == ["bench-test uniform seed 0"]  # the suite stopped there
    assert isinstance(tracker.runs[0]["error"], RuntimeError)
    assert isinstance(tracker.runs[0]["events"][-1], RunFailed)


def test_the_engine_never_imports_the_backend(tmp_path: Path) -> None:
    """With `backend` unimportable, every bench module and the CLI still import and `bench --help`
    works; and no bench module names the backend in an import, not even inside a function."""
    import ast
    import subprocess
    import sys

    import marginscope.engine.bench

    package = Path(marginscope.engine.bench.__file__).parent
    modules = [f"marginscope.engine.bench.{p.stem}" for p in sorted(package.glob("*.py")) if p.stem != "__init__"]
    code = ("import sys; sys.modules['marginscope.backend'] = None\n"  # importing the backend now raises
            f"import importlib; [importlib.import_module(m) for m in {modules + ['marginscope.engine.cli']!r}]\n"
            "from typer.testing import CliRunner; from marginscope.engine.cli import app\n"
            "r = CliRunner().invoke(app, ['bench', '--help']); assert r.exit_code == 0, r.output\n"
            "assert '--db-url' not in r.output")
    subprocess.run([sys.executable, "-c", code], check=True)
    for path in [*package.glob("*.py"), package.parent / "cli.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not [n for n in names if n.startswith("marginscope.backend")], f"{path} imports the backend"


def test_cli_bench_docs_rewrites_only_the_generated_tables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from marginscope.engine.cli import app

    root = Path(__file__).resolve().parents[2]
    (tmp_path / "docs").mkdir()
    shutil.copytree(root / "docs" / "benchmarks", tmp_path / "docs" / "benchmarks")
    shutil.copy(root / "docs" / "benchmarks.md", tmp_path / "docs" / "benchmarks.md")
    readme = (root / "README.md").read_text()
    # a table emptied by hand comes back from its JSON; the prose around it is left alone
    emptied = re.sub(r"(<!-- bench:\w+:summary -->\n).*?(<!-- /bench -->)", r"\1\2", readme, count=1, flags=re.S)
    assert emptied != readme, "the README shows no generated summary table"
    (tmp_path / "README.md").write_text(emptied)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["bench", "--docs"])
    assert result.exit_code == 0, result.output
    assert "README.md" in result.output and "benchmarks.md" not in result.output
    assert (tmp_path / "README.md").read_text() == readme
    again = CliRunner().invoke(app, ["bench", "--docs"])
    assert "already up to date" in again.output


def test_docs_leave_a_suite_still_running_as_not_run(tmp_path: Path) -> None:
    from marginscope.engine.bench.docs import NOT_RUN, render

    (tmp_path / "long").mkdir()  # a suite under way has only its results.partial.json
    (tmp_path / "long" / "results.partial.json").write_text("{}")
    text = "<!-- bench:long:summary -->\nold\n<!-- /bench -->\n"
    assert render(text, tmp_path) == f"<!-- bench:long:summary -->\n{NOT_RUN.format(folder='long')}\n<!-- /bench -->\n"


def test_cli_bench_rejects_an_unknown_suite(tmp_path: Path) -> None:
    from marginscope.engine.cli import app

    result = CliRunner().invoke(app, ["bench", "--suite", "huge", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "unknown suite" in result.output
