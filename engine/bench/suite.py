"""The runner: every arm for every seed, one machine, one invocation.

Runs go seed by seed, all arms of one seed back to back, the arm order rotated from one seed to the
next (arm k of n runs first for seed k, a Latin square over n seeds), so neither a slow drift of the
machine's load nor the position in a seed's sequence favours an arm; the candidate chunk size is
measured once, before the first run, and used by every arm. Each run records wall-clock and the
process's CPU time (and its phases) beside the counters.

The load rule (protocol v2, fixed before any suite runs; `load_verdict`): with one torch thread a
run's CPU time / wall-clock is the share of a core the training process got; a run below
``discard_cpu_share`` (0.9), or that ends with a 1-minute load average above ``discard_load``
(default: the machine's cores + 1), is discarded by the code, recorded under ``discarded`` with the
reason, and run again, at most ``max_reruns`` times; a run still failing the rule then is kept and
flagged (``load_flag``), never silently. A run shorter than ``min_judged_wall`` (5 s) is not judged:
its ratio is mostly start-up and timer noise (the named suites' shortest run, uniform at 25% of
the short suite, trains for several times that). With more threads the ratio says nothing (idle OpenMP
threads spin and count as CPU time), so no run is judged. Each run can also be handed to a tracker (`TrackRun`): that is how the backend records
benchmark runs in its store without the engine knowing there is one.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from rich.markup import escape

from marginscope.engine.bench.arms import BenchSettings
from marginscope.engine.bench.machine import bench_model_and_data, candidate_batch, chunk_sweep, load_average, machine_info
from marginscope.engine.bench.report import write_outputs
from marginscope.engine.bench.stats import build_table
from marginscope.engine.events import Callback, Evaluation, Event, RunFinished, RunStarted, StepMetrics

TrackRun = Callable[[str, dict[str, Any], Sequence[str]], AbstractContextManager[Callback]]
"""Something that follows each training of a suite, e.g. records it as a run in a store.

`run_suite` calls ``track(name, config, tags)`` once per training, just before it starts, and trains
inside the returned context manager, adding the callback it yields to that training's callbacks (after
the progress bar), so the callback sees every event of the run, `RunFinished` included. If training
raises, the exception propagates through the context manager (which can record the failure) and
then ends the suite. The arguments, for benchmark id ``bench_id``, an arm labelled ``arm`` (e.g.
``mms-memory[refresh_epochs=2]@aggressive``) and seed ``seed``:

- name: ``f"{bench_id} {arm} seed {seed}"``
- config: the run's ``TrainConfig.model_dump()``
- tags: ``["benchmark", bench_id, f"arm:{arm}"]``
"""


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


PARTIAL = "results.partial.json"  # a suite's finished runs so far, under --out, until it ends


def _same_settings(settings: BenchSettings) -> dict[str, Any]:
    """The settings as they read back from JSON (tuples become lists), to compare with a saved suite."""
    return json.loads(json.dumps(asdict(settings), default=str))


def _resumed(settings: BenchSettings, out: Path | None) -> dict[str, Any]:
    """The unfinished suite saved under `out`, checked to be the one `settings` describe."""
    path = None if out is None else out / PARTIAL
    if path is None or not path.exists():
        raise ValueError(f"nothing to resume: no unfinished suite ({PARTIAL}) in {out}")
    saved = json.loads(path.read_text())
    if saved["settings"] != _same_settings(settings):
        differ = sorted(k for k, v in _same_settings(settings).items() if saved["settings"].get(k) != v)
        raise ValueError(f"the unfinished suite in {out} ran other settings ({', '.join(differ)}); "
                         "resume it with the command that started it")
    return saved


def load_verdict(settings: BenchSettings, *, cpu_time: float | None, wall_time: float | None,
                 load_after: Sequence[float] | None, cores: int | None = None) -> str | None:
    """Why the load rule discards a run (see the module docstring), or None to keep it."""
    if settings.protocol < 2 or settings.threads != 1 or (wall_time or 0.0) < settings.min_judged_wall:
        return None
    if cpu_time is not None and wall_time and cpu_time / wall_time < settings.discard_cpu_share:
        return (f"CPU time / wall-clock {cpu_time / wall_time:.2f}, below {settings.discard_cpu_share:.2f}: "
                "the process did not have its core")
    level = settings.discard_load if settings.discard_load is not None else (cores or os.cpu_count() or 1) + 1
    if load_after and load_after[0] > level:
        return f"1-min load average {load_after[0]:.2f} at the end of the run, above {level:g}"
    return None


def run_suite(settings: BenchSettings, out: Path | None = None, *, track: TrackRun | None = None,
              bench_id: str | None = None, progress: bool = True, resume: bool = False,
              command: str | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train every arm for every seed; return (and write under `out`) the results. Each training
    is wrapped by `track` when given (see `TrackRun`).

    A suite takes hours: with `out`, the finished runs are saved after each one, and `resume`
    continues a suite that was stopped (its finished runs kept, its chunk size reused, the
    others run in their places of the rotation)."""
    from marginscope.engine.loop import train

    saved = _resumed(settings, out) if resume else None
    bench_id = saved["bench_id"] if saved else bench_id or \
        f"bench-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    if settings.threads:
        torch.set_num_threads(settings.threads)
    arms = settings.arm_list()
    for arm in arms:  # validate every config before spending minutes on the first runs
        settings.config(arm, settings.seeds[0], 128)
    started = time.time()
    load_before = saved["load_average"]["before"] if saved else load_average()
    chunk_info = saved["chunk_sweep"] if saved else None
    chunk = saved["score_chunk_used"] if saved else settings.score_chunk
    if chunk is None:
        device, data, model = bench_model_and_data(settings)
        x, _ = candidate_batch(data, settings.candidates, device)
        chunk_info = chunk_sweep(model, x)
        chunk = int(chunk_info["best"])
        log(f"candidate chunk: {chunk or 'one batch'} is fastest here "
            f"({', '.join(f'{k}: {v * 1e3:.1f} ms' for k, v in chunk_info['seconds'].items())} "
            f"per {chunk_info['batch']} candidates)")

    first_started = saved["started"] if saved else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started))
    resumed = (saved.get("resumed", []) + [time.strftime("%Y-%m-%d %H:%M:%S")]) if saved else []
    # runs taken out of the saved file by hand to be run again, each with the reason (kept on record)
    discarded = saved.get("discarded", []) if saved else []
    runs: list[dict[str, Any]] = saved["runs"] if saved else []
    done = {(r["arm"], r["seed"]) for r in runs}
    previous = saved["duration_s"] if saved else 0.0
    if saved:
        log(f"resuming {bench_id}: {len(runs)} of {len(arms) * len(settings.seeds)} runs done")

    def save_partial() -> None:
        if out is None:
            return
        out.mkdir(parents=True, exist_ok=True)
        (out / PARTIAL).write_text(json.dumps({
            "bench_id": bench_id, "settings": _same_settings(settings), "score_chunk_used": chunk,
            "chunk_sweep": chunk_info, "load_average": {"before": load_before},
            "started": first_started, "duration_s": previous + time.time() - started,
            "resumed": resumed, "discarded": discarded, "runs": runs}, default=str))

    with _Progress(len(arms) * len(settings.seeds) - len(done), enabled=progress) as bars:
        for position, seed in enumerate(settings.seeds):
            for slot, arm in enumerate(settings.order(arms, position)):
                if (arm.label, seed) in done:
                    continue
                config = settings.config(arm, seed, chunk)
                reruns = 0
                while True:  # the load rule: a run judged unfit is run again, at most max_reruns times
                    bars.start_run(f"{arm.label} seed {seed}")
                    tracking = (nullcontext(None) if track is None else
                                track(f"{bench_id} {arm.label} seed {seed}", config.model_dump(),
                                      ["benchmark", bench_id, f"arm:{arm.label}"]))
                    with tracking as tracker:
                        result = train(config, [bars] if tracker is None else [bars, tracker])
                    load_after = load_average()
                    line = (f"{arm.label} seed {seed}: best val {result.best_val_accuracy:.2%} at step "
                            f"{result.best_val_step}, test {result.test_accuracy:.2%}, "
                            f"{result.wall_time:.1f} s training ({result.cpu_time:.1f} s CPU), load {load_after}")
                    if progress:  # rich reads [..] as markup: arm options are written that way
                        bars.progress.console.print(line, markup=False)
                    else:
                        log(line)
                    why = load_verdict(settings, cpu_time=result.cpu_time, wall_time=result.wall_time,
                                       load_after=load_after)
                    if why is None or reruns >= settings.max_reruns:
                        break
                    reruns += 1
                    discarded.append({"arm": arm.label, "seed": seed, "why": why, "rule": True,
                                      "wall_time": result.wall_time, "cpu_time": result.cpu_time,
                                      "load_after": load_after})
                    log(f"{arm.label} seed {seed} discarded by the load rule ({why}); running it again")
                record = {"arm": arm.label, "selector": arm.selector, "reference": arm.reference,
                          "regime": arm.regime or settings.regime, "seed": seed,
                          "position": slot, "steps": config.steps,
                          "label_noise": config.label_noise, "load_after": load_after,
                          "selected_flipped_share": (result.selected_flipped / result.samples_backpropagated
                                                     if config.label_noise else None),
                          "summary": result.summary, "evaluations": result.evaluations}
                if settings.protocol >= 2:
                    record.update(frontier=arm.length, reruns=reruns, load_flag=why)
                runs.append(record)
                save_partial()
    runs.sort(key=lambda r: (settings.seeds.index(r["seed"]), r["position"]))  # resumed runs in their places
    results = {
        "bench_id": bench_id,
        "settings": {**asdict(settings), "score_chunk_used": chunk},
        "machine": machine_info(),
        "load_average": {"before": load_before, "after": load_average()},
        "chunk_sweep": chunk_info,
        "started": first_started,
        "duration_s": previous + time.time() - started,  # of every process that ran the suite
        "resumed": resumed,
        "discarded": discarded,
        "runs": runs,
    }
    if command is not None:
        results["command"] = command
    results["table"] = build_table(results)
    if out is not None:
        write_outputs(results, out, command)
        (out / PARTIAL).unlink(missing_ok=True)
    return results
