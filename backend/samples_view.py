"""The answers about a run's samples (docs/samples.md): their shapes, and how the ranked list is
built from the store. Shared by the samples routes and the live websocket's "samples" message.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from marginscope.backend.store import AbstractStore, Run, SampleRecord

View = Literal["lowest", "selected", "misclassified"]


class SampleItem(BaseModel):
    """One sample in a ranked list."""

    index: int = Field(description="Dataset index in the run's training split.")
    label: int | None = Field(description="The label the run trained on (after label noise).")
    prediction: int | None = Field(description="The model's prediction when it was scored.")
    mms: float | None = Field(description="Its minimal margin score then.")
    selected: int = Field(description="Times selected for training so far.")
    class_name: str | None
    flipped: bool = Field(description="label_noise flipped its label (false without label noise).")


class SamplesPublic(BaseModel):
    view: View
    step: int | None = Field(description="The snapshot's step (lowest), or the latest snapshot's.")
    steps: list[int] = Field(description="Every step with a snapshot, ascending.")
    scored: str | None = Field(description="What the snapshot scored: candidates, or the trained batch.")
    items: list[SampleItem]


class HistoryPoint(BaseModel):
    step: int
    mms: float | None
    prediction: int | None


class SelectedPoint(BaseModel):
    step: int = Field(description="The snapshot that closes the interval.")
    count: int = Field(description="Times selected in the interval ending at `step`.")


class SampleStory(BaseModel):
    index: int
    label: int | None
    class_name: str | None
    flipped: bool
    history: list[HistoryPoint]
    selected: list[SelectedPoint]
    selected_total: int


class SuspectItem(BaseModel):
    index: int
    label: int | None
    prediction: int | None
    score: float | None = Field(description="Moving average of the signed margin (see `rule`).")
    selected: int
    mean_mms: float | None = Field(description="Mean MMS over the times it was scored.")
    observed: int = Field(description="Times it was scored.")
    class_name: str | None
    flipped: bool


class SuspectsPublic(BaseModel):
    rule: str
    step: int | None = Field(description="The snapshot the suspects come from.")
    items: list[SuspectItem]


class CompareSamplesPublic(BaseModel):
    overlap: float = Field(description="Shared share of the two hardest sets: count / the smaller set.")
    count: int = Field(description="Samples in both hardest sets.")
    k: int
    only: dict[str, list[SampleItem]] = Field(description="Run id → its hardest samples not in the other's.")


# ---------------------------------------------------------------------- built from the store


def class_name(run: Run, label: int | None) -> str | None:
    names = run.class_names
    return None if label is None else (names[label] if 0 <= label < len(names) else str(label))


def sample_item(run: Run, record: SampleRecord) -> SampleItem:
    return SampleItem(index=record.index, label=record.label, prediction=record.last_prediction,
                      mms=record.last_mms, selected=record.selected,
                      class_name=class_name(run, record.label), flipped=record.flipped)


def lowest_items(store: AbstractStore, run: Run, step: int | None) -> tuple[int | None, str | None,
                                                                           list[SampleItem]]:
    """(snapshot step, what it scored, its k lowest-margin samples) at or before `step`."""
    snap = store.get_sample_snapshot(run.id, step)
    if snap is None:
        return None, None, []
    table = snap.lowest
    records = store.get_sample_records(run.id, table.get("index", []))
    items = []
    for index, label, prediction, mms in zip(table["index"], table["label"], table["prediction"],
                                             table["mms"]):
        record = records.get(index)
        items.append(SampleItem(index=index, label=label, prediction=prediction, mms=mms,
                                selected=record.selected if record else 0,
                                class_name=class_name(run, label),
                                flipped=bool(record and record.flipped)))
    return snap.step, snap.scored, items


def samples_view(store: AbstractStore, run: Run, view: View, *, step: int | None = None,
                 cls: int | None = None, limit: int = 100) -> SamplesPublic:
    """GET /samples's answer (also the websocket's "samples" message, view=lowest, latest)."""
    steps = store.sample_steps(run.id)
    if view == "lowest":
        at, scored, items = lowest_items(store, run, step)
        items = [i for i in items if cls is None or i.label == cls][:limit]
    else:
        at, scored = (steps[-1] if steps else None), None
        items = [sample_item(run, r) for r in store.ranked_samples(run.id, view, label=cls, limit=limit)]
    return SamplesPublic(view=view, step=at, steps=steps, scored=scored, items=items)
