"""One run on two processes (gloo on CPU): identical weights on every rank, events from rank 0
alone with counters and histograms summed over the ranks, accuracy comparable to one process,
and a resumed DDP run that follows the uninterrupted one.

The ranks are real processes (torch.multiprocessing, spawn) joined through a file store in the
test's folder, so no port is opened; gloo talks over the loopback interface. Every spawn is
bounded in time and its processes are killed when it ends.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from pydantic import ValidationError

from marginscope.engine.callbacks import Recorder
from marginscope.engine.config import TrainConfig
from marginscope.engine.distributed import DistributedMonitor, Ranks
from marginscope.engine.events import StepMetrics, StopTraining
from marginscope.engine.monitoring import StepRecord, histogram_edges, histogram_event
from marginscope.engine.selection import Selection, minimal_margin_scores
from marginscope.engine.loop import train

B, b, STEPS = 64, 16, 120
BASE = dict(dataset="digits", candidates=B, batch_size=b, steps=STEPS, eval_every=40, hist_every=10,
            log_every=10, checkpoint_every=60, regime="constant", lr=0.01, seed=3, device="cpu",
            threads=1)
SPAWN_TIMEOUT = 240.0


def _join(rank: int, world: int, store: str) -> None:
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"  # loopback only
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)


def spawn(fn: Callable[..., None], tmp: Path, *args: Any, world: int = 2) -> list[Any]:
    """Run `fn(rank, out_dir, *args)` on `world` joined processes; returns what each saved."""
    ctx = mp.start_processes(_entry, args=(world, str(tmp / "store"), fn, str(tmp), *args), nprocs=world,
                             start_method="spawn", join=False)
    deadline = time.monotonic() + SPAWN_TIMEOUT
    try:
        while not ctx.join(timeout=1.0):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{world} ranks still running after {SPAWN_TIMEOUT:.0f} s")
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.kill()
                p.join(5)
    return [torch.load(tmp / f"rank{r}.pt", weights_only=False) for r in range(world)]


def _entry(rank: int, world: int, store: str, fn: Callable[..., Any], out: str, *args: Any) -> None:
    _join(rank, world, store)
    try:
        result = fn(rank, Path(out), *args)
        torch.save(result, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


# --- a two-rank training, an interrupted one and its resume, in one spawn ---------------------


class StopAt:
    """A callback that asks the run to stop once it has reported step `step`."""

    def __init__(self, step: int) -> None:
        self.step = step

    def __call__(self, event: Any) -> None:
        if isinstance(event, StepMetrics) and event.counters.step >= self.step:
            raise StopTraining


def _three_runs(rank: int, out: Path) -> dict[str, Any]:
    import importlib

    loop = importlib.import_module("marginscope.engine.loop")  # the training loop's module
    made: list[torch.nn.Module] = []  # each run's model, as the loop built it on this rank
    create = loop.create_model
    loop.create_model = lambda *a, **kw: made.append(create(*a, **kw)) or made[-1]
    done: dict[str, Any] = {}
    whole, part = Recorder(), Recorder()
    result = train(TrainConfig(**BASE, out_dir=str(out / "whole")), [whole])
    done["whole"] = {"result": result.summary, "events": [e.to_dict() for e in whole.events],
                     "params": {k: v.detach().clone() for k, v in made[-1].named_parameters()}}
    stopped = train(TrainConfig(**BASE, out_dir=str(out / "part")), [part, StopAt(60)])
    resumed_events = Recorder()
    resumed = train(TrainConfig(**BASE, out_dir=str(out / "part"),
                                resume_from=str(out / "part" / "checkpoint.pt")), [resumed_events])
    done["stopped"] = stopped.summary
    done["resumed"] = {"result": resumed.summary, "events": [e.to_dict() for e in resumed_events.events],
                       "params": {k: v.detach().clone() for k, v in made[-1].named_parameters()}}
    return done


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    return spawn(_three_runs, tmp_path_factory.mktemp("ddp"))


@pytest.mark.slow
def test_two_ranks_end_with_identical_parameters(two_ranks: list[dict[str, Any]]) -> None:
    # every rank returns rank 0's result, and its weights equal rank 0's bit for bit
    r0, r1 = two_ranks
    assert r0["whole"]["result"] == r1["whole"]["result"]
    assert r0["whole"]["result"]["status"] == "finished" and r0["whole"]["result"]["steps"] == STEPS
    p0, p1 = r0["whole"]["params"], r1["whole"]["params"]
    assert p0.keys() == p1.keys() and len(p0) > 4
    for name in p0:
        assert torch.equal(p0[name], p1[name]), name
    first = TrainConfig(**BASE)  # and they moved: the run trained
    assert first.steps == STEPS


@pytest.mark.slow
def test_rank0_alone_reports_with_counters_and_histograms_summed(two_ranks: list[dict[str, Any]]) -> None:
    events = two_ranks[0]["whole"]["events"]
    assert two_ranks[1]["whole"]["events"] == []  # the other rank's callbacks are never called
    assert [e["kind"] for e in events].count("run_started") == 1
    # each rank forwarded B/2 candidates and b/2 trained samples per step: the counters sum both
    last = events[-1]
    assert last["kind"] == "run_finished" and last["status"] == "finished"
    assert last["counters"]["samples_backpropagated"] == STEPS * b
    assert last["counters"]["samples_forwarded"] == STEPS * (B + b)
    hists = [e for e in events if e["kind"] == "histogram"]
    assert len(hists) == 2 * STEPS // 10
    for h in hists:  # each rank's histogram held B/2 (b/2); the run's holds the sum
        want = B if h["population"] == "candidates" else b
        assert h["count"] == want and sum(h["counts"]) == want
    classes = [e for e in events if e["kind"] == "class_selection"]
    assert all(sum(c["candidate_counts"]) == 10 * B and sum(c["selected_counts"]) == 10 * b for c in classes)
    metrics = [e for e in events if e["kind"] == "step"]
    assert len(metrics) == STEPS // 10 and all(0.0 <= m["accuracy"] <= 1.0 for m in metrics)


@pytest.mark.slow
def test_two_ranks_learn_as_well_as_one_process(two_ranks: list[dict[str, Any]]) -> None:
    # the same global B and b on one process: the candidates of each step are the same samples
    # (each rank takes its half of the one global pool); only the selection is per half
    one = train(TrainConfig(**BASE))
    two = two_ranks[0]["whole"]["result"]
    assert one.test_accuracy is not None and one.test_accuracy > 0.85
    assert two["test_accuracy"] > 0.85
    assert abs(two["test_accuracy"] - one.test_accuracy) < 0.06, (two, one.summary)


@pytest.mark.slow
def test_a_stopped_ddp_run_resumes_on_its_trajectory(two_ranks: list[dict[str, Any]]) -> None:
    r0, r1 = two_ranks
    # a callback's StopTraining on rank 0 stopped both ranks at the same step
    assert r0["stopped"]["status"] == r1["stopped"]["status"] == "cancelled"
    assert r0["stopped"]["steps"] == r1["stopped"]["steps"] == 60
    resumed = r0["resumed"]
    assert resumed["result"]["steps"] == STEPS and resumed["events"][0]["resumed_from_step"] == 60
    assert resumed["result"]["samples_backpropagated"] == STEPS * b
    for (name, a), (_, c) in zip(r0["whole"]["params"].items(), resumed["params"].items()):
        assert torch.allclose(a, c, atol=1e-5), name
    assert resumed["result"]["test_accuracy"] == pytest.approx(r0["whole"]["result"]["test_accuracy"], abs=0.01)


# --- the merge of one report, on known numbers -------------------------------------------------


def _merge_report(rank: int, out: Path) -> dict[str, Any]:
    """Each rank scores its own candidates; rank 0's report must be the sum of both."""
    g = torch.Generator().manual_seed(100 + rank)
    n, k = 32 + 8 * rank, 10  # unequal shards on purpose: gathering must not assume equal sizes
    logits = torch.randn(n, k, generator=g) * (3 + rank)
    labels = torch.randint(0, k, (n,), generator=g)
    chosen = torch.randperm(n, generator=g)[:8]
    head = torch.randn(k, 16, generator=torch.Generator().manual_seed(0))  # the same weights on both
    step = StepRecord(lr=0.1, selection=Selection(index=chosen, scores=None, logits=logits, threshold=0.5 + rank),
                      chosen=chosen, labels=labels, batch_labels=labels[chosen], logits=logits[chosen],
                      loss=torch.tensor(1.0 + rank), score_time=0.01)
    edges = histogram_edges(60)
    ranks = Ranks(rank=rank, world=2)
    emitted: list[Any] = []
    monitor = DistributedMonitor(ranks.emitter([emitted.append]), ranks=ranks, device=torch.device("cpu"), num_classes=k,
                                 edges=edges, histograms=True)
    monitor.add(step)
    mms = minimal_margin_scores(logits, head)
    from marginscope.engine.events import Counters

    c = Counters(step=1, epoch=0.0, samples_forwarded=0, samples_backpropagated=0, wall_time=0.0)
    own = {"candidates": histogram_event(mms, edges, c, "candidates", None).counts,
           "selected": histogram_event(mms[chosen], edges, c, "selected", None).counts,
           "scores": mms, "selected_scores": mms[chosen], "labels": labels, "chosen_labels": labels[chosen]}
    monitor.histograms(step, c, head, 0.5 + rank)
    monitor.wall = 1.0
    monitor.step_metrics(step, c)
    return {"own": own, "emitted": [e.to_dict() for e in emitted]}


@pytest.mark.slow  # two spawned processes: ~20 s on 2 busy cores
def test_one_report_merges_the_ranks_exactly(tmp_path: Path) -> None:
    r0, r1 = spawn(_merge_report, tmp_path)
    assert r1["emitted"] == []
    hist = {e["population"]: e for e in r0["emitted"] if e["kind"] == "histogram"}
    for population in ("candidates", "selected"):  # bin counts: the sum of each rank's own histogram
        assert hist[population]["counts"] == [a + c for a, c in zip(r0["own"][population], r1["own"][population])]
    union = torch.cat([r0["own"]["scores"], r1["own"]["scores"]])
    assert hist["candidates"]["count"] == 72
    assert hist["candidates"]["quantiles"]["p50"] == pytest.approx(float(torch.quantile(union, 0.5)), rel=1e-5)
    assert hist["candidates"]["mean"] == pytest.approx(float(union.mean()), rel=1e-5)
    assert hist["selected"]["threshold"] == 1.5  # the largest rank's threshold bounds every selected sample
    cls = next(e for e in r0["emitted"] if e["kind"] == "class_selection")
    want = torch.bincount(torch.cat([r0["own"]["labels"], r1["own"]["labels"]]), minlength=10)
    assert cls["candidate_counts"] == want.tolist()
    assert sum(cls["selected_counts"]) == 16
    metrics = next(e for e in r0["emitted"] if e["kind"] == "step")
    assert metrics["loss"] == pytest.approx(1.5)  # the mean of the ranks' batch losses (1 and 2)
    assert metrics["samples_per_s"] == pytest.approx(16.0)  # both ranks' samples


# --- what one process says about nproc ---------------------------------------------------------


def test_nproc_is_validated() -> None:
    assert TrainConfig(dataset="digits", nproc=2, candidates=64, batch_size=16).nproc == 2
    with pytest.raises(ValidationError, match="batch_size .* multiple of nproc"):
        TrainConfig(dataset="digits", nproc=3, candidates=63, batch_size=16)
    with pytest.raises(ValidationError, match="candidates .* multiple of nproc"):
        TrainConfig(dataset="digits", nproc=2, candidates=63, batch_size=16)
    for bad in (0, 65):
        with pytest.raises(ValidationError, match="nproc"):
            TrainConfig(dataset="digits", nproc=bad)


def test_nproc_outside_torchrun_says_how_to_launch() -> None:
    with pytest.raises(ValueError, match="marginscope train --nproc 2"):
        train(TrainConfig(dataset="digits", nproc=2, candidates=64, batch_size=16, steps=1, device="cpu"))


def test_a_global_size_must_split_evenly() -> None:
    with pytest.raises(ValueError, match="batch_size 15 cannot be split over 2 processes"):
        Ranks(rank=0, world=2).share(15, "batch_size")
    assert Ranks(rank=1, world=2).shard(torch.arange(8)).tolist() == [4, 5, 6, 7]


@pytest.mark.slow
def test_train_nproc_runs_torchrun_for_the_user(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-m", "marginscope.engine.cli", "train", "--nproc", "2", "--dataset", "digits", "--candidates", "64",
         "--batch-size", "16", "--steps", "10", "--eval-every", "5", "--hist-every", "5", "--device", "cpu",
         "--threads", "1", "--out", str(tmp_path)],
        cwd=root, capture_output=True, text=True, timeout=SPAWN_TIMEOUT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("finished: 10 steps") == 1  # rank 0 alone speaks
    kinds = [json.loads(line)["kind"] for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert kinds.count("run_started") == 1 and kinds[-1] == "run_finished"
    assert json.loads((tmp_path / "summary.json").read_text())["samples_backpropagated"] == 10 * 16
