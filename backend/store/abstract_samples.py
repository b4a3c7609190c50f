"""The samples reads of the store interface (AbstractStore inherits them): sample snapshots and the
per-sample records of a run. Writing goes through `AbstractStore.log_batch` (a `SamplePoint` row),
like every other row; `truncate_after_step` drops the snapshots after a resume's checkpoint.

Every method raises RunNotFound for an unknown run and InvalidArgument for a bad argument.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import Any, Literal

from marginscope.backend.store.entities import SampleHistory, SampleRecord, SampleSnapshotRow


class AbstractSamplesStore(ABC):
    @abstractmethod
    def sample_steps(self, run_id: int) -> list[int]:
        """The steps of the run's sample snapshots, ascending."""

    @abstractmethod
    def last_sample_seq(self, run_id: int) -> int:
        """The seq of the run's latest sample snapshot (0: none) — the hub's "new snapshot?" test."""

    @abstractmethod
    def get_sample_snapshot(self, run_id: int, step: int | None = None) -> SampleSnapshotRow | None:
        """The latest snapshot at or before `step` (None: the latest of all); None when none."""

    @abstractmethod
    def get_sample_records(self, run_id: int, indices: Sequence[int]) -> dict[int, SampleRecord]:
        """{index: record} for the given dataset indices the run has a record of."""

    @abstractmethod
    def ranked_samples(self, run_id: int, view: Literal["selected", "misclassified"], *,
                       label: int | None = None, limit: int = 100) -> list[SampleRecord]:
        """selected: most often selected first; misclassified: selected samples whose latest
        prediction differs from their label, most often misclassified first. `label`: one class."""

    @abstractmethod
    def suspects(self, run_id: int, *, limit: int = 100) -> list[SampleRecord]:
        """The suspects of the run's latest snapshot, highest score first."""

    @abstractmethod
    def sample_history(self, run_id: int, index: int) -> SampleHistory:
        """One sample over the run (see SampleHistory)."""

    @abstractmethod
    def iter_sample_snapshots(self, run_id: int, *, until_seq: int) -> Iterator[dict[str, Any]]:
        """Every snapshot (step, epoch, scored, lowest, selected) with seq <= until_seq: the export."""

    @abstractmethod
    def iter_sample_records(self, run_id: int) -> Iterator[SampleRecord]:
        """Every sample record of the run, by index: the export."""
