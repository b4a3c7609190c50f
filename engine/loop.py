"""The training loop: selective sampling by a selector, read top to bottom (nanoGPT style).

`train()` runs the phases in order: setup (device, seeds, data, model, optimizer, selector),
resume, then the loop (one training step: draw candidates, select, forward/backward on the
selected batch; then log, evaluate, checkpoint), and the end (last checkpoint, test). Everything a
caller sees goes through typed events (engine/events.py) handed to `callbacks`; `train()` returns
a `TrainResult` summarising the run. What the loop needs from a selector is declared on
`Selector` (engine/selection/selectors.py); the loop never looks at its name.

Kept as one module: the loop is meant to be read top to bottom in one file (nanoGPT style); what
it calls lives beside it (sampler, monitoring, batchnorm, samples, selection).

Counting follows the paper: one "epoch" is N/b training steps whatever the selector, so curves of
selective and uniform runs line up step for step (except for a selector that plans its passes,
InfoBatch at matched epochs: its run is the same epochs, a pruned one in fewer steps; `_Run.clock`); the exact work is kept in `Counters`
(samples forwarded = scoring forwards + selector refreshes + training forwards; samples
back-propagated = b per step; wall time = the steps, monitoring included, without validation,
test and checkpoints).

Reproducibility on CPU: the data order is a pure function of (seed, pass), augmentation and the
selectors draw from their own generators, and all of their states go into the checkpoint, so a
resumed run follows the same trajectory as an uninterrupted one.

Under torchrun the same loop runs in every process, one run on N ranks (engine/distributed.py
holds all that knows ranks: the B/N shards, the DDP forward, the merged events, rank 0's voice).

Kept as one module: the loop is meant to be read top to bottom in one file; what can stand alone
(data order, monitoring, BatchNorm statistics, ranks) already lives beside it.
"""

from __future__ import annotations

import math
import os
import random
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from marginscope.engine.batchnorm import PoolStatistics
from marginscope.engine.config import TrainConfig
from marginscope.engine.data import DatasetBundle, flip_labels, load_dataset
from marginscope.engine.distributed import Ranks, session
from marginscope.engine.events import (
    Callback, CheckpointSaved, Counters, Evaluation, Event, LogMessage, RunFailed, RunFinished,
    RunStarted, Scalars, StopTraining, make_durable,
)
from marginscope.engine.models import create_model, default_model_for
from marginscope.engine.monitoring import (
    NoiseHarm,
    StepClock,
    StepRecord,
    WorkTimes,
    evaluate,
    histogram_edges,
    network_health,
)
from marginscope.engine.regimes import drop_steps, lr_at
from marginscope.engine.samples import SampleTracker
from marginscope.engine.sampler import PassSampler
from marginscope.engine.selection import Selector, make_selector
from marginscope.engine.system import SystemSampler, serialized
from marginscope.engine.timing import RunTime, remaining_seconds, validations_left


def _harm_summary(run: _Run) -> dict[str, float | None]:
    if run.true_labels is None:
        return {}
    shares = run.harm.shares()
    return {"flipped_gradient_share": shares["noise/flipped_gradient_share"],
            "flipped_predicted_true": shares.get("noise/flipped_predicted_true")}


@dataclass
class TrainResult:
    status: str  # finished | cancelled
    steps: int
    samples_forwarded: int
    samples_backpropagated: int
    wall_time: float
    best_val_accuracy: float
    best_val_step: int
    test_accuracy: float | None
    test_loss: float | None
    checkpoint: str | None
    evaluations: list[dict[str, Any]] = field(default_factory=list)  # every validation, with counters
    cpu_time: float = 0.0  # CPU seconds of the process's training work (beside wall_time)
    phase_times: dict[str, float] = field(default_factory=dict)  # WorkTimes.as_dict()
    selected_flipped: int = 0  # trained samples whose label label_noise flipped (counted per step)
    # under label noise: the share of the training signal from flipped labels, and the share of the
    # trained flipped samples the model predicted as their true class (monitoring.NoiseHarm)
    flipped_gradient_share: float | None = None
    flipped_predicted_true: float | None = None

    @property
    def summary(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "evaluations"}


# --- helpers -----------------------------------------------------------------------------------


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: cuda was asked for but no CUDA device is available; use auto or cpu")
    return torch.device(name)


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on conv/linear weights only, not on BatchNorm parameters and biases."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def checkpoint_step(path: str | Path) -> int:
    """The step a checkpoint file resumes from."""
    return int(torch.load(path, map_location="cpu", weights_only=False)["step"])


def _save_checkpoint(path: Path, state: dict[str, Any], *,
                     before_publish: Callable[[], None] = lambda: None) -> None:
    """Write atomically (no truncated checkpoint after a crash); a refusal names the file and why.

    The order is the resume's guarantee: (1) the state goes to a temporary file, (2)
    `before_publish()` makes every event emitted so far durable (the callbacks' `make_durable`),
    (3) only then the file takes its final name, the one a resume reads. A kill at any moment
    leaves either the previous checkpoint (and events up to at least its step) or this one with
    every event up to its step kept: never a checkpoint ahead of the recorded events."""
    tmp = path.with_suffix(".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as fh:  # torch.save(state, tmp) would say only "open file failed"
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
        before_publish()
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:  # RuntimeError: torch's writer on a failed write
        cause = (getattr(exc, "strerror", None) or str(exc)).lower()
        raise OSError(f"cannot write checkpoint {path}: {cause}") from exc


# --- one run: what setup builds, and what the loop advances ------------------------------------


@dataclass
class _Run:
    """One training: what setup built, the sizes of its schedule, and its progress."""

    config: TrainConfig
    emit: Callable[[Event], None]
    callbacks: Sequence[Callback]  # those `emit` calls (rank 0's), asked to make events durable
    device: torch.device
    data: DatasetBundle
    model_name: str
    model: torch.nn.Module
    ranks: Ranks  # the processes of a DDP run (engine/distributed.py); one process: Ranks()
    net: torch.nn.Module  # what the training forward calls: `model`, or its DDP wrapper
    channels_last: bool
    optimizer: torch.optim.Optimizer
    use_amp: bool
    amp_dtype: torch.dtype
    scaler: torch.amp.GradScaler
    selector: Selector
    bn_pool: PoolStatistics
    sampler: PassSampler
    aug_generator: torch.Generator
    pool: int  # candidates drawn per step: B, or b when the selector uses no pool
    steps_per_epoch: int
    total_steps: int
    eval_every: int
    checkpoint_every: int
    warmup_steps: int
    edges: torch.Tensor  # histogram bin edges, fixed for the run
    checkpoint_path: Path | None
    flipped: torch.Tensor  # dataset indices of the training labels flipped by label_noise (sorted)
    true_labels: torch.Tensor | None  # the training labels before label_noise (None without noise)
    clean: torch.Tensor | None  # clean_only: the indices the data order draws from (None: all)
    samples: SampleTracker  # per-sample counts and scores behind SampleSnapshot (engine/samples.py)
    # progress: saved in every checkpoint, restored on resume
    step: int = 0
    forwarded: int = 0
    backpropagated: int = 0
    wall: float = 0.0
    best_acc: float = 0.0
    best_step: int = 0
    evaluations: list[dict[str, Any]] = field(default_factory=list)
    times: WorkTimes = field(default_factory=WorkTimes)  # CPU time and the selector's phases
    harm: NoiseHarm = field(default_factory=NoiseHarm)  # what label noise put into training (whole run)
    harm_window: NoiseHarm = field(default_factory=NoiseHarm)  # ... since the last StepMetrics
    real: RunTime = field(default_factory=RunTime)  # real time of the run and its validations (time/ scalars)
    system: SystemSampler | None = None  # the system/ readings' thread, while the run is on

    def clock(self) -> float:
        """Where the run stands on its schedule, in steps of b (N/b an epoch): the steps taken; for a
        selector that plans its passes (InfoBatch at matched epochs), the passes done, each worth
        N/b steps however few iterations it took. The LR schedule, the epoch of the curves and the
        end of the run follow it, so a pruned epoch is shorter and the schedule spans the selector's
        own iterations."""
        if not self.selector.plans_passes:
            return float(self.step)
        passes, done, total = self.sampler.position(self.config.batch_size)
        return passes * self.steps_per_epoch + done * self.steps_per_epoch / total

    def finished(self) -> bool:
        return self.clock() >= self.total_steps

    def counters(self) -> Counters:
        return Counters(step=self.step, epoch=self.clock() / self.steps_per_epoch,
                        samples_forwarded=self.forwarded, samples_backpropagated=self.backpropagated,
                        wall_time=self.wall)

    def autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.use_amp)

    def train_inputs(self, idx: torch.Tensor) -> torch.Tensor:
        """Training samples as the model sees them when scoring: no augmentation."""
        x, _ = self.data.batch(self.data.train, idx, augment=False, generator=None, device=self.device)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


# --- the loop ----------------------------------------------------------------------------------


def train(config: TrainConfig, callbacks: Sequence[Callback] = (), *,
          should_stop: Callable[[], bool] | None = None) -> TrainResult:
    """Train a classifier with the configured selector; hand every event to each callback.

    `should_stop` is polled once per step; returning True (or a callback raising StopTraining)
    ends the run cleanly with a checkpoint and `RunFinished(status="cancelled")`. Any other error
    emits `RunFailed` (the events already emitted stay valid) and is re-raised.
    """
    started = time.perf_counter()  # the run's time counts from here: data loading is part of it
    with session(config.device) as ranks:  # one process, or one rank of a torchrun run
        # across ranks: rank 0 alone calls the callbacks; the system readings' thread emits too
        emit = serialized(ranks.emitter(callbacks))
        run: _Run | None = None
        try:
            run = _setup(config, emit, ranks, callbacks)
            run.real = RunTime(started=started)
            if config.resume_from:
                _resume(run, config.resume_from)
            _announce(run)
            _start_system(run)
            status = _loop(run, should_stop)
            return _finish(run, status)
        except Exception as exc:  # noqa: BLE001 - reported to the callbacks, then re-raised
            _stop_system(run)
            emit(RunFailed(step=run.step if run is not None else 0, error=f"{type(exc).__name__}: {exc}",
                           traceback=traceback.format_exc()))
            raise
        finally:  # also on KeyboardInterrupt: the thread is a daemon, but stops with the run
            _stop_system(run)


def _setup(config: TrainConfig, emit: Callable[[Event], None], ranks: Ranks,
           callbacks: Sequence[Callback] = ()) -> _Run:
    """Device, seeds, data, model, optimizer, selector (this order fixes the random streams)."""
    if config.nproc > 1 and not ranks.enabled:
        raise ValueError(f"nproc={config.nproc} needs {config.nproc} processes started by torchrun: "
                         f"run `marginscope train --nproc {config.nproc} ...` (or torchrun yourself)")
    device = ranks.device(resolve_device(config.device))
    if config.threads:
        torch.set_num_threads(config.threads)
    _seed_everything(config.seed)
    # The split seed is fixed so that runs with different seeds validate on the same hold-out.
    data = load_dataset(config.dataset, config.data_dir, download=config.download, seed=0,
                        val_fraction=config.val_fraction, train_subset=config.train_subset)
    # label noise: the training split only, from its own seeded stream (the run's random streams
    # and the validation/test splits are as without noise)
    true_labels = data.train.labels
    data.train.labels, flipped = flip_labels(true_labels, config.label_noise, data.num_classes,
                                             seed=config.seed)
    # clean_only (an oracle): the data order draws only the intact samples; an epoch keeps N/b steps
    clean = _complement(flipped, len(data.train)) if config.clean_only else None
    model_name = default_model_for(data.name) if config.model == "auto" else config.model
    model = create_model(model_name, num_classes=data.num_classes, input_shape=data.input_shape).to(device)
    channels_last = config.channels_last and device.type != "mps"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(parameter_groups(model, config.weight_decay), lr=config.lr,
                                momentum=config.momentum)
    use_amp = config.amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    selector = make_selector(config.selector, **{"chunk": config.score_chunk, **config.selector_options})

    n_train, b = len(data.train), config.batch_size
    pool = min(config.candidates if selector.uses_candidates else b, n_train)
    for size, what in ((b, "batch_size"), (pool, "candidates")):
        ranks.share(size, what)  # B and b split evenly over the ranks, or a clear error now
    steps_per_epoch = max(1, math.ceil(n_train / b))
    total_steps = config.steps or max(1, round(config.epochs * steps_per_epoch))
    eval_every = config.eval_every or max(1, min(steps_per_epoch, total_steps // 10))
    selector.begin(num_train=n_train, steps_per_epoch=steps_per_epoch, total_steps=total_steps)
    if selector.plans_passes and ranks.enabled:
        raise ValueError(f"selector {config.selector!r} plans its passes over the data from its own "
                         "memory, which each rank keeps apart: run it in one process (for InfoBatch, "
                         "matched_epochs=false runs under torchrun)")
    return _Run(
        config=config, emit=emit, callbacks=callbacks, device=device, data=data, model_name=model_name, model=model,
        ranks=ranks, net=ranks.wrap(model),
        channels_last=channels_last, optimizer=optimizer, use_amp=use_amp, amp_dtype=amp_dtype,
        scaler=scaler, selector=selector,
        bn_pool=PoolStatistics(model, samples=b,
                               enabled=config.bn_stats == "pool" and selector.batchnorm_from_pool),
        sampler=PassSampler(n_train, config.seed, plan=selector.plan_pass if selector.plans_passes else None,
                            population=clean),
        aug_generator=torch.Generator().manual_seed(ranks.rank_seed(config.seed + 1)),
        pool=pool,
        steps_per_epoch=steps_per_epoch, total_steps=total_steps, eval_every=eval_every,
        checkpoint_every=config.checkpoint_every or eval_every,
        warmup_steps=round(config.warmup_epochs * steps_per_epoch),
        edges=histogram_edges(config.hist_bins),
        checkpoint_path=Path(config.out_dir) / "checkpoint.pt" if config.out_dir else None,
        flipped=flipped, true_labels=true_labels if len(flipped) else None, clean=clean,
        samples=SampleTracker(n_train, every=config.samples_every, k=config.samples_k,
                              labels=data.train.labels, flipped=flipped, device=device,
                              scores_are_mms=selector.threshold_is_mms),
    )


def _resume(run: _Run, path: str) -> None:
    """Restore the weights, optimizer, selector, data order, random streams and progress."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scaler.load_state_dict(state["scaler"])
    own = state.get("ranks", [state])  # a DDP checkpoint keeps each rank's streams (engine/distributed.py)
    own = own[run.ranks.rank] if len(own) == run.ranks.world else state
    run.selector.load_state_dict(own["selector"])
    run.sampler = PassSampler(len(run.data.train), run.config.seed, **state["sampler"],  # after the selector:
                              plan=run.selector.plan_pass if run.selector.plans_passes else None,  # its plan
                              population=run.clean)
    run.aug_generator.set_state(own["aug_generator"])
    run.samples.load_state_dict(state.get("samples", {}))
    torch.set_rng_state(own["torch_rng"])
    run.step, run.forwarded, run.backpropagated, run.wall = (
        state[k] for k in ("step", "forwarded", "backpropagated", "wall"))
    run.best_acc, run.best_step, run.evaluations = state["best_acc"], state["best_step"], state["evaluations"]
    run.times = WorkTimes.from_dict(state.get("times", {}))
    run.harm = NoiseHarm(**state.get("noise_harm", {"flipped": state.get("selected_flipped", 0)}))
    if "real_time" in state:  # older checkpoints: the time before the resume is unknown
        run.real = RunTime.resumed(state["real_time"], started=run.real.started)


def _announce(run: _Run) -> None:
    """RunStarted (all a page needs to lay out the run) and a one-line summary."""
    config, data, model, step = run.config, run.data, run.model, run.step
    dataset = data.info()
    if config.label_noise:
        dataset["label_noise"] = {"share": config.label_noise, "count": len(run.flipped),
                                  "seed": config.seed}
    run.emit(RunStarted(
        config=config.model_dump(), dataset=dataset,
        model={"name": run.model_name, "parameters": sum(p.numel() for p in model.parameters()),
               "feature_dim": model.feature_dim},
        device=str(run.device), total_steps=run.total_steps, steps_per_epoch=run.steps_per_epoch,
        hist_edges=run.edges.tolist(), resumed_from_step=step,
    ))
    drops = drop_steps(config.regime, run.total_steps, run.steps_per_epoch)
    run.emit(LogMessage(step=step, level="info", message=(
        f"{'resumed at step ' + str(step) if step else 'started'}: {data.name} "
        f"({len(data.train)} train), {run.model_name}, selector {config.selector}, "
        f"B={run.pool} b={config.batch_size}, {run.total_steps} steps"
        f"{' of b (matched epochs: pruned ones take fewer)' if run.selector.plans_passes else ''} on {run.device}"
        f"{f' x {run.ranks.world} processes (DDP)' if run.ranks.enabled else ''}; "
        f"LR drops at steps {drops or 'none'}")))


def _start_system(run: _Run) -> None:
    """The system readings' thread (engine/system.py), on the process that reports (rank 0)."""
    if not run.config.system_interval or not run.ranks.is_main:
        return

    def request_stop() -> None:  # a callback's StopTraining from the thread: stop at the next step
        run.ranks.stop_requested = True

    run.system = SystemSampler(run.emit, run.config.system_interval, on_stop=request_stop,
                               cuda_device=run.device if run.device.type == "cuda" else None)
    run.system.publish(run.counters())
    run.system.start()


def _stop_system(run: _Run | None) -> None:
    if run is not None and run.system is not None:
        run.system.stop()


def _report_time(run: _Run, final: bool = False) -> None:
    """The time/ scalars (engine/timing.py): the real time so far and the estimate of what is left."""
    left = 0.0 if final else remaining_seconds(
        step=run.clock(), total_steps=run.total_steps, trained_seconds=run.wall,
        validations=run.real.validations, validation_seconds=run.real.validation_seconds,
        evaluated_samples=run.real.evaluated_samples, evaluation_seconds=run.real.evaluation_seconds,
        validations_due=validations_left(run.step, run.total_steps, run.eval_every),
        test_samples=len(run.data.test))
    values = {"time/elapsed": run.real.elapsed()}
    if left is not None:
        values["time/remaining"] = left
    run.emit(Scalars(counters=run.counters(), values=values))


def _loop(run: _Run, should_stop: Callable[[], bool] | None) -> str:
    """Step, log, evaluate and checkpoint up to total_steps: "finished", or "cancelled"."""
    config = run.config
    monitor = run.ranks.monitor(run.emit, device=run.device, num_classes=run.data.num_classes,
                                edges=run.edges, histograms=bool(config.hist_every))

    def spend(lap: tuple[float, float]) -> None:  # a lap of the step: wall time (run, interval), CPU
        run.wall += lap[0]
        monitor.wall += lap[0]
        run.times.cpu += lap[1]

    try:
        while not run.finished():
            if run.ranks.should_stop(should_stop):  # rank 0 decides for all ranks
                raise StopTraining
            clock = StepClock(run.device)
            step = _train_step(run)
            monitor.add(step)
            if run.samples.enabled:  # under torchrun: every rank's candidates (a collective call)
                seen = run.ranks.gather_step(step)
                run.samples.observe(seen, seen.indices, run.model.head.weight.detach())
            last = run.finished()
            if run.samples.due(run.step, last):
                run.emit(run.samples.snapshot(run.counters(), scored=step.scored))
            if config.hist_every and (run.step % config.hist_every == 0 or last):
                # stamp the histograms with the wall time of this step's training work; the time
                # spent computing them falls in the step's next lap, so it still counts
                spend(clock.lap(sync=True))
                threshold = step.selection.threshold if run.selector.threshold_is_mms else None
                monitor.histograms(step, run.counters(), run.model.head.weight.detach(), threshold)
            spend(clock.lap(sync=run.step % config.log_every == 0))
            if run.system is not None:  # readings from now on (a validation's too) are at this step
                run.system.publish(run.counters())
            if run.step % config.log_every == 0 or last:
                monitor.step_metrics(step, run.counters(), cpu_time=run.times.cpu)
                if run.true_labels is not None:
                    run.emit(Scalars(counters=run.counters(), values=run.harm_window.shares()))
                    run.harm_window = NoiseHarm()
                if not math.isfinite(float(step.loss)):
                    raise FloatingPointError(f"loss became {float(step.loss)} at step {run.step}; lower lr")
            validating = run.step % run.eval_every == 0 or last
            paused = time.perf_counter()
            if validating:
                evaluated, evaluation_seconds = _validate(run)
            if run.step % run.checkpoint_every == 0 and not last:
                _checkpoint(run)
            if validating:  # the pause in training: the validation and the checkpoint after it
                run.real.add_validation(time.perf_counter() - paused, evaluated, evaluation_seconds)
            if run.step % config.log_every == 0 or last:
                _report_time(run)
    except StopTraining:
        run.emit(LogMessage(step=run.step, level="warning", message=f"stopped at step {run.step} on request"))
        return "cancelled"
    return "finished"


def _train_step(run: _Run) -> StepRecord:
    """Draw candidates, let the selector choose, then forward, backward and update on its choice."""
    config, model, selector = run.config, run.model, run.selector
    lr = lr_at(run.clock(), base_lr=config.lr, regime=config.regime, total_steps=run.total_steps,
               steps_per_epoch=run.steps_per_epoch, warmup_steps=run.warmup_steps)
    for group in run.optimizer.param_groups:
        group["lr"] = lr

    pool = min(selector.pool_size(run.pool, config.batch_size, run.step), len(run.data.train))
    # this rank's B/N of the step's global pool; a planned pass ends with a short batch, as a loader's
    drawn = run.ranks.shard(run.sampler.draw(pool, within_pass=selector.plans_passes))
    indices = torch.cat([selector.carried(), drawn])  # kept at an earlier step (Selective-Backprop's queue)
    x, y = run.data.batch(run.data.train, indices, augment=config.augment,
                          generator=run.aug_generator, device=run.device)
    if run.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    t_score = time.perf_counter()
    with run.times.phase("score"), run.autocast(), run.bn_pool.recording():
        selection = selector.select(model, x, y, indices, batch_size=run.ranks.share(config.batch_size),
                                    epoch=run.step / run.steps_per_epoch)
    score_time = time.perf_counter() - t_score
    if selection.unused and not run.ranks.enabled:
        # a streaming selector stopped early: the rest comes next. Under torchrun every rank draws the
        # same global pool and stops at a different place, so nothing is put back (the rest waits
        # for the next pass over the data)
        run.sampler.rewind(selection.unused)
    chosen = selection.index.to(run.device)
    xb, yb = x[chosen], y[chosen]

    # BatchNorm's running statistics come from the candidates the selector just scored, when it
    # scored any and bn_stats is "pool" (engine/batchnorm.py)
    model.train()
    with run.autocast(), run.bn_pool.frozen(enabled=run.bn_pool.recorded):
        logits = run.net(xb)  # across ranks, DDP averages the gradients in backward
        losses = F.cross_entropy(logits.float(), yb, reduction="none")
        loss = losses.mean()  # what is reported; a selector's per-sample weights change only the gradient
        objective = loss if selection.weights is None else (losses * selection.weights).mean()
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(objective).backward()
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.bn_pool.update()  # after backward: autograd saved the running statistics' versions
    logits = logits.detach().float()
    selector.observe(indices[chosen.cpu()], logits, yb)
    refresh_start = run.times.refresh_wall
    with run.times.phase("refresh"), run.autocast():  # the selector's upkeep (mms-memory): real work
        refreshed = selector.refresh(model, run.train_inputs, num_train=len(run.data.train),
                                     steps_per_epoch=run.steps_per_epoch)

    run.step += 1
    scored = selection.forwarded if selection.forwarded is not None else (
        len(indices) if selector.forwards_candidates else 0)
    forwarded, backpropagated = run.ranks.sum_ints(refreshed + scored + len(chosen), len(chosen))  # all ranks'
    run.forwarded += forwarded
    run.backpropagated += backpropagated
    if run.true_labels is not None:  # how often, and how hard, the selector trains on a wrong label
        _count_harm(run, indices[chosen.cpu()], logits, yb)
    return StepRecord(lr=lr, selection=selection, chosen=chosen, labels=y, batch_labels=yb,
                      logits=logits, loss=loss.detach(), score_time=score_time,
                      refresh_time=run.times.refresh_wall - refresh_start, indices=indices)


def _count_harm(run: _Run, trained: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
    """Add this step's NoiseHarm (every rank's) to the run's and the window's."""
    assert run.true_labels is not None
    harm = NoiseHarm.of(logits, labels, run.true_labels[trained].to(logits.device),
                        torch.isin(trained, run.flipped).to(logits.device))
    if run.ranks.enabled:
        summed = harm.as_tensor()
        run.ranks.sum_(summed)
        harm = NoiseHarm.from_tensor(summed)
    run.harm.merge(harm)
    run.harm_window.merge(harm)


def _complement(indices: torch.Tensor, n: int) -> torch.Tensor:
    keep = torch.ones(n, dtype=torch.bool)
    keep[indices] = False
    return keep.nonzero().flatten()


def _validate(run: _Run) -> tuple[int, float]:
    """Evaluate on the validation split; remember the best accuracy and its step (rank 0's job).
    Returns the samples evaluated and the seconds it took (what prices the test: engine/timing.py)."""
    if not run.ranks.is_main:
        return 0, 0.0
    start = time.perf_counter()
    result = evaluate(run.model, run.data, run.data.val, device=run.device,
                      limit=run.config.eval_samples, channels_last=run.channels_last)
    seconds = time.perf_counter() - start
    if result["accuracy"] > run.best_acc:
        run.best_acc, run.best_step = result["accuracy"], run.step
    c = run.counters()
    run.evaluations.append({**c.__dict__, **run.times.as_dict(), "loss": result["loss"],
                            "accuracy": result["accuracy"]})
    run.emit(Evaluation(counters=c, split="val", **result))
    probe = torch.arange(min(256, len(run.data.val)))
    x, _ = run.data.batch(run.data.val, probe, augment=False, generator=None, device=run.device)
    health = network_health(run.model, x.contiguous(memory_format=torch.channels_last) if run.channels_last else x)
    if health:
        run.emit(Scalars(counters=c, values=health))
    return result["samples"], seconds


def _checkpoint(run: _Run) -> None:
    """Save all a resume needs (a run without an out_dir keeps no files)."""
    if run.checkpoint_path is None:
        return
    streams = {"selector": run.selector.state_dict(), "aug_generator": run.aug_generator.get_state(),
               "torch_rng": torch.get_rng_state()}
    every_rank = run.ranks.all_gather_object(streams)  # rank 0 writes all ranks' streams
    if not run.ranks.is_main:
        return
    _save_checkpoint(run.checkpoint_path, {
        "config": run.config.model_dump(), "model_name": run.model_name,
        "model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(),
        "scaler": run.scaler.state_dict(), "sampler": run.sampler.state_dict(), **streams,
        **({"ranks": every_rank} if run.ranks.enabled else {}), "samples": run.samples.state_dict(),
        "step": run.step, "forwarded": run.forwarded, "backpropagated": run.backpropagated,
        "wall": run.wall, "best_acc": run.best_acc, "best_step": run.best_step,
        "evaluations": run.evaluations, "times": run.times.as_dict(),
        "noise_harm": run.harm.state_dict(), "real_time": run.real.state_dict(),
    }, before_publish=lambda: make_durable(run.callbacks))
    run.emit(CheckpointSaved(counters=run.counters(), path=str(run.checkpoint_path)))


def _finish(run: _Run, status: str) -> TrainResult:
    """The last checkpoint, the test of a finished run, and RunFinished with the summary."""
    _checkpoint(run)
    test = None
    if status == "finished" and run.ranks.is_main:
        test = evaluate(run.model, run.data, run.data.test, device=run.device,
                        channels_last=run.channels_last)
        run.emit(Evaluation(counters=run.counters(), split="test", **test))
    result = TrainResult(
        status=status, steps=run.step, samples_forwarded=run.forwarded,
        samples_backpropagated=run.backpropagated, wall_time=run.wall, best_val_accuracy=run.best_acc,
        best_val_step=run.best_step, test_accuracy=test["accuracy"] if test else None,
        test_loss=test["loss"] if test else None,
        checkpoint=str(run.checkpoint_path) if run.checkpoint_path else None, evaluations=run.evaluations,
        cpu_time=run.times.cpu, phase_times=run.times.as_dict(), selected_flipped=run.harm.flipped,
        **_harm_summary(run),
    )
    _stop_system(run)  # no reading after the run's last events
    _report_time(run, final=True)
    run.emit(RunFinished(counters=run.counters(), status=status, summary=result.summary))
    return run.ranks.broadcast_object(result)  # every rank returns rank 0's result
