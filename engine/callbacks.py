"""Ready-made event sinks: a console progress bar and a JSON-lines event log.

Both are plain callables taking one event (engine/events.py), like any user callback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from marginscope.engine.events import Evaluation, Event, LogMessage, RunFailed, RunFinished, RunStarted, StepMetrics


class ProgressBar:
    """A rich progress bar: step, loss, validation accuracy, samples/s and ETA."""

    def __init__(self, label: str = "train", console: Console | None = None):
        self.label = label
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}  val {task.fields[val]}  {task.fields[speed]}"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=console, transient=False,
        )
        self.task = None

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self.progress.start()
            self.task = self.progress.add_task(self.label, total=event.total_steps,
                                               completed=event.resumed_from_step,
                                               loss="-", val="-", speed="")
        elif self.task is None:
            return
        elif isinstance(event, StepMetrics):
            self.progress.update(self.task, completed=event.counters.step, loss=f"{event.loss:.3f}",
                                 speed=f"{event.samples_per_s:,.0f} samples/s")
        elif isinstance(event, Evaluation) and event.split == "val":
            self.progress.update(self.task, val=f"{event.accuracy:.2%}")
        elif isinstance(event, LogMessage) and event.level != "info":
            self.progress.console.print(f"[yellow]{event.message}")
        elif isinstance(event, (RunFinished, RunFailed)):
            if isinstance(event, RunFinished):
                self.progress.update(self.task, completed=event.counters.step)
            self.progress.stop()


class JsonlWriter:
    """Appends every event as one JSON line; `event_from_dict` reads them back."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] = self.path.open("a", encoding="utf-8")

    def __call__(self, event: Event) -> None:
        self._file.write(json.dumps(event.to_dict()) + "\n")
        if isinstance(event, (RunFinished, RunFailed, Evaluation)):
            self._file.flush()
        if isinstance(event, (RunFinished, RunFailed)):
            self._file.close()


class Recorder:
    """Keeps every event in memory (handy in notebooks and tests)."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    def of(self, cls: type[Event]) -> list:
        return [e for e in self.events if isinstance(e, cls)]
