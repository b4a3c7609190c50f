"""Multi-process training with DistributedDataParallel: everything in the engine that knows ranks.

`train()` runs unchanged in every process that torchrun starts (`marginscope train --nproc N` runs
torchrun for the user); this module is what makes those N processes one run:

- **one process group per run**: `session()` joins torchrun's group from its environment (RANK,
  WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT) — gloo on CPU; on CUDA "cpu:gloo,cuda:nccl", so the
  gradients go over NCCL while the small control messages (stop, counters, checkpoint states) stay
  on the CPU. Outside torchrun it is a no-op and `Ranks()` answers for one process.
- **the data**: every rank draws the same global pool of B candidates from the run's one seeded
  data order (engine/sampler.py) and keeps its own contiguous B/N slice, so the shards are disjoint
  and together they are exactly what one process would have drawn; each rank's selector then picks
  b/N of its slice, so every selector works unchanged (the way Selective-Backprop and InfoBatch
  scale). Augmentation draws from a per-rank stream (`rank_seed`).
- **the weights**: the trained forward goes through DistributedDataParallel (gradients averaged
  over the ranks, BatchNorm buffers broadcast from rank 0 at each forward), so the parameters stay
  identical on every rank; scoring and evaluation use the bare module and need no collective.
- **one voice**: rank 0 alone calls the callbacks, validates, tests and writes checkpoints. The
  other ranks take part in every reduction the events need:
  * work counters (samples forwarded and back-propagated) are summed over the ranks each step;
  * margin histograms are the histogram of the union of the ranks' scores (all-gathered every
    `hist_every` steps): on the run's fixed edges its bin counts are exactly the sum of the ranks'
    bin counts, and its quantiles and mean are exact over all candidates, not an estimate merged
    from per-rank summaries; the selected histogram's threshold is the largest of the ranks'
    (every selected sample lies at or below it);
  * class-selection counts and misclassified selections are summed; StepMetrics' loss is the mean
    of the ranks' batch losses, accuracy and samples/s are over all ranks' samples;
  * `should_stop` (and a callback's StopTraining) is decided on rank 0 and broadcast every step,
    so all ranks leave the loop at the same step and the final checkpoint is taken together.
- **checkpoints**: rank 0 writes its own states at the top level (a DDP checkpoint resumes in one
  process too) plus every rank's random streams and selector state under "ranks"; every rank loads
  rank 0's file on resume and takes its own entry back when the number of ranks is unchanged.

A rank started by torchrun asks the kernel to kill it when its torchrun agent dies (Linux), so a
supervisor that SIGKILLs the agent never leaves ranks behind (torchrun starts each rank in its own
session, beyond the reach of a signal to the agent's process group).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import torch
import torch.distributed as dist

from marginscope.engine.events import Callback, Event, StopTraining
from marginscope.engine.monitoring import Monitor, StepRecord

__all__ = ["DistributedMonitor", "Ranks", "env_rank", "env_world_size", "session",
           "torchrun_command"]


def env_rank() -> int:
    """This process's global rank as torchrun announced it (0 outside torchrun). Readable before
    the process group exists: a caller that builds callbacks (a progress bar, an HTTP reporter)
    builds them only where this is 0."""
    return int(os.environ.get("RANK", "0"))


def env_world_size() -> int:
    """The number of processes of the run as torchrun announced it (1 outside torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def torchrun_command(nproc: int, target: str, args: Sequence[str], *, module: bool) -> list[str]:
    """The command that runs `target args...` (a module name, or a script path) on `nproc` local
    processes: torchrun in standalone mode (its own rendezvous on a free port), with this Python.
    "--" ends torchrun's own options, so no option of `args` is read as an abbreviation of one."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
            *(["-m"] if module else []), "--", target, *args]


def _die_with_parent() -> None:
    """Linux: SIGKILL this process when the process that started it exits (its torchrun agent)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


@dataclass
class Ranks:
    """The processes of one run, seen from one of them (one process: rank 0 of 1)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    stop_requested: bool = field(default=False, repr=False)  # a callback raised StopTraining
    _told: bool = field(default=False, repr=False)  # tell_followers has sent its message

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # --- setup -----------------------------------------------------------------------------

    def device(self, device: torch.device) -> torch.device:
        """Each rank of a CUDA run takes the GPU of its local rank."""
        if self.enabled and device.type == "cuda":
            return torch.device("cuda", self.local_rank)
        return device

    def share(self, total: int, what: str = "batch") -> int:
        """This rank's part of a global size (B or b); it must divide evenly."""
        if total % self.world:
            raise ValueError(f"{what} {total} cannot be split over {self.world} processes: use a "
                             f"multiple of {self.world}")
        return total // self.world

    def rank_seed(self, seed: int) -> int:
        """A per-rank seed for a random stream that must differ between ranks (rank 0: `seed`)."""
        return seed + 1_000_003 * self.rank

    def shard(self, indices: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous slice of the global candidate pool."""
        if not self.enabled:
            return indices
        n = self.share(len(indices), "candidate pool")
        return indices[self.rank * n:(self.rank + 1) * n]

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The module the training forward goes through: DistributedDataParallel across ranks."""
        if not self.enabled:
            return model
        from torch.nn.parallel import DistributedDataParallel

        on_cuda = next(model.parameters()).device.type == "cuda"
        return DistributedDataParallel(model, device_ids=[self.local_rank] if on_cuda else None)

    def monitor(self, emit: Callable[[Event], None], **kwargs: Any) -> Monitor:
        return DistributedMonitor(emit, ranks=self, **kwargs) if self.enabled else Monitor(emit, **kwargs)

    def emitter(self, callbacks: Sequence[Callback]) -> Callable[[Event], None]:
        """How events reach the callbacks: all of them in one process; on rank 0 only across
        ranks, where a callback's StopTraining becomes a request broadcast at the next step (a
        rank leaving the loop alone would leave the others waiting in a collective)."""
        def emit(event: Event) -> None:
            for callback in callbacks:
                callback(event)

        if not self.enabled:
            return emit

        def emit_on_rank0(event: Event) -> None:
            if not self.is_main:
                return
            try:
                emit(event)
            except StopTraining:
                self.stop_requested = True

        return emit_on_rank0

    # --- collectives (no-ops in one process) -----------------------------------------------

    def should_stop(self, poll: Callable[[], bool] | None) -> bool:
        """Rank 0's answer (its `poll` or a callback's request), the same on every rank."""
        local = self.stop_requested or (poll is not None and bool(poll()))
        if not self.enabled:
            return local
        flag = torch.tensor([int(local and self.is_main)])
        dist.all_reduce(flag)  # only rank 0 contributes: a broadcast in the collective every rank joins
        return bool(flag.item())

    def sum_ints(self, *values: int) -> tuple[int, ...]:
        """Each value summed over the ranks."""
        if not self.enabled:
            return values
        t = torch.tensor(values, dtype=torch.int64)
        dist.all_reduce(t)
        return tuple(int(v) for v in t.tolist())

    def sum_(self, *tensors: torch.Tensor) -> None:
        """Sum tensors over the ranks in place."""
        for t in tensors:
            dist.all_reduce(t)

    def gather_cat(self, t: torch.Tensor) -> torch.Tensor:
        """The ranks' tensors concatenated along dim 0 in rank order (first dims may differ)."""
        if not self.enabled:
            return t
        sizes = [torch.zeros(1, dtype=torch.int64) for _ in range(self.world)]
        dist.all_gather(sizes, torch.tensor([t.shape[0]], dtype=torch.int64))
        most = max(int(s) for s in sizes)
        padded = torch.zeros((most, *t.shape[1:]), dtype=t.dtype, device=t.device)
        padded[: t.shape[0]] = t
        parts = [torch.empty_like(padded) for _ in range(self.world)]
        dist.all_gather(parts, padded.contiguous())
        return torch.cat([p[: int(s)] for p, s in zip(parts, sizes)])

    def max_float(self, value: float | None) -> float | None:
        if not self.enabled or value is None:
            return value
        t = torch.tensor([float(value)], dtype=torch.float64)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return float(t.item())

    def all_gather_object(self, obj: Any) -> list[Any]:
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def tell_followers(self, obj: Any) -> None:
        """Rank 0, once: send `obj` to the other ranks waiting in `broadcast_object` (later calls
        do nothing, so a `finally` can make sure they are never left waiting)."""
        if self.enabled and self.is_main and not self._told:
            self._told = True
            self.broadcast_object(obj)

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's `obj` on every rank."""
        if not self.enabled:
            return obj
        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather_step(self, s: StepRecord) -> StepRecord:
        """The step as if one process had drawn all ranks' candidates: every per-candidate tensor
        all-gathered in rank order, the chosen positions shifted to their rank's place."""
        if not self.enabled:
            return s
        offset = torch.tensor([len(s.labels)], dtype=torch.int64)
        offsets = [torch.zeros(1, dtype=torch.int64) for _ in range(self.world)]
        dist.all_gather(offsets, offset)
        start = sum(int(o) for o in offsets[: self.rank])
        selection = s.selection
        if s.scored:
            selection = replace(selection, logits=self.gather_cat(selection.logits))
        indices = None if s.indices is None else self.gather_cat(s.indices)
        return replace(s, selection=selection, chosen=self.gather_cat(s.chosen + start),
                       labels=self.gather_cat(s.labels), batch_labels=self.gather_cat(s.batch_labels),
                       logits=self.gather_cat(s.logits), indices=indices)


class DistributedMonitor(Monitor):
    """The Monitor of a multi-process run: each report first merges the ranks' sums (see the
    module docstring), then reports as one process would; only rank 0's `emit` reaches callbacks."""

    def __init__(self, emit: Callable[[Event], None], *, ranks: Ranks, **kwargs: Any) -> None:
        super().__init__(emit, **kwargs)
        self.ranks = ranks

    def histograms(self, s: StepRecord, counters: Any, head_weight: torch.Tensor,
                   threshold: float | None) -> None:
        merged = self.ranks.gather_step(s)
        self.ranks.sum_(self.cand_class, self.sel_class, self.sel_wrong)
        threshold = self.ranks.max_float(threshold)
        if self.ranks.is_main:
            super().histograms(merged, counters, head_weight, threshold)
        else:  # nothing to report here: start the next interval's counts like rank 0
            self.cand_class.zero_(); self.sel_class.zero_(); self.sel_wrong.zero_()  # noqa: E702

    def step_metrics(self, s: StepRecord, counters: Any, cpu_time: float = 0.0) -> None:
        sums = torch.tensor([float(self.loss_sum), float(self.correct_sum), self.samples, self.score_time,
                             self.refresh_time, cpu_time], dtype=torch.float64)
        dist.all_reduce(sums)
        world = self.ranks.world
        self.loss_sum.fill_(sums[0].item() / world)  # the mean of the ranks' batch losses
        self.correct_sum.fill_(sums[1].item())
        self.samples, self.score_time = int(sums[2].item()), sums[3].item() / world
        self.refresh_time = sums[4].item() / world
        super().step_metrics(s, counters, cpu_time=sums[5].item())  # CPU time: all processes' work


@contextmanager
def session(device: str = "auto") -> Iterator[Ranks]:
    """The run's ranks: the process group the caller set up, else torchrun's (joined here from its
    environment and left at the end), else one process."""
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    joined = not dist.is_initialized() and env_world_size() > 1
    if not dist.is_initialized() and not joined:
        yield Ranks()
        return
    if joined:
        if "TORCHELASTIC_RUN_ID" in os.environ:  # started by torchrun: never outlive its agent
            _die_with_parent()
        cuda = device in ("auto", "cuda") and torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group("cpu:gloo,cuda:nccl" if cuda else "gloo")
    try:
        yield Ranks(rank=dist.get_rank(), world=dist.get_world_size(), local_rank=local_rank)
    finally:
        if joined and dist.is_initialized():
            dist.destroy_process_group()
