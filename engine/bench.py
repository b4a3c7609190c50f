"""`marginscope bench`: does selective sampling train faster? Steps, samples and wall-clock to a
target accuracy, side by side, all measured in one invocation on one machine.

The suite trains every arm (a selector, optionally with another LR regime, written
``selector@regime``) for every seed, with the same seeds, data order and initialisation across
arms (the engine's data order and init are functions of the seed only). Per seed, uniform's best
validation accuracy is a target, beside fixed targets (98.5%, 99%); for each target and arm the
table gives steps, samples forwarded, samples back-propagated and wall-clock to first reach it,
each also as a ratio to uniform at the same seed. A target not reached is shown as such.

Fairness rules (shared/design/MMS.md, "What it costs"):
- wall-clock is the loop's own `wall_time` (training work only: candidate scoring, score-memory
  refreshes and the training step; validation is excluded for every arm alike);
- one candidate chunk size for every arm, measured on this device before the suite (`best_chunk`);
- monitoring (histograms) is off by default, so it does not tax the selectors that score;
- runs go seed by seed, all arms of one seed back to back, so slow drifts of the machine's load
  hit every arm of a seed alike; the load average is recorded before and after.

Regimes: ``@aggressive`` follows the paper's recipe, an aggressive drop regime on a shorter run:
the paper trains 40 epochs against 200, so such an arm runs 40/200 of the suite's steps with the
`aggressive` preset scaled to that length (engine/regimes.py).

Outputs under ``--out``: ``results.json`` (settings, machine, every raw validation curve, the
table), ``results.md`` (the table), ``curves.html`` (offline Plotly: validation accuracy vs steps
and vs wall-clock, mean line and min-max band over seeds). ``--micro`` runs the micro-benchmarks
instead (`run_micro`): vectorised MMS vs a naive loop, the share of a step spent on scoring, the
cost of monitoring, and the candidate chunk sweep.

When a store is configured (``--db-url`` or ``MARGINSCOPE_DB_URL``) every run is also recorded as
a normal run tagged with the benchmark id, through backend.store, imported only then
(`_StoreRecorder`); the engine never imports the backend otherwise.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from rich.markup import escape

from engine.config import TrainConfig
from engine.events import Evaluation, Event, RunFinished, RunStarted, StepMetrics
from engine.regimes import PRESETS

DEFAULT_ARMS = ("uniform", "mms", "mms-runner-up", "hard-negative", "entropy", "selective-backprop",
                "mms@aggressive", "mms-memory", "mms-memory[refresh_epochs=2]")
MEASURES = ("step", "samples_forwarded", "samples_backpropagated", "wall_time")
# A fast regime and the normal one it shortens: (normal partner, run-length ratio of the paper).
SHORT_REGIMES = {"aggressive": ("normal", PRESETS["aggressive"].native_epochs / PRESETS["normal"].native_epochs),
                 "aggressive-wrn": ("normal-wrn", PRESETS["aggressive-wrn"].native_epochs
                                    / PRESETS["normal-wrn"].native_epochs)}
CHUNKS = (32, 64, 128, 256, 512, 0)  # 0 = the whole candidate batch at once


# --- settings --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Arm:
    """One line of the table: a selector with options, run under a regime (the suite's own unless
    given). Written ``selector[key=value;key=value]@regime``, e.g. ``mms-memory[refresh_epochs=2]``."""

    selector: str
    regime: str | None = None
    options: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def parse(cls, spec: str) -> Arm:
        head, _, regime = spec.strip().partition("@")
        selector, _, rest = head.partition("[")
        options = []
        if rest:
            if not rest.endswith("]"):
                raise ValueError(f"arm {spec!r}: options go in brackets, e.g. mms-memory[refresh_epochs=2]")
            for item in filter(None, rest[:-1].split(";")):
                key, eq, value = item.partition("=")
                if not eq:
                    raise ValueError(f"arm {spec!r}: option {item!r} needs key=value")
                try:
                    parsed = json.loads(value)
                except json.JSONDecodeError:
                    parsed = value  # a bare word, e.g. unseen=first
                options.append((key.strip(), parsed))
        return cls(selector.strip(), regime or None, tuple(options))

    @property
    def label(self) -> str:
        opts = f"[{';'.join(f'{k}={v}' for k, v in self.options)}]" if self.options else ""
        return f"{self.selector}{opts}@{self.regime}" if self.regime else f"{self.selector}{opts}"


@dataclass
class BenchSettings:
    dataset: str = "mnist"
    model: str = "small-cnn"
    batch_size: int = 64  # b
    candidates: int = 640  # B, for the selectors that draw a pool
    steps: int = 1200  # steps of an arm under the suite's regime (1.54 epochs of MNIST at b = 64;
    # about 30 minutes for the default suite on 2 idle CPU cores)
    regime: str = "normal"
    seeds: tuple[int, ...] = (0, 1, 2)
    arms: tuple[str, ...] = DEFAULT_ARMS
    targets: tuple[float, ...] = (0.985, 0.99)  # fixed targets beside uniform's best
    eval_every: int = 100
    eval_samples: int | None = None  # None = the whole validation split
    score_chunk: int | None = None  # None = measure the best chunk on this device first
    hist_every: int = 0  # monitoring off: the micro-benchmark measures what it costs
    lr: float = 0.1
    data_dir: str = "data"
    device: str = "auto"
    threads: int | None = None  # torch CPU threads (None = torch's default, all cores)
    quick: bool = False

    @classmethod
    def quick_settings(cls, **overrides: Any) -> BenchSettings:
        """About 2 minutes on 2 CPU cores: short runs, a smaller pool, 2 seeds, a 2k validation."""
        base = dict(steps=160, candidates=256, seeds=(0, 1), eval_every=40, eval_samples=2000,
                    targets=(0.9, 0.95), quick=True)
        return cls(**{**base, **overrides})

    def arm_list(self) -> list[Arm]:
        arms = [Arm.parse(s) for s in self.arms]
        if not any(a.selector == "uniform" and a.regime is None for a in arms):
            arms.insert(0, Arm("uniform"))  # every ratio is to uniform
        return arms

    def arm_steps(self, arm: Arm) -> int:
        if arm.regime in SHORT_REGIMES and SHORT_REGIMES[arm.regime][0] == self.regime:
            return max(1, round(self.steps * SHORT_REGIMES[arm.regime][1]))
        return self.steps

    def config(self, arm: Arm, seed: int, chunk: int) -> TrainConfig:
        return TrainConfig(
            dataset=self.dataset, model=self.model, data_dir=self.data_dir, selector=arm.selector,
            selector_options={"seed": seed, **dict(arm.options)}, candidates=self.candidates, batch_size=self.batch_size,
            score_chunk=chunk, steps=self.arm_steps(arm), regime=arm.regime or self.regime, lr=self.lr,
            eval_every=self.eval_every, eval_samples=self.eval_samples, hist_every=self.hist_every,
            log_every=50, seed=seed, device=self.device, threads=self.threads,
        )


def steps_for_epochs(settings: BenchSettings, epochs: float) -> int:
    """Steps of `epochs` epochs (N/b steps each) of the settings' dataset."""
    from engine.data import load_dataset

    n = len(load_dataset(settings.dataset, settings.data_dir, seed=0).train)
    return max(1, round(epochs * math.ceil(n / settings.batch_size)))


# --- the machine -----------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(),
            "platform": platform.platform(), "cuda": torch.cuda.get_device_name(0)
            if torch.cuda.is_available() else None}
    return info


def load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def _timed(fn: Callable[[], Any], reps: int, warmup: int = 2) -> float:
    """Median seconds per call of fn (after warm-up calls)."""
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        sync()
        t = time.perf_counter()
        fn()
        sync()  # on a GPU, time the work, not the kernel launches
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _bench_model_and_data(settings: BenchSettings):  # noqa: ANN202 - internal
    from engine.data import load_dataset
    from engine.models import create_model
    from engine.train import resolve_device

    device = resolve_device(settings.device)
    data = load_dataset(settings.dataset, settings.data_dir, seed=0)
    torch.manual_seed(0)
    model = create_model(settings.model, num_classes=data.num_classes,
                         input_shape=data.input_shape).to(device)
    if device.type != "mps":
        model = model.to(memory_format=torch.channels_last)
    return device, data, model


def _candidates(data, n: int, device: torch.device, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: ANN001
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(data.train), generator=g)[:n]
    x, y = data.batch(data.train, idx, augment=False, device=device)
    if device.type != "mps":
        x = x.contiguous(memory_format=torch.channels_last)
    return x, y


def chunk_sweep(model: torch.nn.Module, x: torch.Tensor, chunks: Sequence[int] = CHUNKS,
                rounds: int = 3, reps: int = 3) -> dict[str, Any]:
    """Seconds per candidate batch of the eval-mode forward for each chunk size, interleaved in
    rounds (so a change of load hits every size alike): the median of `reps` calls per round, the
    best round per size; the best chunk is the fastest."""
    from engine.selection import score_logits

    times: dict[int, list[float]] = {c: [] for c in chunks}
    for c in chunks:  # warm-up
        score_logits(model, x, chunk=c)
    for _ in range(rounds):
        for c in chunks:
            times[c].append(_timed(lambda c=c: score_logits(model, x, chunk=c), reps, warmup=0))
    med = {c: min(v) for c, v in times.items()}  # the least disturbed round: load only adds time
    best = min(med, key=med.get)
    return {"batch": int(x.shape[0]), "seconds": {str(c): med[c] for c in chunks}, "best": best,
            "vs_one_batch": med[0] / med[best] if 0 in med else None}


# --- running the suite -----------------------------------------------------------------------


class _Progress:
    """Two rich bars: the suite (runs) and the current run (steps, val accuracy)."""

    def __init__(self, total_runs: int, enabled: bool = True) -> None:
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)

        self.enabled = enabled
        self.progress = Progress(
            TextColumn("[bold]{task.description:<26}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
            disable=not enabled,
        )
        self.suite = self.progress.add_task("suite", total=total_runs, info="")
        self.run = None

    def __enter__(self) -> _Progress:
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    def start_run(self, label: str) -> None:
        if self.run is not None:
            self.progress.remove_task(self.run)
        self.run = self.progress.add_task(escape(label), total=None, info="")

    def __call__(self, event: Event) -> None:
        if self.run is None:
            return
        if isinstance(event, RunStarted):
            self.progress.update(self.run, total=event.total_steps)
        elif isinstance(event, StepMetrics):
            self.progress.update(self.run, completed=event.counters.step)
        elif isinstance(event, Evaluation) and event.split == "val":
            self.progress.update(self.run, info=f"val {event.accuracy:.2%}")
        elif isinstance(event, RunFinished):
            self.progress.update(self.run, completed=event.counters.step)
            self.progress.advance(self.suite)


def run_suite(settings: BenchSettings, out: Path | None = None, *, db_url: str | None = None,
              bench_id: str | None = None, progress: bool = True,
              log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train every arm for every seed; return (and write under `out`) the results."""
    from engine.train import train

    bench_id = bench_id or f"bench-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    if settings.threads:
        torch.set_num_threads(settings.threads)
    arms = settings.arm_list()
    for arm in arms:  # validate every config before spending minutes on the first runs
        settings.config(arm, settings.seeds[0], 128)
    started = time.time()
    load_before = load_average()
    chunk_info = None
    chunk = settings.score_chunk
    if chunk is None:
        _, data, model = _bench_model_and_data(settings)[0:3]
        device = next(model.parameters()).device
        x, _ = _candidates(data, settings.candidates, device)
        chunk_info = chunk_sweep(model, x)
        chunk = int(chunk_info["best"])
        log(f"candidate chunk: {chunk or 'one batch'} is fastest here "
            f"({', '.join(f'{k}: {v * 1e3:.1f} ms' for k, v in chunk_info['seconds'].items())} "
            f"per {chunk_info['batch']} candidates)")
    recorder = _StoreRecorder(db_url, bench_id) if db_url else None

    runs: list[dict[str, Any]] = []
    with _Progress(len(arms) * len(settings.seeds), enabled=progress) as bars:
        for seed in settings.seeds:
            for arm in arms:
                config = settings.config(arm, seed, chunk)
                bars.start_run(f"{arm.label} seed {seed}")
                callbacks: list[Callable[[Event], None]] = [bars]
                if recorder is not None:
                    callbacks.append(recorder.start(config, f"{bench_id} {arm.label} seed {seed}",
                                                    arm.label))
                try:
                    result = train(config, callbacks)
                finally:
                    if recorder is not None:
                        recorder.finish()
                line = (f"{arm.label} seed {seed}: best val {result.best_val_accuracy:.2%} at step "
                        f"{result.best_val_step}, test {result.test_accuracy:.2%}, "
                        f"{result.wall_time:.1f} s training, load {load_average()}")
                if progress:  # rich reads [..] as markup: arm options are written that way
                    bars.progress.console.print(line, markup=False)
                else:
                    log(line)
                runs.append({"arm": arm.label, "selector": arm.selector,
                             "regime": arm.regime or settings.regime, "seed": seed,
                             "steps": config.steps, "load_after": load_average(),
                             "summary": result.summary, "evaluations": result.evaluations})
    results = {
        "bench_id": bench_id,
        "settings": {**asdict(settings), "score_chunk_used": chunk},
        "machine": machine_info(),
        "load_average": {"before": load_before, "after": load_average()},
        "chunk_sweep": chunk_info,
        "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
        "duration_s": time.time() - started,
        "runs": runs,
    }
    results["table"] = build_table(results)
    if out is not None:
        write_outputs(results, out)
    return results


# --- the table -------------------------------------------------------------------------------


def first_reach(evaluations: Sequence[dict[str, Any]], target: float) -> dict[str, Any] | None:
    """The first validation at or above `target` (its counters), or None."""
    return next((e for e in evaluations if e["accuracy"] >= target - 1e-12), None)


def _mean_sd(values: Sequence[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def build_table(results: dict[str, Any]) -> dict[str, Any]:
    """Rows of (arm, target): how many seeds reached it, mean measures, mean per-seed ratios."""
    runs = results["runs"]
    arms = list(dict.fromkeys(r["arm"] for r in runs))
    seeds = list(dict.fromkeys(r["seed"] for r in runs))
    by = {(r["arm"], r["seed"]): r for r in runs}
    uniform = {s: by.get(("uniform", s)) for s in seeds}
    targets: list[tuple[str, Callable[[int], float | None]]] = [
        ("uniform's best", lambda s: uniform[s]["summary"]["best_val_accuracy"] if uniform[s] else None)]
    for t in results["settings"]["targets"]:
        targets.append((f"{t:.1%}", lambda s, t=t: t))

    test_acc = {}
    for arm in arms:
        accs = [by[(arm, s)]["summary"]["test_accuracy"] for s in seeds if (arm, s) in by
                and by[(arm, s)]["summary"]["test_accuracy"] is not None]
        mean, sd = _mean_sd(accs)
        test_acc[arm] = {"mean": mean, "sd": sd, "n": len(accs)}

    rows = []
    for name, target_of in targets:
        for arm in arms:
            reached, ratios = [], {m: [] for m in MEASURES}
            for s in seeds:
                run, target = by.get((arm, s)), target_of(s)
                if run is None or target is None:
                    continue
                hit = first_reach(run["evaluations"], target)
                if hit is None:
                    continue
                reached.append(hit)
                base = first_reach(uniform[s]["evaluations"], target) if uniform[s] else None
                if base is not None:
                    for m in MEASURES:
                        if base[m] > 0:
                            ratios[m].append(hit[m] / base[m])
            row: dict[str, Any] = {"target": name, "arm": arm, "reached": len(reached),
                                   "seeds": sum(1 for s in seeds if (arm, s) in by)}
            for m in MEASURES:
                row[m] = statistics.fmean(h[m] for h in reached) if reached else None
                row[f"{m}_ratio"] = statistics.fmean(ratios[m]) if ratios[m] else None
                row[f"{m}_ratios"] = ratios[m]
            rows.append(row)
    return {"arms": arms, "seeds": seeds, "targets": [n for n, _ in targets], "test_accuracy": test_acc,
            "target_values": {n: [f(s) for s in seeds] for n, f in targets}, "rows": rows}


def _fmt_count(v: float | None) -> str:
    return "—" if v is None else f"{v:,.0f}"


def _fmt_ratio(v: float | None) -> str:
    return "" if v is None else f" ({v:.2f}×)"


def table_markdown(results: dict[str, Any]) -> str:
    table = results["table"]
    lines = [
        "| arm | test acc (mean ± sd) | target | reached | steps (× uniform) | samples forwarded "
        "(×) | samples back-propagated (×) | wall-clock s (×) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in table["rows"]:
        acc = table["test_accuracy"][row["arm"]]
        acc_s = "—" if acc["mean"] is None else (
            f"{acc['mean']:.2%}" + (f" ± {acc['sd']:.2%}" if acc["sd"] is not None else ""))
        reached = f"{row['reached']}/{row['seeds']}"
        if row["reached"] == 0:
            cells = ["not reached"] * 4
        else:
            cells = [_fmt_count(row["step"]) + _fmt_ratio(row["step_ratio"]),
                     _fmt_count(row["samples_forwarded"]) + _fmt_ratio(row["samples_forwarded_ratio"]),
                     _fmt_count(row["samples_backpropagated"])
                     + _fmt_ratio(row["samples_backpropagated_ratio"]),
                     ("—" if row["wall_time"] is None else f"{row['wall_time']:.1f}")
                     + _fmt_ratio(row["wall_time_ratio"])]
        lines.append(f"| {row['arm']} | {acc_s} | {row['target']} | {reached} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def results_markdown(results: dict[str, Any], command: str | None = None) -> str:
    s, m = results["settings"], results["machine"]
    targets = results["table"]["target_values"]
    uniform_best = ", ".join(f"{v:.2%}" for v in targets.get("uniform's best", []) if v is not None)
    head = [
        f"# Benchmark {results['bench_id']}",
        "",
        f"- Command: `{command}`" if command else "",
        f"- Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} threads)"
        + (f", {m['cuda']}" if m.get("cuda") else ""),
        f"- Load average (1/5/15 min) before: {results['load_average']['before']}, after: "
        f"{results['load_average']['after']}; suite took {results['duration_s'] / 60:.1f} min",
        f"- Setting: {s['dataset']}, {s['model']}, b = {s['batch_size']}, B = {s['candidates']}, "
        f"{s['steps']} steps, regime {s['regime']}, seeds {list(s['seeds'])}, validation every "
        f"{s['eval_every']} steps on {s['eval_samples'] or 'all'} samples, candidate chunk "
        f"{s['score_chunk_used'] or 'one batch'}" + (" (quick mode)" if s["quick"] else ""),
        f"- Uniform's best validation accuracy per seed: {uniform_best}",
        "- Steps/samples/wall-clock are the mean over the seeds that reached the target; ratios are "
        "the mean of per-seed ratios to uniform at the same seed (only seeds where both reached it).",
        "",
    ]
    return "\n".join(line for line in head if line is not None) + "\n" + table_markdown(results) + "\n"


# --- the figure ------------------------------------------------------------------------------


def _curves(results: dict[str, Any]) -> dict[str, dict[str, list[float]]]:
    """Per arm: x (steps), mean wall-clock, mean/min/max validation accuracy over seeds."""
    out = {}
    for arm in results["table"]["arms"]:
        evs = [r["evaluations"] for r in results["runs"] if r["arm"] == arm]
        n = min(len(e) for e in evs)
        if n == 0:
            continue
        acc = [[e[i]["accuracy"] for e in evs] for i in range(n)]
        out[arm] = {
            "step": [statistics.fmean(e[i]["step"] for e in evs) for i in range(n)],
            "wall_time": [statistics.fmean(e[i]["wall_time"] for e in evs) for i in range(n)],
            "mean": [statistics.fmean(a) for a in acc], "low": [min(a) for a in acc],
            "high": [max(a) for a in acc],
        }
    return out


def figure_html(results: dict[str, Any]) -> str:
    """Offline HTML (plotly.js embedded): validation accuracy vs steps and vs wall-clock."""
    import plotly.graph_objects as go
    from plotly.colors import qualitative
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("validation accuracy vs steps",
                                                        "validation accuracy vs wall-clock (s)"))
    curves = _curves(results)
    lows = []
    for i, (arm, c) in enumerate(curves.items()):
        color = qualitative.Plotly[i % len(qualitative.Plotly)]
        for col, xkey in ((1, "step"), (2, "wall_time")):
            x = c[xkey]
            fig.add_trace(go.Scatter(x=x + x[::-1], y=c["high"] + c["low"][::-1], fill="toself",
                                     line={"width": 0}, fillcolor=color, opacity=0.18,
                                     hoverinfo="skip", showlegend=False, legendgroup=arm), row=1, col=col)
            fig.add_trace(go.Scatter(x=x, y=c["mean"], mode="lines+markers", name=arm, legendgroup=arm,
                                     line={"color": color}, marker={"size": 4},
                                     showlegend=col == 1), row=1, col=col)
        lows.extend(c["mean"][len(c["mean"]) // 3:])
    low = max(0.0, min(lows) - 0.01) if lows else 0.0
    fig.update_yaxes(range=[low, 1.0], tickformat=".1%")
    fig.update_xaxes(title_text="training steps", row=1, col=1)
    fig.update_xaxes(title_text="wall-clock seconds of training", row=1, col=2)
    s = results["settings"]
    fig.update_layout(title=f"{results['bench_id']}: {s['dataset']}, {s['model']}, b={s['batch_size']}, "
                      f"B={s['candidates']}, seeds {list(s['seeds'])} (band: min-max over seeds)",
                      height=560, legend={"orientation": "h", "y": -0.15})
    return fig.to_html(include_plotlyjs=True, full_html=True)


def write_outputs(results: dict[str, Any], out: Path, command: str | None = None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    (out / "results.md").write_text(results_markdown(results, command or results.get("command")))
    (out / "curves.html").write_text(figure_html(results))


# --- micro-benchmarks ------------------------------------------------------------------------


def naive_mms(logits: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The definition, one sample and one class at a time in Python (float64): the reference the
    vectorised `minimal_margin_scores` is checked against."""
    z, w = logits.double(), weight.double()
    out = []
    for row in z:
        i = int(row.argmax())
        best = math.inf
        for j in range(z.shape[1]):
            if j != i:
                best = min(best, float((row[i] - row[j]) / torch.linalg.vector_norm(w[i] - w[j])))
        out.append(best)
    return torch.tensor(out, dtype=torch.float64)


def micro_mms_vs_naive(ks: Sequence[int] = (10, 100, 1000), d: int = 128) -> list[dict[str, Any]]:
    from engine.selection import minimal_margin_scores

    rows = []
    for k in ks:
        n = 64 if k <= 100 else 16  # the naive loop is O(B K d) Python work
        g = torch.Generator().manual_seed(k)
        w = torch.randn(k, d, generator=g)
        logits = torch.randn(n, d, generator=g) @ w.T
        fast = _timed(lambda: minimal_margin_scores(logits, w), reps=20)
        t = time.perf_counter()
        ref = naive_mms(logits, w)
        slow = time.perf_counter() - t
        vec = minimal_margin_scores(logits, w).double()
        rows.append({"K": k, "d": d, "batch": n, "vectorised_s": fast, "naive_s": slow,
                     "speedup": slow / fast, "max_abs_diff": float((vec - ref).abs().max()),
                     "max_rel_diff": float(((vec - ref).abs() / ref.abs().clamp_min(1e-12)).max())})
    return rows


def _contiguous_copy(model: torch.nn.Module) -> torch.nn.Module | None:
    import copy

    try:
        return copy.deepcopy(model).to(memory_format=torch.contiguous_format)
    except Exception:  # noqa: BLE001 - a model that cannot be copied just skips this line
        return None


def micro_step_breakdown(settings: BenchSettings, chunk: int, reps: int = 15) -> dict[str, Any]:
    """Seconds of each part of one fresh-MMS step (B candidates, b trained) and of a uniform step."""
    from engine.selection import head_weight, make_selector, minimal_margin_scores, score_logits
    from engine.train import parameter_groups

    device, data, model = _bench_model_and_data(settings)
    opt = torch.optim.SGD(parameter_groups(model, 1e-4), lr=0.01, momentum=0.9)
    big, b = settings.candidates, settings.batch_size
    g = torch.Generator().manual_seed(1)

    def gather(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(len(data.train), (n,), generator=g)
        x, y = data.batch(data.train, idx, augment=False, device=device)
        return x.contiguous(memory_format=torch.channels_last), y

    x, y = gather(big)
    xb, yb = x[:b], y[:b]

    def train_step(xs: torch.Tensor, ys: torch.Tensor) -> None:
        model.train()
        loss = F.cross_entropy(model(xs), ys)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    logits = score_logits(model, x, chunk=chunk)
    w = head_weight(model)
    memory = make_selector("mms-memory")
    memory.memory = torch.rand(len(data.train))
    idx_pool = torch.randperm(len(data.train))[:big]
    parts = {
        "gather_B": _timed(lambda: gather(big), reps),
        "candidate_forward": _timed(lambda: score_logits(model, x, chunk=chunk), reps),
        "mms_arithmetic": _timed(lambda: minimal_margin_scores(logits, w).topk(b, largest=False), reps),
        "train_step_b": _timed(lambda: train_step(xb, yb), reps),
        "gather_b": _timed(lambda: gather(b), reps),
        "memory_select": _timed(lambda: memory.select(model, x, y, idx_pool, batch_size=b), reps),
    }
    steps_per_epoch = math.ceil(len(data.train) / b)
    refresh_per_step = len(data.train) / steps_per_epoch  # samples re-scored per step (once an epoch)
    mms_step = parts["gather_B"] + parts["candidate_forward"] + parts["mms_arithmetic"] + parts["train_step_b"]
    uniform_step = parts["gather_b"] + parts["train_step_b"]
    memory_step = (parts["gather_B"] + parts["memory_select"] + parts["train_step_b"]
                   + parts["candidate_forward"] * refresh_per_step / big)
    return {
        "B": big, "b": b, "chunk": chunk, "seconds": parts,
        "mms_step_s": mms_step, "uniform_step_s": uniform_step, "memory_step_s": memory_step,
        "share_candidate_forward": parts["candidate_forward"] / mms_step,
        "share_mms_arithmetic": parts["mms_arithmetic"] / mms_step,
        "mms_step_vs_uniform": mms_step / uniform_step,
        "memory_step_vs_uniform": memory_step / uniform_step,
        "forward_sample_vs_train_sample": (parts["candidate_forward"] / big) / (parts["train_step_b"] / b),
    }


def micro_monitoring(settings: BenchSettings, chunk: int, steps: int = 200, rounds: int = 3) -> list[dict[str, Any]]:
    """Wall-clock of the same short run with histograms every step vs monitoring off,
    alternated `rounds` times (the minimum of each is kept, the least disturbed by load)."""
    from engine.train import train

    rows = []
    for selector in ("uniform", "mms"):
        walls: dict[int, list[float]] = {1: [], 0: []}
        for _ in range(rounds):
            for hist in (1, 0):
                cfg = TrainConfig(dataset=settings.dataset, model=settings.model, data_dir=settings.data_dir,
                                  selector=selector, candidates=settings.candidates,
                                  batch_size=settings.batch_size, score_chunk=chunk, steps=steps,
                                  regime="constant", eval_every=steps, eval_samples=500, hist_every=hist,
                                  log_every=10, seed=0, device=settings.device)
                walls[hist].append(train(cfg).wall_time)
        on, off = min(walls[1]), min(walls[0])
        rows.append({"selector": selector, "steps": steps, "hist_every_1_s": on, "hist_every_0_s": off,
                     "overhead": on / off - 1.0, "all_s": {str(k): v for k, v in walls.items()}})
    return rows


def run_micro(settings: BenchSettings, out: Path | None = None, *, log: Callable[[str], None] = print,
              monitoring_steps: int = 200, command: str | None = None) -> dict[str, Any]:
    """All micro-benchmarks in one run (so their ratios share the machine's state)."""
    load_before = load_average()
    log("MMS: vectorised vs naive loop ...")
    mms_rows = micro_mms_vs_naive()
    log("candidate chunk sweep ...")
    _, data, model = _bench_model_and_data(settings)
    x, _ = _candidates(data, settings.candidates, next(model.parameters()).device)
    sweep = chunk_sweep(model, x)
    chunk = int(sweep["best"]) if settings.score_chunk is None else settings.score_chunk
    from engine.selection import score_logits
    contiguous = x.contiguous()
    layout = {"channels_last_s": _timed(lambda: score_logits(model, x, chunk=chunk), 7),
              "contiguous_model_and_input_s": _timed(
                  lambda: score_logits(model_nchw, contiguous, chunk=chunk), 7)} if (
        model_nchw := _contiguous_copy(model)) is not None else None
    log("step breakdown ...")
    breakdown = micro_step_breakdown(settings, chunk)
    log("monitoring overhead ...")
    monitoring = micro_monitoring(settings, chunk, steps=monitoring_steps)
    results = {"command": command, "settings": asdict(settings), "machine": machine_info(),
               "load_average": {"before": load_before, "after": load_average()},
               "mms_vs_naive": mms_rows, "chunk_sweep": sweep, "layout": layout, "step_breakdown": breakdown,
               "monitoring": monitoring}
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "micro.json").write_text(json.dumps(results, indent=1))
        (out / "micro.md").write_text(micro_markdown(results, command))
    return results


def micro_markdown(r: dict[str, Any], command: str | None = None) -> str:
    m, bd = r["machine"], r["step_breakdown"]
    lines = [
        "## Micro-benchmarks", "",
        f"{'Command: `' + command + '`. ' if command else ''}Machine: {m['cpu']}, {m['cores']} cores, "
        f"{m['torch_threads']} torch threads; load average before {r['load_average']['before']}, "
        f"after {r['load_average']['after']}.", "",
        "Exact vectorised MMS vs a naive per-sample, per-class Python loop (float64 reference):", "",
        "| K | batch | vectorised | naive loop | speed-up | max abs diff | max rel diff |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in r["mms_vs_naive"]:
        lines.append(f"| {row['K']} | {row['batch']} | {row['vectorised_s'] * 1e3:.3f} ms | "
                     f"{row['naive_s'] * 1e3:,.0f} ms | {row['speedup']:,.0f}× | {row['max_abs_diff']:.1e} | "
                     f"{row['max_rel_diff']:.1e} |")
    sw = r["chunk_sweep"]
    lines += ["", f"Eval-mode forward of {sw['batch']} candidates by chunk size (best round of medians):", "",
              "| chunk | " + " | ".join("one batch" if k == "0" else k for k in sw["seconds"]) + " |",
              "|---" * (len(sw["seconds"]) + 1) + "|",
              "| ms | " + " | ".join(f"{v * 1e3:.1f}" for v in sw["seconds"].values()) + " |", "",
              f"Best: {sw['best'] or 'one batch'} ({sw['vs_one_batch']:.2f}× faster than one batch).", ""]
    if r.get("layout"):
        lay = r["layout"]
        lines += [f"Memory layout at that chunk: channels-last {lay['channels_last_s'] * 1e3:.1f} ms vs "
                  f"contiguous (NCHW) {lay['contiguous_model_and_input_s'] * 1e3:.1f} ms "
                  f"({lay['contiguous_model_and_input_s'] / lay['channels_last_s']:.2f}×).", ""]
    s = bd["seconds"]
    lines += [
        f"One fresh-MMS step (B = {bd['B']}, b = {bd['b']}, chunk {bd['chunk'] or 'one batch'}), parts "
        "timed separately (median):", "",
        "| part | ms | share of an MMS step |", "|---|---|---|",
        f"| gather B candidates | {s['gather_B'] * 1e3:.2f} | {s['gather_B'] / bd['mms_step_s']:.1%} |",
        f"| candidate forward (eval, no grad) | {s['candidate_forward'] * 1e3:.2f} | "
        f"{bd['share_candidate_forward']:.1%} |",
        f"| MMS arithmetic + top-b | {s['mms_arithmetic'] * 1e3:.3f} | {bd['share_mms_arithmetic']:.2%} |",
        f"| train step on b (forward, backward, SGD) | {s['train_step_b'] * 1e3:.2f} | "
        f"{s['train_step_b'] / bd['mms_step_s']:.1%} |", "",
        f"An MMS step costs {bd['mms_step_vs_uniform']:.2f}× a uniform step "
        f"({bd['mms_step_s'] * 1e3:.1f} vs {bd['uniform_step_s'] * 1e3:.1f} ms); a forward-only sample "
        f"costs {bd['forward_sample_vs_train_sample']:.2f} of a trained sample. An mms-memory step "
        f"(selection from memory {s['memory_select'] * 1e3:.2f} ms + refresh amortised over the epoch) "
        f"costs about {bd['memory_step_vs_uniform']:.2f}× a uniform step.", "",
        "Monitoring overhead (histograms + selection statistics every step vs off, same run, "
        "minimum of alternated repeats):", "",
        "| selector | steps | monitoring every step | off | overhead |", "|---|---|---|---|---|",
    ]
    for row in r["monitoring"]:
        lines.append(f"| {row['selector']} | {row['steps']} | {row['hist_every_1_s']:.2f} s | "
                     f"{row['hist_every_0_s']:.2f} s | {row['overhead']:+.1%} |")
    return "\n".join(lines) + "\n"


# --- recording into a store (optional) --------------------------------------------------------


@dataclass
class _StoreRecorder:
    """Records each benchmark run as a normal run in a MarginScope store, tagged with the
    benchmark id. Imports backend.store lazily: only when a store URL was given."""

    url: str
    bench_id: str
    store: Any = None
    writer: Any = None
    run_id: int | None = None
    status: str = "running"
    _created: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        from backend.settings import Settings
        from backend.store import open_store

        self.store = open_store(Settings(db_url=self.url))  # refuses an un-migrated database

    def start(self, config: TrainConfig, name: str, arm: str) -> Callable[[Event], None]:
        from backend.store.writer import BatchedWriter

        run = self.store.create_run(name=name, config=config.model_dump(),
                                    tags=["benchmark", self.bench_id, f"arm:{arm}"])
        self.run_id = run.id
        self._created.append(run.id)
        self.store.set_status(run.id, "running", pid=os.getpid(), host=platform.node())
        self.writer = BatchedWriter(self.store, run.id)
        self.status = "failed"

        def record(event: Event) -> None:
            self.writer(event)
            if isinstance(event, RunFinished):
                self.status = event.status

        return record

    def finish(self) -> None:
        if self.writer is None:
            return
        self.writer.close()
        self.store.set_status(self.run_id, self.status)
        self.writer = None
