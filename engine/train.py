"""The training loop: selective sampling by a selector, read top to bottom (nanoGPT style).

Order: setup (device, seeds, data, model, optimizer, selector), resume, then one loop
(evaluate/checkpoint, draw candidates, select, forward/backward on the selected batch, monitor,
emit events). Everything a caller sees goes through typed events (engine/events.py) handed to
`callbacks`; `train()` returns a `TrainResult` summarising the run.

Counting follows the paper: one "epoch" is N/b training steps whatever the selector, so curves of
selective and uniform runs line up step for step; the exact work is kept in `Counters`
(samples forwarded = scoring forwards + training forwards; samples back-propagated = b per step).

Reproducibility on CPU: the data order is a pure function of (seed, pass), augmentation and the
selectors draw from their own generators, and all of their states go into the checkpoint, so a
resumed run follows the same trajectory as an uninterrupted one.
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

from engine.batchnorm import PoolStatistics
from engine.config import TrainConfig
from engine.data import DatasetBundle, Split, load_dataset
from engine.events import (
    QUANTILES, Callback, CheckpointSaved, ClassSelection, Counters, Evaluation, Event, Histogram,
    LogMessage, RunFailed, RunFinished, RunStarted, StepMetrics, StopTraining,
)
from engine.models import create_model, default_model_for
from engine.regimes import drop_steps, lr_at
from engine.selection import make_selector, minimal_margin_scores


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


def histogram_edges(bins: int) -> torch.Tensor:
    """Fixed MMS bin edges for a whole run: [0, 1e-3) then log-spaced up to 100 (bins+1 edges).

    MMS is a distance in feature space: it starts near 0 and grows by orders of magnitude as the
    network gains confidence, so log spacing keeps both ends readable. Values beyond the last edge
    are counted in the last bin.
    """
    return torch.cat([torch.zeros(1), torch.logspace(-3, 2, bins)]).double()


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on conv/linear weights only, not on BatchNorm parameters and biases."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


class PassSampler:
    """Candidate indices drawn without replacement within a pass over the data.

    A pass is a permutation that depends only on (seed, pass number); the state is two integers,
    so checkpoints stay small and resume is exact. A draw that runs past the end of a pass
    continues into the next one.
    """

    def __init__(self, n: int, seed: int, pass_index: int = 0, cursor: int = 0):
        self.n, self.seed, self.pass_index, self.cursor = n, seed, pass_index, cursor
        self._perm = self._permutation(pass_index)

    def _permutation(self, pass_index: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + pass_index)
        return torch.randperm(self.n, generator=g)

    def draw(self, size: int) -> torch.Tensor:
        parts, need = [], size
        while need > 0:
            take = min(need, self.n - self.cursor)
            parts.append(self._perm[self.cursor:self.cursor + take])
            self.cursor += take
            need -= take
            if self.cursor == self.n:
                self.pass_index += 1
                self.cursor = 0
                self._perm = self._permutation(self.pass_index)
        return torch.cat(parts)

    def state_dict(self) -> dict[str, int]:
        return {"pass_index": self.pass_index, "cursor": self.cursor}


@torch.inference_mode()
def evaluate(model: torch.nn.Module, data: DatasetBundle, split: Split, *, device: torch.device,
             limit: int | None = None, channels_last: bool = False, chunk: int = 1000) -> dict[str, Any]:
    """Loss, accuracy and per-class accuracy of `split` (its first `limit` samples)."""
    was_training = model.training
    model.eval()
    n = len(split) if limit is None else min(limit, len(split))
    k = data.num_classes
    loss_sum, correct = 0.0, torch.zeros(k, dtype=torch.long)
    total = torch.zeros(k, dtype=torch.long)
    for start in range(0, n, chunk):
        idx = torch.arange(start, min(n, start + chunk))
        x, y = data.batch(split, idx, augment=False, generator=None, device=device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        logits = model(x).float()
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        hit = (logits.argmax(1) == y).cpu()
        y = y.cpu()
        correct += torch.bincount(y[hit], minlength=k)
        total += torch.bincount(y, minlength=k)
    model.train(was_training)
    per_class = (correct.double() / total.clamp(min=1).double()).tolist()
    return {"loss": loss_sum / max(n, 1), "accuracy": correct.sum().item() / max(n, 1),
            "per_class_accuracy": per_class, "samples": n}


def histogram_event(scores: torch.Tensor, edges: torch.Tensor, counters: Counters, population: str,
                    threshold: float | None) -> Histogram:
    """Histogram of scores on fixed edges, computed with torch ops on the scores' device."""
    scores = scores.detach().float()
    inner = edges[1:-1].to(scores.device, torch.float32)
    counts = torch.bincount(torch.bucketize(scores, inner, right=True), minlength=len(edges) - 1)
    q = torch.quantile(scores, torch.tensor(list(QUANTILES.values()), device=scores.device))
    return Histogram(
        counters=counters, population=population, counts=counts.cpu().tolist(),
        quantiles={k: float(v) for k, v in zip(QUANTILES, q.cpu().tolist())},
        mean=float(scores.mean()), count=int(scores.numel()), threshold=threshold,
    )


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def checkpoint_step(path: str | Path) -> int:
    """The step a checkpoint file resumes from."""
    return int(torch.load(path, map_location="cpu", weights_only=False)["step"])


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write atomically so a crash mid-write never leaves a truncated checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


# --- the loop ----------------------------------------------------------------------------------


def train(config: TrainConfig, callbacks: Sequence[Callback] = (), *,
          should_stop: Callable[[], bool] | None = None) -> TrainResult:
    """Train a classifier with the configured selector; hand every event to each callback.

    `should_stop` is polled once per step; returning True (or a callback raising StopTraining)
    ends the run cleanly with a checkpoint and `RunFinished(status="cancelled")`. Any other error
    emits `RunFailed` (the events already emitted stay valid) and is re-raised.
    """
    step_box = [0]

    def emit(event: Event) -> None:
        for callback in callbacks:
            callback(event)

    try:
        return _train(config, emit, should_stop, step_box)
    except Exception as exc:  # noqa: BLE001 - reported to the callbacks, then re-raised
        emit(RunFailed(step=step_box[0], error=f"{type(exc).__name__}: {exc}",
                       traceback=traceback.format_exc()))
        raise


def _train(config: TrainConfig, emit: Callable[[Event], None],
           should_stop: Callable[[], bool] | None, step_box: list[int]) -> TrainResult:
    # --- setup
    device = resolve_device(config.device)
    if config.threads:
        torch.set_num_threads(config.threads)
    _seed_everything(config.seed)
    # The split seed is fixed so that runs with different seeds validate on the same hold-out.
    data = load_dataset(config.dataset, config.data_dir, download=config.download, seed=0,
                        val_fraction=config.val_fraction, train_subset=config.train_subset)
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
    options = {"chunk": config.score_chunk, **config.selector_options}
    selector = make_selector(config.selector, **options)

    n_train, b = len(data.train), config.batch_size
    pool = min(config.pool_size if selector.uses_candidates else b, n_train)
    steps_per_epoch = max(1, math.ceil(n_train / b))
    total_steps = config.steps or max(1, round(config.epochs * steps_per_epoch))
    eval_every = config.eval_every or max(1, min(steps_per_epoch, total_steps // 10))
    checkpoint_every = config.checkpoint_every or eval_every
    warmup_steps = round(config.warmup_epochs * steps_per_epoch)
    edges = histogram_edges(config.hist_bins)
    k = data.num_classes
    out_dir = Path(config.out_dir) if config.out_dir else None
    checkpoint_path = out_dir / "checkpoint.pt" if out_dir else None

    sampler = PassSampler(n_train, config.seed)
    aug_generator = torch.Generator().manual_seed(config.seed + 1)
    step, forwarded, backpropagated, wall = 0, 0, 0, 0.0
    best_acc, best_step, evaluations = 0.0, 0, []

    # --- resume
    if config.resume_from:
        state = torch.load(config.resume_from, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        selector.load_state_dict(state["selector"])
        sampler = PassSampler(n_train, config.seed, **state["sampler"])
        aug_generator.set_state(state["aug_generator"])
        torch.set_rng_state(state["torch_rng"])
        step, forwarded, backpropagated, wall = (state[k_] for k_ in
                                                 ("step", "forwarded", "backpropagated", "wall"))
        best_acc, best_step, evaluations = state["best_acc"], state["best_step"], state["evaluations"]

    def counters() -> Counters:
        return Counters(step=step, epoch=step / steps_per_epoch, samples_forwarded=forwarded,
                        samples_backpropagated=backpropagated, wall_time=wall)

    def checkpoint() -> None:
        if checkpoint_path is None:
            return
        _save_checkpoint(checkpoint_path, {
            "config": config.model_dump(), "model_name": model_name, "model": model.state_dict(),
            "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
            "selector": selector.state_dict(), "sampler": sampler.state_dict(),
            "aug_generator": aug_generator.get_state(), "torch_rng": torch.get_rng_state(),
            "step": step, "forwarded": forwarded, "backpropagated": backpropagated, "wall": wall,
            "best_acc": best_acc, "best_step": best_step, "evaluations": evaluations,
        })
        emit(CheckpointSaved(counters=counters(), path=str(checkpoint_path)))

    def validate() -> None:
        nonlocal best_acc, best_step
        result = evaluate(model, data, data.val, device=device, limit=config.eval_samples,
                          channels_last=channels_last)
        if result["accuracy"] > best_acc:
            best_acc, best_step = result["accuracy"], step
        c = counters()
        evaluations.append({**c.__dict__, "loss": result["loss"], "accuracy": result["accuracy"]})
        emit(Evaluation(counters=c, split="val", **result))

    emit(RunStarted(
        config=config.model_dump(), dataset=data.info(),
        model={"name": model_name, "parameters": sum(p.numel() for p in model.parameters()),
               "feature_dim": model.feature_dim},
        device=str(device), total_steps=total_steps, steps_per_epoch=steps_per_epoch,
        hist_edges=edges.tolist(), resumed_from_step=step,
    ))
    drops = drop_steps(config.regime, total_steps, steps_per_epoch)
    emit(LogMessage(step=step, level="info", message=(
        f"{'resumed at step ' + str(step) if step else 'started'}: {data.name} "
        f"({n_train} train), {model_name}, selector {config.selector}, B={pool} b={b}, "
        f"{total_steps} steps on {device}; LR drops at steps {drops or 'none'}")))

    # Interval accumulators for the logged averages (they never influence the trajectory).
    loss_sum = torch.zeros((), device=device)
    correct_sum = torch.zeros((), device=device)
    interval_steps, interval_samples, interval_score_time, interval_wall = 0, 0, 0.0, 0.0
    cand_class = torch.zeros(k, dtype=torch.long, device=device)
    sel_class = torch.zeros(k, dtype=torch.long, device=device)
    sel_wrong = torch.zeros((), dtype=torch.long, device=device)
    status = "finished"
    head_weight = model.head.weight
    # Selectors that rank candidates from stored scores (mms-memory) do not forward the pool, but
    # re-score the training split themselves through `refresh` (engine/selection/memory.py).
    forwards_candidates = getattr(selector, "forwards_candidates", True) and selector.uses_candidates
    refresh = getattr(selector, "refresh", None)
    bn_pool = PoolStatistics(model, samples=b, enabled=config.bn_stats == "pool")

    def train_inputs(idx: torch.Tensor) -> torch.Tensor:
        """Training samples as the model sees them when scoring: no augmentation."""
        x_, _ = data.batch(data.train, idx, augment=False, generator=None, device=device)
        return x_.contiguous(memory_format=torch.channels_last) if channels_last else x_

    # --- the loop
    try:
        while step < total_steps:
            if should_stop is not None and should_stop():
                raise StopTraining
            t_step = time.perf_counter()
            lr = lr_at(step, base_lr=config.lr, regime=config.regime, total_steps=total_steps,
                       steps_per_epoch=steps_per_epoch, warmup_steps=warmup_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr

            # draw candidates and let the selector choose the training batch
            indices = sampler.draw(pool)
            x, y = data.batch(data.train, indices, augment=config.augment, generator=aug_generator,
                              device=device)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            t_score = time.perf_counter()
            with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp), bn_pool.recording():
                selection = selector.select(model, x, y, indices, batch_size=b,
                                            epoch=step / steps_per_epoch)
            score_time = time.perf_counter() - t_score
            chosen = selection.index.to(device)
            xb, yb = x[chosen], y[chosen]

            # forward, backward, update on the selected batch; BatchNorm's running statistics come
            # from the candidates the selector just scored, when it scored any (engine/batchnorm.py)
            model.train()
            with (torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp),
                  bn_pool.frozen(enabled=bn_pool.recorded)):
                logits = model(xb)
                loss = F.cross_entropy(logits.float(), yb)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            bn_pool.update()  # after backward: autograd saved the running statistics' versions
            logits = logits.detach().float()
            selector.observe(indices[chosen.cpu()], logits, yb)
            if refresh is not None:  # real work: counted in samples_forwarded and in this step's time
                with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                    forwarded += refresh(model, train_inputs, num_train=n_train,
                                         steps_per_epoch=steps_per_epoch)

            step += 1
            step_box[0] = step
            forwarded += (len(indices) if forwards_candidates else 0) + len(chosen)
            backpropagated += len(chosen)
            loss_sum += loss.detach()
            correct_sum += (logits.argmax(1) == yb).sum()

            # monitoring: MMS of candidates and of the selected samples (free when the selector
            # already scored the candidates; otherwise from the training forward's logits)
            if config.hist_every:
                cand_logits = selection.logits if selection.logits is not None else logits
                cand_labels = y if selection.logits is not None else yb
                sel_logits = cand_logits[chosen] if selection.logits is not None else logits
                cand_class += torch.bincount(cand_labels, minlength=k)
                sel_class += torch.bincount(yb, minlength=k)
                sel_wrong += (sel_logits.argmax(1) != yb).sum()
                if step % config.hist_every == 0 or step == total_steps:
                    if device.type == "cuda":
                        torch.cuda.synchronize()
                    wall += time.perf_counter() - t_step
                    interval_wall += time.perf_counter() - t_step
                    t_step = time.perf_counter()
                    c = counters()
                    mms = minimal_margin_scores(cand_logits, head_weight.detach())
                    sel_mms = mms[chosen] if selection.logits is not None else mms
                    threshold = selection.threshold if config.selector.startswith("mms") else None
                    emit(histogram_event(mms, edges, c, "candidates", None))
                    emit(histogram_event(sel_mms, edges, c, "selected", threshold))
                    n_sel = int(sel_class.sum())
                    emit(ClassSelection(counters=c, candidate_counts=cand_class.cpu().tolist(),
                                        selected_counts=sel_class.cpu().tolist(),
                                        selected_misclassified=int(sel_wrong) / max(n_sel, 1)))
                    cand_class.zero_(); sel_class.zero_(); sel_wrong.zero_()  # noqa: E702

            if device.type == "cuda" and step % config.log_every == 0:
                torch.cuda.synchronize()
            elapsed = time.perf_counter() - t_step
            wall += elapsed
            interval_wall += elapsed
            interval_steps += 1
            interval_samples += len(chosen)
            interval_score_time += score_time

            if step % config.log_every == 0 or step == total_steps:
                emit(StepMetrics(
                    counters=counters(), lr=lr, loss=float(loss_sum) / interval_steps,
                    accuracy=float(correct_sum) / interval_samples,
                    samples_per_s=interval_samples / max(interval_wall, 1e-9),
                    score_time=interval_score_time / interval_steps,
                    step_time=interval_wall / interval_steps,
                ))
                loss_sum.zero_(); correct_sum.zero_()  # noqa: E702
                interval_steps, interval_samples, interval_score_time, interval_wall = 0, 0, 0.0, 0.0
                if not math.isfinite(float(loss.detach())):
                    raise FloatingPointError(f"loss became {float(loss.detach())} at step {step}; lower lr")

            if step % eval_every == 0 or step == total_steps:
                validate()
            if step % checkpoint_every == 0 and step < total_steps:
                checkpoint()
    except StopTraining:
        status = "cancelled"
        emit(LogMessage(step=step, level="warning", message=f"stopped at step {step} on request"))

    # --- the end: checkpoint, final test
    checkpoint()
    test = None
    if status == "finished":
        test = evaluate(model, data, data.test, device=device, channels_last=channels_last)
        emit(Evaluation(counters=counters(), split="test", **test))
    result = TrainResult(
        status=status, steps=step, samples_forwarded=forwarded, samples_backpropagated=backpropagated,
        wall_time=wall, best_val_accuracy=best_acc, best_val_step=best_step,
        test_accuracy=test["accuracy"] if test else None, test_loss=test["loss"] if test else None,
        checkpoint=str(checkpoint_path) if checkpoint_path else None, evaluations=evaluations,
    )
    emit(RunFinished(counters=counters(), status=status, summary=result.summary))
    return result
