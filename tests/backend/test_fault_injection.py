"""Nothing lost, by construction: kill -9 a run's worker again and again, resume it each time, and
find every series equal to an uninterrupted run of the same seed.

The invariant under test (docs/reliability.md, "Resume"): after a resume from a checkpoint at step
S, every row the engine emitted at steps <= S is in the store exactly once, and every row after S
comes from the resumed attempt. A real dashboard (`marginscope serve` in a subprocess) launches a
tiny digits run that checkpoints every 3 steps, so kills land on every moment that matters:
while a checkpoint is written (before or after the spool is made durable), while the reporter
posts a batch, between them, during the start-up of a resumed attempt (while it sends the killed
attempt's spool). The moments are drawn from a seeded generator: the seed is printed
(`pytest -s`), and MARGINSCOPE_FAULT_SEED=<seed> draws the same moments again (the training's own
speed still varies from run to run, so the kill's exact instruction does).

Compared with the uninterrupted run, on CPU, exactly: every scalar row (by key and step, with its
epoch and sample counters; timings excluded: they measure the machine, not the training), every
histogram (counts, quantiles, mean, threshold), every class selection, every sample snapshot and
each sample's final record (selection counts, suspect scores).
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from servers import DashboardProcess, wait_for

from marginscope.backend.store.sqlalchemy_store import SqlAlchemyStore
from marginscope.engine.events import POPULATIONS

pytestmark = pytest.mark.slow

CONFIG = {"dataset": "digits", "selector": "mms", "candidates": 64, "batch_size": 16, "steps": 400,
          "eval_every": 10, "hist_every": 3, "log_every": 1, "checkpoint_every": 3,
          "samples_every": 6, "samples_k": 16, "seed": 7, "device": "cpu"}
KILLS = 8
# Where a kill lands: mostly a few dozen steps past where the store has the run (the store lags
# the worker by up to a post interval, 0.5 s: a kill then falls at any point of a step, a
# checkpoint or a post), sometimes during a resumed attempt's start-up (it is sending the killed
# attempt's spool). Drawn in steps rather than seconds, so a machine of any speed gets its kills.
STEPS_AHEAD = (10, 40)
JITTER_S = 0.5
START_UP_SHARE = 0.25
START_UP_S = 1.5
TIMINGS = {"samples_per_s", "score_time", "step_time"}  # the machine's speed, not the training's
MACHINE_PREFIXES = ("system/", "time/")  # system metrics, running time and ETA: read from the machine


class Dashboard(DashboardProcess):
    def __init__(self, data_dir: Path) -> None:
        super().__init__(data_dir, {"MARGINSCOPE_HEARTBEAT_INTERVAL": "0.5"})

    def run(self, run_id: int) -> dict[str, Any]:
        return self.get(f"/api/runs/{run_id}")  # type: ignore[no-any-return]

    def launch(self) -> int:
        return int(self.post("/api/runs", {"config": CONFIG}, expect=201)["id"])


@pytest.fixture
def dashboard(tmp_path: Path) -> Iterator[Dashboard]:
    from marginscope.backend.store.db import upgrade

    d = Dashboard(tmp_path / "data")
    d.data_dir.mkdir()
    upgrade(f"sqlite:///{d.data_dir / 'marginscope.db'}")
    d.start()
    yield d
    d.stop()
    for run in d.get("/api/runs?limit=100")["data"] if d.proc else []:
        if run["status"] == "running" and run["pid"]:
            os.killpg(run["pid"], signal.SIGKILL)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def test_kill_9_at_random_moments_and_resume_loses_nothing(dashboard: Dashboard) -> None:
    seed = int(os.environ.get("MARGINSCOPE_FAULT_SEED") or random.SystemRandom().randrange(2**31))
    print(f"\nfault injection seed: {seed} (MARGINSCOPE_FAULT_SEED={seed} draws these delays again)")
    rng = random.Random(seed)

    reference = dashboard.launch()
    wait_for(lambda: dashboard.run(reference)["status"] not in ("queued", "running"), "the reference run", 300)
    assert dashboard.run(reference)["status"] == "finished", dashboard.run(reference)["error"]

    faulted = dashboard.launch()
    checkpoint = dashboard.data_dir / "runs" / str(faulted) / "checkpoint.pt"
    killed_at: list[tuple[str, int]] = []  # (when, the step the store had reached)
    pids: set[int] = set()
    for attempt in range(KILLS):
        wait_for(lambda: dashboard.run(faulted)["status"] != "queued", f"attempt {attempt} to start", 120)
        run = dashboard.run(faulted)
        if run["status"] == "finished":
            break
        assert run["status"] == "running" and run["pid"] not in pids, run
        pids.add(run["pid"])
        if attempt == 0:  # a resume needs a checkpoint: the first kill comes after the first one
            wait_for(checkpoint.exists, "the first checkpoint", 120, interval=0.02)
        if attempt > 0 and rng.random() < START_UP_SHARE:
            moment = f"start-up + {rng.uniform(0.0, START_UP_S):.2f} s"
            time.sleep(float(moment.split()[2]))
        else:
            target = run["progress"]["step"] + rng.randint(*STEPS_AHEAD)
            wait_for(lambda: dashboard.run(faulted)["progress"]["step"] >= target
                     or dashboard.run(faulted)["status"] != "running", f"step {target}", 300, interval=0.05)
            jitter = rng.uniform(0.0, JITTER_S)
            moment = f"step {target} + {jitter:.2f} s"
            time.sleep(jitter)
        _kill_group(run["pid"])
        killed_at.append((moment, dashboard.run(faulted)["progress"]["step"]))
        wait_for(lambda: dashboard.run(faulted)["status"] != "running", "the launcher to see the kill", 30)
        run = dashboard.run(faulted)
        if run["status"] == "finished":  # it reported its end before the kill landed
            break
        assert run["status"] == "crashed", run
        assert dashboard.post(f"/api/runs/{faulted}/resume")["status"] == "queued"
    print(f"kills (moment, step stored at the kill): {killed_at}")
    wait_for(lambda: dashboard.run(faulted)["status"] not in ("queued", "running"), "the last attempt", 300)
    final = dashboard.run(faulted)
    assert final["status"] == "finished", final["error"]
    assert len(killed_at) >= 3, f"the run outran the kills ({killed_at}): make it longer"

    store = SqlAlchemyStore(f"sqlite:///{dashboard.data_dir / 'marginscope.db'}", data_dir=dashboard.data_dir)
    try:
        expected, got = _everything(store, reference), _everything(store, faulted)
    finally:
        store.close()
    for kind in expected:
        assert got[kind] == expected[kind], f"{kind} differ (seed {seed}, kills {killed_at})"
    logs = [line["message"] for line in dashboard.get(f"/api/runs/{faulted}/logs?limit=5000")["data"]]
    # one drop of a killed attempt's tail per resumed attempt that reported its start (one killed
    # during its start-up may not have: the next one drops both tails at once)
    assert 1 <= sum(m.startswith("resuming from the checkpoint") for m in logs) <= len(killed_at)


def _everything(store: SqlAlchemyStore, run_id: int) -> dict[str, Any]:
    """Every row of a run as comparable values: no seq, time or wall time (they differ by nature)."""
    last = store.last_seq(run_id)
    scalars: dict[str, list[tuple[Any, ...]]] = {}
    for row in store.iter_scalars(run_id, until_seq=last):
        if row.key not in TIMINGS and not row.key.startswith(MACHINE_PREFIXES):
            scalars.setdefault(row.key, []).append(
                (row.step, row.epoch, row.samples_forwarded, row.samples_backpropagated, row.value))
    histograms = {pop: [(h.step, h.epoch, h.counts, h.quantiles, h.mean, h.count, h.threshold)
                        for h in store.iter_histograms(run_id, pop, until_seq=last)]
                  for pop in POPULATIONS}
    selection = [(s.step, s.epoch, s.candidate_counts, s.selected_counts, s.misclassified_share)
                 for s in store.iter_selection(run_id, until_seq=last)]
    snapshots = [json.dumps({k: v for k, v in snap.items() if k not in ("seq", "wall_time", "time")},
                            sort_keys=True)
                 for snap in store.iter_sample_snapshots(run_id, until_seq=last)]
    records = sorted(json.dumps(record.__dict__, sort_keys=True, default=str)
                     for record in store.iter_sample_records(run_id))
    return {"scalars": scalars, "histograms": histograms, "selection": selection,
            "sample snapshots": snapshots, "sample records": records}
