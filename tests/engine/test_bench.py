"""The benchmark: the table's arithmetic (reach, ratios, not reached), the outputs' structure
(JSON curves, Markdown table, offline HTML), the micro-benchmarks, and `marginscope bench --quick`
end to end (slow). Never a speed assertion: timings depend on the machine."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from engine.bench import (
    Arm, BenchSettings, build_table, first_reach, micro_mms_vs_naive, naive_mms, results_markdown,
    run_suite, write_outputs,
)
from engine.selection import minimal_margin_scores


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
    return {"bench_id": "t", "settings": {**BenchSettings(targets=(0.96,)).__dict__, "score_chunk_used": 128},
            "runs": runs, "machine": {"cpu": "x", "cores": 2, "torch": "t", "torch_threads": 2},
            "load_average": {"before": None, "after": None}, "duration_s": 1.0}


def test_first_reach_takes_the_first_validation_at_or_above() -> None:
    evs = curve([0.5, 0.9, 0.95, 0.99], 16, 0.1)
    assert first_reach(evs, 0.9)["step"] == 20
    assert first_reach(evs, 0.991) is None


def test_table_ratios_are_per_seed_and_not_reached_is_kept() -> None:
    res = fake_results()
    table = build_table(res)
    assert table["targets"] == ["uniform's best", "96.0%"]
    rows = {(r["target"], r["arm"]): r for r in table["rows"]}
    mms = rows[("uniform's best", "mms")]
    # uniform reaches 0.95 at step 40; mms at step 20 -> 0.5x steps, 2.5x forwarded, 2x wall
    assert mms["reached"] == 2 and mms["step"] == 20
    assert mms["step_ratio"] == pytest.approx(0.5)
    assert mms["samples_forwarded_ratio"] == pytest.approx((20 * 80) / (40 * 16))
    assert mms["wall_time_ratio"] == pytest.approx((20 * 0.4) / (40 * 0.1))
    slow = rows[("uniform's best", "slow")]
    assert slow["reached"] == 0 and slow["seeds"] == 1 and slow["step"] is None
    # uniform never reaches 96%: mms did, but has no ratio
    mms96 = rows[("96.0%", "mms")]
    assert mms96["reached"] == 2 and mms96["step_ratio"] is None
    assert rows[("96.0%", "uniform")]["reached"] == 0
    acc = table["test_accuracy"]["uniform"]
    assert acc["mean"] == pytest.approx(0.945) and acc["sd"] == pytest.approx(math.sqrt(2) * 0.005)
    res["table"] = table
    md = results_markdown(res, "marginscope bench --x")
    assert "not reached" in md and "0.50×" in md and "`marginscope bench --x`" in md
    assert md.count("\n| ") == 1 + 2 * 3  # header + targets x arms


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
    assert [r["arm"] for r in res["runs"]] == ["uniform", "mms", "mms-memory", "mms@aggressive"] * 2
    assert [r["steps"] for r in res["runs"]][:4] == [30, 30, 30, 6]
    data = json.loads((tmp_path / "results.json").read_text())
    assert {"settings", "machine", "runs", "table", "load_average", "bench_id"} <= set(data)
    assert all(len(r["evaluations"]) >= 1 and "wall_time" in r["evaluations"][0] for r in data["runs"])
    md = (tmp_path / "results.md").read_text()
    assert md.count("\n| ") == 1 + 2 * 4 and "mms@aggressive" in md
    html = (tmp_path / "curves.html").read_text()
    assert "<html" in html and "plotly" in html.lower()
    assert not re.findall(r"<script[^>]*\bsrc=", html)  # offline: plotly.js embedded, nothing fetched
    assert len(html) > 1_000_000
    # same seed -> same data order and init: the first validation of uniform is reproducible
    again = run_suite(BenchSettings(**{**settings.__dict__, "arms": ("uniform",), "seeds": (0,)}),
                      None, progress=False, log=lambda _: None)
    assert again["runs"][0]["evaluations"][0]["accuracy"] == res["runs"][0]["evaluations"][0]["accuracy"]


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_cli_bench_quick(tmp_path: Path) -> None:
    """`bench --quick` end to end on real MNIST, checking the outputs' structure (never speed).

    Three arms keep CI inside its budget on 2 shared cores; the whole quick suite is the same code
    path with more arms (`marginscope bench --quick`)."""
    from engine.cli import app

    arms = ["uniform", "mms", "mms-memory"]
    result = CliRunner().invoke(app, ["bench", "--quick", "--selectors", ",".join(arms), "--threads", "1",
                                      "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["settings"]["quick"] and len(data["runs"]) == len(arms) * 2
    assert {r["arm"] for r in data["runs"]} == set(arms)
    assert (tmp_path / "curves.html").stat().st_size > 1_000_000  # plotly.js embedded
    assert "| uniform |" in (tmp_path / "results.md").read_text()


def test_cli_bench_rejects_an_unknown_selector(tmp_path: Path) -> None:
    from engine.cli import app

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
    assert json.loads((tmp_path / "results.json").read_text())["table"]["arms"] == ["uniform", "mms", "slow"]


def test_runs_are_recorded_in_a_store_when_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from backend.store.db import upgrade
    from backend.store.sqlalchemy_store import SqlAlchemyStore

    url = f"sqlite:///{tmp_path / 'marginscope.db'}"
    upgrade(url)
    monkeypatch.setenv("MARGINSCOPE_DATA_DIR", str(tmp_path / "data"))
    settings = BenchSettings(dataset="digits", steps=20, candidates=64, batch_size=16, seeds=(0,),
                             arms=("uniform", "mms"), eval_every=10, score_chunk=32, lr=0.02)
    run_suite(settings, None, db_url=url, bench_id="bench-test", progress=False, log=lambda _: None)
    store = SqlAlchemyStore(url, data_dir=tmp_path / "data")
    try:
        runs, count = store.list_runs(tag="bench-test")
        assert count == 2
        assert {str(getattr(r.status, "value", r.status)) for r in runs} == {"finished"}
        assert {t for r in runs for t in r.tags if t.startswith("arm:")} == {"arm:uniform", "arm:mms"}
        assert all(r.step == 20 and r.summary.get("test_accuracy") is not None for r in runs)
    finally:
        store.close()


def test_the_engine_does_not_import_the_backend_without_a_store() -> None:
    import subprocess
    import sys

    code = ("import sys, engine.bench, engine.cli; "
            "assert not [m for m in sys.modules if m.split('.')[0] == 'backend'], 'backend imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
