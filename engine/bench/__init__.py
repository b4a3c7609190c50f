"""`marginscope bench`: does selective sampling train faster? Steps, samples and wall-clock to a
target accuracy, side by side, all measured in one invocation on one machine.

The suite trains every arm (a selector, optionally with another LR regime, written
``selector@regime``) for every seed, with the same seeds, data order and initialisation across
arms (the engine's data order and init are functions of the seed only), the arm order rotated per
seed. Per seed, uniform's final plateau (the mean of its last evaluations, less a stated tolerance)
is a target, beside a sweep of fixed targets; for each target and arm the tables give steps, samples
forwarded, samples back-propagated, wall-clock and the process's CPU time to first reach it, each
also as a paired ratio to uniform at the same seed with a 95% confidence interval, the best accuracy
within equal time budgets, and where the time goes. A target not reached is shown as such.

Protocol v2 (docs/benchmarks.md, "Protocol v2"; the default, ``protocol: 2`` in a suite's settings):
uniform's frontier (``uniform@25%`` ... arms, each with its schedule fully decayed) and every arm's
frontier gap, the primary comparison; sustained time to target (3 validations in a row), seeds that
never reach a target kept as bounds; one primary endpoint named in the settings, Holm-adjusted
p-values across arms; one torch thread, so CPU time is a second clock, and a load rule the runner
applies itself (`suite.load_verdict`); the sample tracker off; results.json by column
(`results`). Results of protocol v1 (the stored suites) still draw their v1 tables.

Fairness rules (docs/benchmarks.md, "How the benchmark measures"):
- wall-clock is the loop's own `wall_time` (training work only: candidate scoring, score-memory
  refreshes and the training step; validation is excluded for every arm alike);
- one candidate chunk size for every arm, measured on this device before the suite (`chunk_sweep`);
- monitoring (histograms) is off by default, so it does not tax the selectors that score;
- runs go seed by seed, all arms of one seed back to back in an order rotated per seed, so slow
  drifts of the machine's load favour no arm; CPU time is recorded beside wall-clock (a shared
  machine distorts it far less); the load average is recorded before and after.

Regimes: ``@aggressive`` follows the paper's recipe, an aggressive drop regime on a shorter run:
the paper trains 40 epochs against 200, so such an arm runs 40/200 of the suite's steps with the
`aggressive` preset scaled to that length (engine/regimes.py).

Outputs under ``--out``: ``results.json`` (settings, machine, every raw validation curve, the
table), ``results.md`` (the table), ``curves.html`` (offline Plotly, loading the ``plotly.min.js`` written beside it: validation accuracy vs steps
and vs wall-clock, mean line and min-max band over seeds). ``--micro`` runs the micro-benchmarks
instead (`run_micro`): vectorised MMS vs a naive loop, the share of a step spent on scoring, the
cost of monitoring, and the candidate chunk sweep.

The package, by job: `arms` (what to run, the named suites), `machine` (where, and how it is timed),
`suite` (the runner), `stats` (the tables' arithmetic), `report` (Markdown, figure, files),
`results` (results.json on disk: format 2 by column, and the reader of every format), `docs`
(the generated tables of docs/benchmarks.md and the README), `micro` (the micro-benchmarks). Each training of a suite can be followed by a `TrackRun` (the backend's
``marginscope bench --db-url`` records every run in its store that way, tagged with the benchmark
id); the engine itself never imports the backend.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from marginscope.engine.lazy import lazy_getattr

# public name -> the module of this package that defines it. They load on first use, so the command
# line can name the default arms (`arms`, torch-free) without loading torch.
_PUBLIC = {
    **dict.fromkeys(["ALIASES", "DEFAULT_ARMS", "Arm", "BenchSettings", "steps_for_epochs", "suite_settings"], "arms"),
    **dict.fromkeys(["TrackRun", "load_verdict", "run_suite"], "suite"),
    **dict.fromkeys(["chunk_sweep", "machine_info", "load_average"], "machine"),
    **dict.fromkeys(["ENDPOINTS", "MEASURES", "bounded_summary", "build_table", "first_reach", "frontier_at", "holm",
                     "mean_ci", "plateau", "ratio_ci", "sustained_reach"], "stats"),
    **dict.fromkeys(["read_results", "write_results"], "results"),
    **dict.fromkeys(["table_markdown", "summary_markdown", "budget_markdown", "phases_markdown", "noise_markdown",
                     "endpoints_markdown", "frontier_markdown", "sustained_markdown", "results_markdown",
                     "figure_html", "write_outputs", "draw"], "report"),
    **dict.fromkeys(["run_micro", "micro_markdown", "micro_mms_vs_naive", "naive_mms"], "micro"),
}

__all__ = list(_PUBLIC)

if TYPE_CHECKING:
    from marginscope.engine.bench.arms import (
        ALIASES, DEFAULT_ARMS, Arm, BenchSettings, steps_for_epochs, suite_settings,
    )
    from marginscope.engine.bench.machine import chunk_sweep, load_average, machine_info
    from marginscope.engine.bench.micro import micro_markdown, micro_mms_vs_naive, naive_mms, run_micro
    from marginscope.engine.bench.report import (
        budget_markdown, draw, endpoints_markdown, figure_html, frontier_markdown, noise_markdown, phases_markdown,
        results_markdown, summary_markdown, sustained_markdown, table_markdown, write_outputs,
    )
    from marginscope.engine.bench.results import read_results, write_results
    from marginscope.engine.bench.stats import (
        ENDPOINTS, MEASURES, bounded_summary, build_table, first_reach, frontier_at, holm, mean_ci, plateau, ratio_ci,
        sustained_reach,
    )
    from marginscope.engine.bench.suite import TrackRun, load_verdict, run_suite


__getattr__ = lazy_getattr(__name__, {name: f"{__name__}.{module}" for name, module in _PUBLIC.items()}, globals())
