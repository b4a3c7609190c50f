"""The machine a benchmark ran on, and how it times work there.

Shared by the suite and the micro-benchmarks: both record the same machine description and load
average beside their numbers (a ratio means little without them), and both pick the candidate chunk
size by the same sweep, timed the same way.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from marginscope.engine.bench.arms import BenchSettings
    from marginscope.engine.data import DatasetBundle

CHUNKS = (32, 64, 128, 256, 512, 0)  # 0 = the whole candidate batch at once


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


def timed(fn: Callable[[], Any], reps: int, warmup: int = 2) -> float:
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


def bench_model_and_data(settings: BenchSettings) -> tuple[torch.device, DatasetBundle, torch.nn.Module]:
    """The settings' device, dataset and a freshly initialised model, laid out as training lays it."""
    from marginscope.engine.data import load_dataset
    from marginscope.engine.models import create_model
    from marginscope.engine.loop import resolve_device

    device = resolve_device(settings.device)
    data = load_dataset(settings.dataset, settings.data_dir, seed=0)
    torch.manual_seed(0)
    model = create_model(settings.model, num_classes=data.num_classes,
                         input_shape=data.input_shape).to(device)
    if device.type != "mps":
        model = model.to(memory_format=torch.channels_last)
    return device, data, model


def candidate_batch(data: DatasetBundle, n: int, device: torch.device,
                    seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` training samples drawn by `seed`, on `device`, laid out as training lays them."""
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
    from marginscope.engine.selection import score_logits

    times: dict[int, list[float]] = {c: [] for c in chunks}
    for c in chunks:  # warm-up
        score_logits(model, x, chunk=c)
    for _ in range(rounds):
        for c in chunks:
            times[c].append(timed(lambda c=c: score_logits(model, x, chunk=c), reps, warmup=0))
    med = {c: min(v) for c, v in times.items()}  # the least disturbed round: load only adds time
    best = min(med, key=med.get)
    return {"batch": int(x.shape[0]), "seconds": {str(c): med[c] for c in chunks}, "best": best,
            "vs_one_batch": med[0] / med[best] if 0 in med else None}
