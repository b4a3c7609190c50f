"""System metrics: what the machine is doing while a run trains, as W&B and MLflow report it.

Every `system_interval` seconds (TrainConfig; 0 = off) the trainer reads

- ``system/cpu_percent``: this process's CPU use, in % of one core (400 = four busy cores, as
  `top` counts);
- ``system/cpu_machine_percent``: the whole machine's CPU use, in % of all its cores;
- ``system/memory_mb``: this process's resident memory (MiB);
- ``system/memory_machine_percent``: the machine's memory in use, in % of its total;
- on a CUDA device also ``system/gpu_percent`` (utilisation, when the driver's NVML answers),
  ``system/gpu_memory_mb`` (what PyTorch allocated) and ``system/gpu_memory_percent`` (the
  device's memory in use, in % of its total),

and emits them as one `Scalars` event: they travel the engine's one write path (events, then the
dashboard's ingest, then the store's metric rows) under ``system/`` keys, with no table of their
own. The event carries the counters of the last step the loop published, so the readings line
up with the other curves on every x axis.

Why a thread, not the training loop's log: the loop does not log while it validates, tests or
writes a checkpoint, and those are the moments a user opens the System panel to ask about (is
the evaluation starved? is memory growing?). A daemon thread reads on its own clock, so readings
keep coming through a long evaluation; it is a daemon so that it can never keep a killed or
finished process alive, and `stop()` (which the loop calls before RunFinished or RunFailed, so no
reading follows the run's last event) wakes and joins it at once. The callbacks are not
thread-safe, so the loop and this thread emit through one lock (`serialized`).

psutil reads the numbers (on Linux, macOS and Windows alike); the GPU's through torch, only when
the run's device is CUDA (no GPU: no GPU keys at all).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import psutil

from marginscope.engine.events import Counters, Event, Scalars, StopTraining

log = logging.getLogger(__name__)

MIB = 2**20


def serialized(emit: Callable[[Event], None]) -> Callable[[Event], None]:
    """`emit` behind a lock: the training loop and the sampler's thread hand events over one at a
    time (a callback such as a JSON-lines writer or a progress bar is not thread-safe)."""
    lock = threading.Lock()

    def emit_one(event: Event) -> None:
        with lock:
            emit(event)

    return emit_one


class SystemSampler:
    """Reads the system metrics every `interval` seconds on a daemon thread (see the module
    docstring) and emits them, at the counters the loop last `publish`ed. A callback's
    StopTraining is handed to `on_stop` (the loop stops at its next step); any other error of a
    reading or a callback ends the sampling with a warning, never the training."""

    def __init__(self, emit: Callable[[Event], None], interval: float, *, cuda_device: Any = None,
                 on_stop: Callable[[], None] = lambda: None) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive (0 turns system metrics off: make no sampler)")
        self.emit, self.interval, self.on_stop = emit, interval, on_stop
        self.cuda_device = cuda_device
        self.process = psutil.Process()
        self.process.cpu_percent()  # the first call starts the measuring interval; it reads 0.0
        psutil.cpu_percent()
        self.counters: Counters | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="marginscope-system", daemon=True)

    def publish(self, counters: Counters) -> None:
        """The position the next readings are stamped with (the loop calls it after each step)."""
        self.counters = counters

    def start(self) -> SystemSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop sampling now (idempotent); returns once the thread has ended, so no reading is
        emitted after this call."""
        self._done.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()

    def reading(self) -> dict[str, float]:
        """One reading of every metric this machine has (see the module docstring)."""
        values = {
            "system/cpu_percent": self.process.cpu_percent(),
            "system/cpu_machine_percent": psutil.cpu_percent(),
            "system/memory_mb": self.process.memory_info().rss / MIB,
            "system/memory_machine_percent": psutil.virtual_memory().percent,
        }
        if self.cuda_device is not None:
            values.update(_gpu_reading(self.cuda_device))
        return values

    def _run(self) -> None:
        while not self._done.wait(self.interval):
            counters = self.counters
            if counters is None:  # no step yet: the first reading waits for the first position
                continue
            try:
                self.emit(Scalars(counters=counters, values=self.reading()))
            except StopTraining:
                self.on_stop()
            except Exception as exc:  # noqa: BLE001 - a broken reading must not end the training
                log.warning("system metrics stopped: %s: %s", type(exc).__name__, exc)
                return


def _gpu_reading(device: Any) -> dict[str, float]:
    """The CUDA device's utilisation and memory; utilisation only when NVML answers (pynvml)."""
    import torch

    values = {"system/gpu_memory_mb": torch.cuda.memory_allocated(device) / MIB}
    free, total = torch.cuda.mem_get_info(device)
    values["system/gpu_memory_percent"] = 100.0 * (total - free) / total
    try:
        values["system/gpu_percent"] = float(torch.cuda.utilization(device))
    except Exception:  # noqa: BLE001 - no NVML (pynvml missing, or a driver without it)
        pass
    return values
