"""The samples part of the SQLAlchemy store: sample snapshots and the per-sample rows of a run.

Kept beside `sqlalchemy_store.py` (which mixes `SqlSamplesStore` in) so that the store's core stays
about runs and series. Two tables (dbmodels): `sample_snapshots`, one row per snapshot (its k
lowest-margin samples and the selection counts since the previous one, as columnar JSON), and
`run_samples`, one row per training sample a snapshot ever named, updated in place (selection
totals, the latest margin and prediction, the flipped flag, the current suspect score). So a run
stores (steps / samples_every) snapshot rows and at most N sample rows (N = training-set size),
never a row per sample per step.

Writing happens inside `log_batch`'s transaction (`apply_samples`); resumes go through
`truncate_samples` (the counts are rebuilt from the snapshots that remain).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any, Literal

from sqlalchemy import delete, func, select, true, update
from sqlalchemy.orm import Session

from marginscope.backend.store import entities as ent
from marginscope.backend.store.dbmodels import MAX_INT32, SqlRunSample, SqlSampleSnapshot
from marginscope.backend.store.exceptions import InvalidArgument

_IN_CHUNK = 500  # ids per IN (...) list
MAX_SAMPLES_LIMIT = 500  # the most samples one ranked read returns
SampleView = Literal["selected", "misclassified"]


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def snapshot_values(point: ent.SamplePoint) -> dict[str, Any]:
    """The `sample_snapshots` columns of one point (without run_id and seq)."""
    lowest = {k: list(v) for k, v in point.lowest.items()}
    if "mms" in lowest:
        lowest["mms"] = [_finite(x) for x in lowest["mms"]]
    selected = {k: list(v) for k, v in point.selected.items()}
    if "mms" in selected:
        selected["mms"] = [_finite(x) for x in selected["mms"]]
    return {"step": int(point.at.step), "epoch": float(point.at.epoch), "scored": str(point.scored),
            "lowest": lowest, "selected": selected}


def _rows_for(s: Session, run_id: int, indices: set[int]) -> dict[int, SqlRunSample]:
    """The run's sample rows for `indices`, created (empty) where missing."""
    found: dict[int, SqlRunSample] = {}
    wanted = sorted(i for i in indices if 0 <= i <= MAX_INT32)
    for i in range(0, len(wanted), _IN_CHUNK):
        chunk = wanted[i:i + _IN_CHUNK]
        for row in s.execute(select(SqlRunSample).where(SqlRunSample.run_id == run_id,
                                                        SqlRunSample.sample.in_(chunk))).scalars():
            found[row.sample] = row
    for index in wanted:
        if index not in found:
            row = SqlRunSample(run_id=run_id, sample=index, flipped=False, selected=0, misclassified=0,
                               observed=0)
            s.add(row)
            found[index] = row
    return found


def _columns(table: dict[str, list[Any]]) -> Iterator[dict[str, Any]]:
    """The rows of a columnar table."""
    names = list(table)
    for values in zip(*(table[n] for n in names)):
        yield dict(zip(names, values))


def apply_samples(s: Session, run_id: int, points: Sequence[ent.SamplePoint]) -> None:
    """Update the run's sample rows from `points` (in order); the snapshot rows themselves are
    inserted by log_batch with their seqs. The latest point's suspects replace the run's list."""
    if not points:
        return
    indices: set[int] = set()
    for p in points:
        indices.update(int(i) for i in p.flipped)
        for table in (p.lowest, p.selected, p.suspects):
            indices.update(int(i) for i in table.get("index", []))
    # a sample index is a position in the training split: never negative, and inside the column
    if bad := sorted(i for i in indices if not 0 <= i <= MAX_INT32)[:1]:
        raise InvalidArgument(f"sample index {bad[0]} is out of range: indices are 0..{MAX_INT32}")
    _forget_suspects(s, run_id, SqlRunSample.suspect_score.is_not(None))
    rows = _rows_for(s, run_id, indices)
    for p in points:
        step = int(p.at.step)
        for index in p.flipped:
            rows[int(index)].flipped = True
        for item in _columns(p.selected):
            row = rows[int(item["index"])]
            row.label = int(item["label"])
            row.selected = (row.selected or 0) + int(item["count"])
            row.misclassified = (row.misclassified or 0) + int(item["misclassified"])
            row.last_mms, row.last_prediction, row.last_step = (
                _finite(item["mms"]), int(item["prediction"]), step)
        for item in _columns(p.lowest):
            row = rows[int(item["index"])]
            row.label = int(item["label"])
            row.last_mms, row.last_prediction, row.last_step = (
                _finite(item["mms"]), int(item["prediction"]), step)
    for item in _columns(points[-1].suspects):
        row = rows[int(item["index"])]
        row.label = int(item["label"])
        if row.last_step is None:  # last_mms/_prediction/_step are one observation, when there is one
            row.last_prediction = int(item["prediction"])
        row.suspect_score = _finite(item["score"])
        row.mean_mms = _finite(item["mean_mms"])
        row.observed = int(item["observed"])


def _forget_suspects(s: Session, run_id: int, which: Any) -> None:
    """Clear what a suspects list said of the samples `which` selects. The suspect fields describe
    the latest list only, and so do the label and prediction of a sample no lowest/selected table
    named (no `last_step`): a sample then reads the same however its run's snapshots were batched
    into transactions, and a resume's truncation leaves nothing of a dropped list behind."""
    s.execute(update(SqlRunSample).where(SqlRunSample.run_id == run_id, which, SqlRunSample.last_step.is_(None))
              .values(label=None, last_prediction=None).execution_options(synchronize_session=False))
    s.execute(update(SqlRunSample).where(SqlRunSample.run_id == run_id, which)
              .values(suspect_score=None, mean_mms=None, observed=0)
              .execution_options(synchronize_session=False))


def truncate_samples(s: Session, run_id: int, step: int) -> int:
    """Before a resume from the checkpoint at `step`: drop later snapshots, rebuild the selection
    totals from those that remain, and forget what the dropped ones said of each sample (its
    latest margin, the suspects list: they come back with the resumed attempt's snapshots).
    Returns the number of snapshot rows deleted."""
    res = s.execute(delete(SqlSampleSnapshot).where(SqlSampleSnapshot.run_id == run_id,
                                                    SqlSampleSnapshot.step > step))
    deleted = int(res.rowcount or 0)  # type: ignore[attr-defined]
    if not deleted:
        return 0
    totals: dict[int, list[int]] = {}
    for selected in s.execute(select(SqlSampleSnapshot.selected)
                              .where(SqlSampleSnapshot.run_id == run_id)).scalars():
        for item in _columns(selected):
            total = totals.setdefault(int(item["index"]), [0, 0])
            total[0] += int(item["count"])
            total[1] += int(item["misclassified"])
    # what the dropped snapshots last said of a sample is forgotten too: the resumed attempt says
    # it again when its own snapshots name the sample
    s.execute(update(SqlRunSample).where(SqlRunSample.run_id == run_id, SqlRunSample.last_step > step)
              .values(last_mms=None, last_prediction=None, last_step=None)
              .execution_options(synchronize_session=False))
    _forget_suspects(s, run_id, true())
    s.execute(update(SqlRunSample).where(SqlRunSample.run_id == run_id)
              .values(selected=0, misclassified=0).execution_options(synchronize_session=False))
    rows = _rows_for(s, run_id, set(totals))
    for index, (count, wrong) in totals.items():
        rows[index].selected, rows[index].misclassified = count, wrong
    return deleted


class SqlSamplesStore:
    """The samples reads of `SqlAlchemyStore` (mixed in; uses its `_session` and `_get`)."""

    _session: Any
    _get: Any

    def sample_steps(self, run_id: int) -> list[int]:
        with self._session() as s:
            self._get(s, run_id)
            return [int(x) for x in s.execute(
                select(SqlSampleSnapshot.step).where(SqlSampleSnapshot.run_id == run_id)
                .order_by(SqlSampleSnapshot.step, SqlSampleSnapshot.seq)).scalars()]

    def last_sample_seq(self, run_id: int) -> int:
        with self._session() as s:
            self._get(s, run_id)
            value = s.execute(select(func.max(SqlSampleSnapshot.seq))
                              .where(SqlSampleSnapshot.run_id == run_id)).scalar_one_or_none()
            return int(value or 0)

    def get_sample_snapshot(self, run_id: int, step: int | None = None) -> ent.SampleSnapshotRow | None:
        with self._session() as s:
            self._get(s, run_id)
            query = select(SqlSampleSnapshot.seq, SqlSampleSnapshot.step, SqlSampleSnapshot.epoch,
                           SqlSampleSnapshot.scored, SqlSampleSnapshot.lowest).where(
                SqlSampleSnapshot.run_id == run_id)
            if step is not None:
                query = query.where(SqlSampleSnapshot.step <= max(-MAX_INT32, min(MAX_INT32, int(step))))
            row = s.execute(query.order_by(SqlSampleSnapshot.step.desc(), SqlSampleSnapshot.seq.desc())
                            .limit(1)).first()
            if row is None:
                return None
            return ent.SampleSnapshotRow(seq=row.seq, step=row.step, epoch=row.epoch, scored=row.scored,
                                         lowest=dict(row.lowest))

    def get_sample_records(self, run_id: int, indices: Sequence[int]) -> dict[int, ent.SampleRecord]:
        wanted = sorted({int(i) for i in indices if 0 <= int(i) <= MAX_INT32})
        out: dict[int, ent.SampleRecord] = {}
        with self._session() as s:
            self._get(s, run_id)
            for i in range(0, len(wanted), _IN_CHUNK):
                for row in s.execute(select(SqlRunSample).where(
                        SqlRunSample.run_id == run_id,
                        SqlRunSample.sample.in_(wanted[i:i + _IN_CHUNK]))).scalars():
                    out[row.sample] = row.to_entity()
        return out

    def ranked_samples(self, run_id: int, view: SampleView, *, label: int | None = None,
                       limit: int = 100) -> list[ent.SampleRecord]:
        """selected: the most often selected samples; misclassified: selected samples whose latest
        prediction differs from their label, most often misclassified first."""
        if not 0 <= limit <= MAX_SAMPLES_LIMIT:
            raise InvalidArgument(f"limit must be in 0..{MAX_SAMPLES_LIMIT}", field="limit")
        query = select(SqlRunSample).where(SqlRunSample.run_id == run_id, SqlRunSample.selected > 0)
        if view == "selected":
            order = [SqlRunSample.selected.desc(), SqlRunSample.sample]
        elif view == "misclassified":
            query = query.where(SqlRunSample.last_prediction != SqlRunSample.label)
            order = [SqlRunSample.misclassified.desc(), SqlRunSample.selected.desc(), SqlRunSample.sample]
        else:
            raise InvalidArgument(f"unknown view {view!r}; use selected or misclassified", field="view")
        if label is not None:
            query = query.where(SqlRunSample.label == max(-MAX_INT32, min(MAX_INT32, int(label))))
        with self._session() as s:
            self._get(s, run_id)
            return [r.to_entity() for r in s.execute(query.order_by(*order).limit(limit)).scalars()]

    def suspects(self, run_id: int, *, limit: int = 100) -> list[ent.SampleRecord]:
        """The run's current suspects (from its latest snapshot), highest score first."""
        if not 0 <= limit <= MAX_SAMPLES_LIMIT:
            raise InvalidArgument(f"limit must be in 0..{MAX_SAMPLES_LIMIT}", field="limit")
        with self._session() as s:
            self._get(s, run_id)
            return [r.to_entity() for r in s.execute(
                select(SqlRunSample).where(SqlRunSample.run_id == run_id,
                                           SqlRunSample.suspect_score.is_not(None))
                .order_by(SqlRunSample.suspect_score.desc(), SqlRunSample.sample).limit(limit)).scalars()]

    def sample_history(self, run_id: int, index: int) -> ent.SampleHistory:
        """Every snapshot that names the sample: its margin and prediction there, and how often it
        was selected in the interval the snapshot closes. Reads each snapshot's JSON once."""
        history: dict[int, dict[str, Any]] = {}
        selected: list[dict[str, int]] = []
        with self._session() as s:
            self._get(s, run_id)
            record = s.execute(select(SqlRunSample).where(
                SqlRunSample.run_id == run_id, SqlRunSample.sample == index)).scalar_one_or_none()
            rows = s.execute(select(SqlSampleSnapshot.step, SqlSampleSnapshot.lowest,
                                    SqlSampleSnapshot.selected)
                             .where(SqlSampleSnapshot.run_id == run_id)
                             .order_by(SqlSampleSnapshot.step, SqlSampleSnapshot.seq))
            for step, lowest, chosen in rows:
                for table, is_selected in ((chosen, True), (lowest, False)):
                    try:
                        k = table["index"].index(index)
                    except ValueError:
                        continue
                    history[step] = {"step": step, "mms": table["mms"][k],
                                     "prediction": table["prediction"][k]}
                    if is_selected:
                        selected.append({"step": step, "count": int(table["count"][k])})
        return ent.SampleHistory(record=record.to_entity() if record is not None else None,
                                 history=[history[k] for k in sorted(history)], selected=selected)

    def iter_sample_snapshots(self, run_id: int, *, until_seq: int) -> Iterator[dict[str, Any]]:
        """Every snapshot row (step, epoch, scored, lowest, selected) with seq <= until_seq."""
        with self._session() as s:
            self._get(s, run_id)
            query = (select(SqlSampleSnapshot).where(SqlSampleSnapshot.run_id == run_id,
                                                     SqlSampleSnapshot.seq <= until_seq)
                     .order_by(SqlSampleSnapshot.step, SqlSampleSnapshot.seq)
                     .execution_options(yield_per=100))
            for row in s.execute(query).scalars():
                yield {"step": row.step, "epoch": row.epoch, "scored": row.scored,
                       "lowest": dict(row.lowest), "selected": dict(row.selected)}

    def iter_sample_records(self, run_id: int) -> Iterator[ent.SampleRecord]:
        """Every sample row of the run, by index."""
        with self._session() as s:
            self._get(s, run_id)
            query = (select(SqlRunSample).where(SqlRunSample.run_id == run_id)
                     .order_by(SqlRunSample.sample).execution_options(yield_per=1000))
            for row in s.execute(query).scalars():
                yield row.to_entity()
