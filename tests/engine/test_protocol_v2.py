"""Protocol v2 of the benchmark (docs/benchmarks.md, "Protocol v2"): sustained reach, censored
seeds as bounds, Holm's adjustment, the uniform frontier, the load rule, the suites' settings, the
columnar results.json (and its reader of the old format on the stored suites), and a tiny v2 suite
on the bundled digits end to end. Never a speed assertion."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from marginscope.engine.bench import Arm, BenchSettings, build_table, run_suite, suite_settings
from marginscope.engine.bench.docs import TABLES, load_results, render
from marginscope.engine.bench.results import (
    dumps, from_any_format, read_results, to_columns, to_format2, to_rows,
)
from marginscope.engine.bench.stats import (
    EXACT, LOWER, UNKNOWN, UPPER, bounded_summary, censored_ratio, frontier_at, holm, sustained_reach,
    t_test_p, time_to,
)
from marginscope.engine.bench.suite import load_verdict

RESULTS = Path(__file__).resolve().parents[2] / "docs" / "benchmarks"
STORED = ("short", "long", "noise")


def evals(accs: list[float], every: int = 10, wall: float = 0.1) -> list[dict]:
    return [{"step": every * (i + 1), "wall_time": every * (i + 1) * wall, "cpu_time": every * (i + 1) * wall,
             "accuracy": a} for i, a in enumerate(accs)]


# --- sustained reach and censoring ---------------------------------------------------------------

def test_a_single_noisy_validation_is_not_a_reach() -> None:
    e = evals([0.90, 0.97, 0.93, 0.96, 0.97, 0.965, 0.99])
    assert sustained_reach(e, 0.95)["step"] == 40  # 0.97 at 20 fell back; 40, 50, 60 hold
    assert sustained_reach(e, 0.95, k=1)["step"] == 20  # protocol v1's first reach
    # above the target at the last two validations only: not confirmed, censored
    assert sustained_reach(evals([0.5, 0.6, 0.96, 0.97]), 0.95) is None


def test_a_censored_seed_is_a_bound_never_dropped() -> None:
    run = {"evaluations": evals([0.5, 0.6, 0.7]), "summary": {"steps": 30, "wall_time": 3.5}}
    assert time_to(run, 0.95, "step") == (30, True)  # at least its whole run
    assert time_to(run, 0.95, "wall_time") == (3.5, True)  # the summary's total, not the last validation's
    assert time_to(run, 0.45, "step") == (10, False)  # the first of 3 in a row
    assert censored_ratio((20, False), (10, False)) == (2.0, EXACT)
    assert censored_ratio((30, True), (10, False)) == (3.0, LOWER)  # the arm never got there: >= 3x
    assert censored_ratio((20, False), (40, True)) == (0.5, UPPER)  # uniform never did: <= 0.5x
    assert censored_ratio((30, True), (40, True)) == (None, UNKNOWN)

    exact = bounded_summary([(2.0, EXACT), (0.5, EXACT)], log=True)
    assert exact["bound"] == "exact" and exact["mean"] == pytest.approx(1.0) and exact["ci"] and exact["p"]
    lower = bounded_summary([(2.0, EXACT), (8.0, LOWER)], log=True)
    assert lower["bound"] == "lower" and lower["mean"] == pytest.approx(4.0) and lower["ci"] is None
    assert lower["n"] == 2 and lower["counts"] == {EXACT: 1, LOWER: 1, UPPER: 0, UNKNOWN: 0}
    assert lower["p"] is None  # no t-test on censored values
    assert bounded_summary([(2.0, UPPER), (0.5, EXACT)], log=True)["bound"] == "upper"
    assert bounded_summary([(2.0, UPPER), (0.5, LOWER)], log=True)["bound"] == "none"  # both ways
    unknown = bounded_summary([(None, UNKNOWN), (0.5, EXACT)], log=True)
    assert unknown["bound"] == "none" and unknown["n"] == 2 and unknown["mean"] is None


def test_the_sustained_table_keeps_censored_seeds_as_bounds() -> None:
    from marginscope.engine.bench.report import sustained_markdown

    def run(arm: str, seed: int, accs: list[float], wall: float) -> dict:
        e = evals(accs, wall=wall)
        return {"arm": arm, "seed": seed, "reference": "uniform", "evaluations": e,
                "summary": {"steps": e[-1]["step"], "wall_time": e[-1]["wall_time"], "test_accuracy": accs[-1]}}

    runs = [run("uniform", 0, [0.5, 0.9, 0.96, 0.96, 0.97, 0.97], 0.1),
            run("uniform", 1, [0.5, 0.9, 0.96, 0.96, 0.97, 0.97], 0.1),
            run("mms", 0, [0.9, 0.96, 0.97, 0.97, 0.97, 0.97], 0.2),  # reaches 96% at step 20
            run("mms", 1, [0.9, 0.97, 0.90, 0.97, 0.90, 0.94], 0.2)]  # never holds it: censored
    res = {"runs": runs, "settings": {**BenchSettings(targets=(0.96,)).__dict__}}
    res["table"] = table = build_table(res)
    row = next(r for r in table["sustained"] if r["target"] == "96.0%" and r["arm"] == "mms")
    assert row["reached"] == 1 and row["seeds"] == 2
    # seed 0: 20 steps / 30; seed 1: at least 60 / 30 -> geometric mean >= sqrt(2/3 * 2)
    assert row["step"]["bound"] == "lower" and row["step"]["mean"] == pytest.approx(math.sqrt(4 / 3))
    assert row["step"]["kinds"] == [EXACT, LOWER]
    assert f"| 96.0% | mms | 1/2 | ≥ {math.sqrt(4 / 3):.2f}× |" in sustained_markdown(res)
    # the v1 table of the same runs dropped the censored seed from the ratio (first reach at step 20)
    v1 = next(r for r in table["rows"] if r["target"] == "96.0%" and r["arm"] == "mms")
    assert v1["reached"] == 2 and v1["step_ratio"] == pytest.approx(2 / 3)


# --- Holm and the t-test ---------------------------------------------------------------------------

def test_holm_against_a_hand_computed_example() -> None:
    # sorted: 0.01 x 4 = 0.04; 0.03 x 3 = 0.09; 0.04 x 2 = 0.08 -> 0.09 (monotone); 0.20 x 1 = 0.20
    adjusted = holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": 0.20, "e": None})
    assert adjusted == pytest.approx({"a": 0.04, "b": 0.09, "c": 0.09, "d": 0.20, "e": None})
    assert holm({"a": 0.6, "b": 0.7}) == pytest.approx({"a": 1.0, "b": 1.0})  # capped at 1
    assert holm({}) == {}


def test_paired_t_test_p_value() -> None:
    # values 1, 2, 3: t = 2 / (1 / sqrt 3) on 2 degrees of freedom, whose tail is closed-form:
    # P(T > t) = 1/2 - t / (2 sqrt(2 + t^2))
    t = 2 * math.sqrt(3)
    assert t_test_p([1.0, 2.0, 3.0]) == pytest.approx(2 * (0.5 - t / (2 * math.sqrt(2 + t * t))), rel=1e-9)
    assert t_test_p([1.0]) is None and t_test_p([0.0, 0.0]) == 1.0 and t_test_p([1.0, 1.0]) == 0.0
    from scipy import stats as sstats  # a test dependency only: the engine computes it itself

    from marginscope.engine.bench.stats import student_t_two_sided

    for df in (1, 2, 4, 9, 30, 200):
        for t in (0.0, 0.3, 1.0, 2.0, 2.776, 5.0, 40.0):
            assert student_t_two_sided(t, df) == pytest.approx(2 * sstats.t.sf(t, df), rel=1e-9, abs=1e-300)


# --- the frontier --------------------------------------------------------------------------------

def test_frontier_interpolation_and_its_ends() -> None:
    points = [(10.0, 0.90, "uniform@25%"), (20.0, 0.95, "uniform@50%"), (40.0, 0.97, "uniform")]
    assert frontier_at(points, 15.0) == (pytest.approx(0.925), "inside")
    assert frontier_at(points, 30.0) == (pytest.approx(0.96), "inside")
    assert frontier_at(points, 40.0) == (pytest.approx(0.97), "inside")
    assert frontier_at(points, 50.0) == (0.97, "after")  # not extrapolated: the last point, said so
    assert frontier_at(points, 5.0) == (0.90, "before")
    assert frontier_at([], 1.0) == (None, "none")


def frontier_results() -> dict:
    """Two seeds of uniform at 25/50/75/100% and two arms, one inside the frontier, one past it."""
    runs = []
    for seed, shift in ((0, 0.0), (1, 0.002)):
        for arm, wall, acc in (("uniform@25%", 10.0, 0.95), ("uniform@50%", 20.0, 0.97),
                               ("uniform@75%", 30.0, 0.98), ("uniform", 40.0, 0.985),
                               ("memory", 25.0, 0.98 + shift), ("mms", 80.0, 0.99)):
            e = evals([0.9, acc, acc, acc], wall=wall / 40)
            runs.append({"arm": arm, "seed": seed, "reference": "uniform", "evaluations": e,
                         "frontier": {"uniform@25%": 0.25, "uniform@50%": 0.5, "uniform@75%": 0.75}.get(arm),
                         "summary": {"steps": 40, "wall_time": wall, "cpu_time": wall, "test_accuracy": acc}})
    settings = BenchSettings(targets=(0.96,), frontier=(0.25, 0.5, 0.75))
    return {"runs": runs, "settings": dict(settings.__dict__)}


def test_frontier_gaps_are_paired_per_seed_and_bounded_outside() -> None:
    from marginscope.engine.bench.report import endpoints_markdown, frontier_markdown

    res = frontier_results()
    res["table"] = table = build_table(res)
    gaps = {(f["clock"], f["arm"]): f for f in table["frontier"]}
    memory = gaps[("wall_time", "memory")]
    # at 25 s the frontier is halfway between 0.97 (20 s) and 0.98 (30 s): 0.975
    assert memory["values"] == pytest.approx([0.005, 0.007]) and memory["bound"] == "exact"
    assert memory["where"] == ["inside", "inside"] and memory["ci"] and memory["p"] is not None
    mms = gaps[("wall_time", "mms")]  # twice uniform's time: against uniform's whole run, an upper bound
    assert mms["where"] == ["after", "after"] and mms["bound"] == "upper"
    assert mms["mean"] == pytest.approx(0.005) and mms["ci"] is None
    assert table["frontier_arms"] == ["uniform@25%", "uniform@50%", "uniform@75%"]
    # endpoints: the primary first, the frontier and reference arms not tested, Holm over the arms
    ends = [e for e in table["endpoints"] if e["endpoint"] == "frontier-gap-wall"]
    assert {e["arm"] for e in ends} == {"memory", "mms"} and all(e["primary"] for e in ends)
    assert ends[0]["holm_m"] == 1  # mms's gap is a bound: no t-test, not counted in the family
    md = endpoints_markdown(res)
    assert md.splitlines()[2].startswith("| **frontier-gap-wall** (primary) | memory | +0.60 [")
    assert "| ≤ +0.50 | 2 / 0 of 2 |" in frontier_markdown(res)


# --- arms, settings, the load rule -----------------------------------------------------------------

def test_frontier_arms_run_a_share_of_the_run_with_their_schedule_fully_decayed() -> None:
    from marginscope.engine.regimes import lr_at

    s = suite_settings("short")
    labels = [a.label for a in s.arm_list()]
    assert labels[:4] == ["uniform", "uniform@25%", "uniform@50%", "uniform@75%"]
    quarter = Arm.parse("uniform@25%")
    assert quarter.length == 0.25 and quarter.reference == "uniform" and quarter.label == "uniform@25%"
    cfg = s.config(quarter, 0, 64)
    assert cfg.steps == 300 and cfg.regime == "normal" and cfg.samples_every == 0 and cfg.threads == 1
    # the normal regime's three drops scale to the 300 steps: the last step runs at base lr x 0.001
    spe = 50_000 / 64
    assert lr_at(299, base_lr=0.1, regime="normal", total_steps=300, steps_per_epoch=spe) == pytest.approx(1e-4)
    assert lr_at(0, base_lr=0.1, regime="normal", total_steps=300, steps_per_epoch=spe) == pytest.approx(0.1)
    noisy = Arm.parse("uniform{label_noise=0.2}@50%")
    assert noisy.label == "uniform{label_noise=0.2}@50%" and noisy.reference == "uniform{label_noise=0.2}"
    with pytest.raises(ValueError, match="percentage"):
        Arm.parse("uniform@x%")
    with pytest.raises(ValueError, match="at most 100%"):
        Arm.parse("uniform@150%")


def test_every_suite_is_protocol_v2_with_five_seeds_one_thread_and_a_primary_endpoint() -> None:
    primary = {"short": "frontier-gap-wall", "long": "frontier-gap-wall", "noise": "test-accuracy"}
    for name, endpoint in primary.items():
        s = suite_settings(name)
        assert s.protocol == 2 and len(s.seeds) >= 5 and s.threads == 1 and s.primary == endpoint
        assert all(s.config(a, 0, 64).samples_every == 0 for a in s.arm_list())
    assert suite_settings("short").frontier == (0.25, 0.5, 0.75)
    with pytest.raises(ValueError, match="needs a frontier"):
        BenchSettings(primary="frontier-gap-wall")
    with pytest.raises(ValueError, match="unknown primary endpoint"):
        BenchSettings(primary="fastest")


def test_the_load_rule() -> None:
    s = BenchSettings()  # threads = 1, CPU / wall below 0.9 or load above cores + 1, runs of 5 s or more
    assert load_verdict(s, cpu_time=9.5, wall_time=10.0, load_after=[1.2, 1, 1], cores=2) is None
    assert "CPU time / wall-clock 0.80" in load_verdict(s, cpu_time=8.0, wall_time=10.0, load_after=[1, 1, 1], cores=2)
    assert "load average 3.50" in load_verdict(s, cpu_time=10.0, wall_time=10.0, load_after=[3.5, 1, 1], cores=2)
    assert load_verdict(s, cpu_time=1.0, wall_time=2.0, load_after=[9, 9, 9], cores=2) is None  # too short to judge
    two = BenchSettings(threads=2)  # spinning OpenMP threads: the ratio says nothing
    assert load_verdict(two, cpu_time=1.0, wall_time=10.0, load_after=[9, 9, 9], cores=2) is None
    assert load_verdict(BenchSettings(protocol=1), cpu_time=1.0, wall_time=10.0, load_after=None) is None


def test_the_runner_discards_and_reruns_what_the_rule_rejects(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import marginscope.engine.bench.suite as suite

    verdicts = iter(["busy", None, "busy", "busy", "busy"])  # 1st run: once; 2nd: past max_reruns
    monkeypatch.setattr(suite, "load_verdict", lambda *a, **k: next(verdicts))
    settings = BenchSettings(dataset="digits", steps=6, candidates=32, batch_size=16, seeds=(0,),
                             arms=("uniform", "mms"), eval_every=3, score_chunk=32, lr=0.02, max_reruns=2)
    res = run_suite(settings, tmp_path, progress=False, log=lambda _: None)
    assert [(d["arm"], d["why"], d["rule"]) for d in res["discarded"]] == [
        ("uniform", "busy", True), ("mms", "busy", True), ("mms", "busy", True)]
    assert [(r["arm"], r["reruns"], r["load_flag"]) for r in res["runs"]] == [("uniform", 1, None), ("mms", 2, "busy")]
    md = (tmp_path / "results.md").read_text()
    assert "Discarded by the load rule and run again: uniform seed 0 (busy)" in md
    assert "still failing the load rule: mms seed 0 (busy)" in md


# --- results.json: columns, the old format, sizes ---------------------------------------------------

def test_columns_round_trip_and_the_format_key() -> None:
    rows = [{"step": 1, "epoch": 0.1, "accuracy": 0.5, "wall_time": 0.1234567891, "loss": 2.0},
            {"step": 2, "epoch": 0.2, "accuracy": 0.6, "wall_time": 0.2, "loss": 1.0}]
    cols = to_columns(rows)
    assert cols == {"step": [1, 2], "accuracy": [0.5, 0.6], "wall_time": [0.123457, 0.2], "loss": [2.0, 1.0]}
    assert to_rows(cols) == [{k: v for k, v in r.items() if k != "epoch"} | {"wall_time": w}
                             for r, w in zip(rows, [0.123457, 0.2], strict=True)]
    assert to_columns(rows, time_decimals=None)["wall_time"] == [0.1234567891, 0.2]
    with pytest.raises(ValueError, match="differ in length"):
        to_rows({"step": [1, 2], "accuracy": [0.5]})
    with pytest.raises(ValueError, match="newer than this reader"):
        from_any_format({"format": 9, "runs": []})
    assert dumps({"a": [1, 2.5, None], "b": {"c": "x"}}) == '{\n "a": [1,2.5,null],\n "b": {"c": "x"}\n}'
    assert dumps({"b": {"c": list(range(11))}}) == '{\n "b": {\n  "c": [0,1,2,3,4,5,6,7,8,9,10]\n }\n}'


def _every_table(results: dict) -> dict[str, str]:
    return {name: draw(results) for name, draw in TABLES.items() if name != "micro"}


@pytest.mark.parametrize("folder", STORED)
def test_the_old_format_reads_to_todays_tables_and_columns_change_none(folder: str) -> None:
    """A stored protocol v1 file (evaluations as a list of dicts) builds exactly the tables the docs
    show; converted to columns (clocks to the microsecond) and read back, not one character of any
    table changes, the v2 tables of the same runs included."""
    path = RESULTS / folder / "results.json"
    raw = json.loads(path.read_text())
    assert "format" not in raw and isinstance(raw["runs"][0]["evaluations"], list)
    old = load_results(RESULTS / folder)
    assert old["runs"] == raw["runs"]  # read as stored
    block = f"<!-- bench:{folder}:summary -->\nx\n<!-- /bench -->\n"
    assert _every_table(old)["summary"] in render(block, RESULTS)
    columnar = json.loads(dumps(to_format2(raw)))
    assert columnar["format"] == 2 and "table" not in columnar
    assert all(isinstance(r["evaluations"], dict) for r in columnar["runs"])
    new = from_any_format(columnar)
    new["table"] = build_table(new)
    assert _every_table(new) == _every_table(old)
    # the v2 arithmetic (sustained reach, censoring, endpoints) on the same runs, both forms
    for res in (old, new):
        res["settings"] = {**res["settings"], "protocol": 2, "primary": "test-accuracy", "frontier": []}
        res["table"] = build_table(res)
    assert _every_table(new) == _every_table(old)


@pytest.mark.parametrize("folder", STORED)
def test_columnar_results_fit_in_300_kb(folder: str) -> None:
    raw = json.loads((RESULTS / folder / "results.json").read_text())
    old, new = (RESULTS / folder / "results.json").stat().st_size, len(dumps(to_format2(raw)).encode())
    unrounded = len(dumps(to_format2(raw, time_decimals=None)).encode())
    print(f"{folder}: format 1 {old / 1e3:.0f} KB, format 2 {new / 1e3:.0f} KB "
          f"(clocks unrounded: {unrounded / 1e3:.0f} KB)")
    assert new <= 300_000, f"{folder}: {new - 300_000} bytes over 300 KB"


# --- a tiny v2 suite end to end ---------------------------------------------------------------------

def test_a_tiny_v2_suite_writes_columns_and_the_v2_tables(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from marginscope.engine.cli import app

    settings = BenchSettings(dataset="digits", steps=40, candidates=64, batch_size=16, seeds=(0, 1),
                             arms=("uniform", "mms"), eval_every=5, targets=(0.5,), lr=0.02, score_chunk=32,
                             frontier=(0.25, 0.5, 0.75))
    res = run_suite(settings, tmp_path / "tiny", progress=False, log=lambda _: None)
    arms = ["uniform", "uniform@25%", "uniform@50%", "uniform@75%", "mms"]
    assert [r["arm"] for r in res["runs"]][:5] == arms
    assert {r["arm"]: r["steps"] for r in res["runs"]} == {
        "uniform": 40, "uniform@25%": 10, "uniform@50%": 20, "uniform@75%": 30, "mms": 40}
    stored = json.loads((tmp_path / "tiny" / "results.json").read_text())
    assert stored["format"] == 2 and "table" not in stored
    assert stored["settings"]["protocol"] == 2 and stored["settings"]["primary"] == "frontier-gap-wall"
    for run in stored["runs"]:
        cols = run["evaluations"]
        assert isinstance(cols, dict) and {"step", "accuracy", "wall_time", "cpu_time"} <= set(cols)
        assert len({len(v) for v in cols.values()}) == 1 and "epoch" not in cols
        assert cols["step"] == list(range(5, run["steps"] + 1, 5))
    md = (tmp_path / "tiny" / "results.md").read_text()
    for heading in ("## Endpoints (protocol v2)", "## Uniform's frontier", "## Sustained time to target"):
        assert heading in md
    assert "**frontier-gap-wall** (primary) | mms |" in md and "| uniform@25% | 2 |" in md
    assert md.count("| uniform's plateau | ") == len(arms) and "Equal wall-clock budgets" not in md
    # the docs' generated blocks read the format-2 file
    text = "".join(f"<!-- bench:tiny:{t} -->\n<!-- /bench -->\n" for t in ("endpoints", "frontier", "sustained"))
    rendered = render(text, tmp_path)
    assert "| mms |" in rendered and "(primary)" in rendered and "3 in a row" in rendered
    # --redraw from the columnar file draws the same report
    (tmp_path / "tiny" / "results.md").unlink()
    redrawn = CliRunner().invoke(app, ["bench", "--redraw", "--out", str(tmp_path / "tiny")])
    assert redrawn.exit_code == 0, redrawn.output
    assert (tmp_path / "tiny" / "results.md").read_text() == md
    assert read_results(tmp_path / "tiny" / "results.json")["runs"][0]["evaluations"][0]["step"] == 5


def test_the_written_protocol_states_the_code_s_constants() -> None:
    """docs/benchmarks.md's "Protocol v2" says what the code does: the load rule's threshold and
    level, the sustained streak, the frontier shares, each suite's primary endpoint and seeds."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from doc_sections import section

    text = section((RESULTS.parent / "benchmarks.md").read_text(), "## Protocol v2")
    s = BenchSettings()
    assert f"below {s.discard_cpu_share:.2f}" in text and "cores + 1" in text and s.discard_load is None
    assert "at most twice" in text and s.max_reruns == 2 and f"shorter than {s.min_judged_wall:g} s" in text
    assert f"first of {s.sustain} validations in a row" in text
    short = suite_settings("short")
    assert all(f"`uniform@{f:.0%}`" in text for f in short.frontier)
    assert f"Short and long:\n  `{short.primary}`" in text and suite_settings("long").primary == short.primary
    assert f"Noise: `{suite_settings('noise').primary}`" in text
    assert "At least 5 seeds in every suite" in text
    assert "**Every table below is protocol v1**" in (RESULTS.parent / "benchmarks.md").read_text()


def test_cli_frontier_option_is_checked_before_training(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from marginscope.engine.cli import app

    bad = CliRunner().invoke(app, ["bench", "--dataset", "digits", "--frontier", "a,b", "--out", str(tmp_path)])
    assert bad.exit_code == 2 and "--frontier" in bad.output
    outside = CliRunner().invoke(app, ["bench", "--dataset", "digits", "--frontier", "1.5", "--out", str(tmp_path)])
    assert outside.exit_code == 2 and "strictly between 0 and 1" in outside.output
    # a frontier-gap primary needs a frontier: the short suite without one is refused
    none = CliRunner().invoke(app, ["bench", "--suite", "short", "--frontier", "none", "--out", str(tmp_path)])
    assert none.exit_code == 2 and "needs a frontier" in none.output
    assert not any(tmp_path.iterdir())
