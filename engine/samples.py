"""Which samples a run looks at: the sample tracker behind the samples gallery and the suspects.

Every step the loop hands the tracker what it already computed (the scored samples' logits, which
of them were trained on, their dataset indices); every `samples_every` steps the tracker emits a
`SampleSnapshot` (engine/events.py). The cost per step is a handful of scatter operations over the
B scored samples into per-sample tensors kept on the training device (no host sync); the snapshot
reads them back once.

Margins: a selector that ranks by MMS hands its scores over (no second computation; for
mms-runner-up these are its runner-up margins); for any other the tracker computes the exact MMS
of the logits (engine/selection/scores.py), a K x K distance matrix and one pass over B x K.

What is scored: a selector that scores candidates (mms, hard-negative, entropy, ...) has their
eval-mode logits — the tracker uses them, so every candidate counts as one observation. A selector
that scores none (uniform, mms-memory) has only the trained batch: the tracker takes the MMS of
the training forward's logits (computed before the update, in train mode), and the snapshot says
`scored="batch"`.

Bounded: the tracker's state is a few tensors of N (training-set size) numbers; a snapshot holds k
lowest, at most min(samples_every x b, N) selected entries and SUSPECTS_KEPT suspects — never a
row per sample per step (docs/samples.md gives the bound in rows and bytes).

The suspect rule (docs/samples.md): MMS is the distance to the nearest decision boundary of the
*predicted* class, so it says how confident the model is, not whether it agrees with the label.
Each observation is turned into a signed margin: +MMS when the prediction differs from the label
(confident disagreement), -MMS when it agrees. A sample's score is the exponential moving average
of its signed margins (weight EMA_WEIGHT on the newest, so the untrained model's early guesses fade
out); suspects are the samples with a positive score — on recent balance predicted as another
class — ranked by it. A mislabelled image the model has learnt the true class of is predicted
confidently as that class: large positive score. An ambiguous image flips between classes near
the boundary: small scores either way. Low margin alone (and so selection by MMS) marks ambiguous
samples, not mislabelled ones.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from marginscope.engine.events import EMA_WEIGHT, SUSPECT_RULE, SUSPECTS_KEPT, Counters, SampleSnapshot
from marginscope.engine.monitoring import StepRecord
from marginscope.engine.selection import minimal_margin_scores

__all__ = ["EMA_WEIGHT", "SUSPECT_RULE", "SUSPECTS_KEPT", "SampleTracker"]  # the constants: engine/events.py


def _round(values: Tensor, digits: int = 5) -> list[float]:
    """Floats with `digits` significant digits: the snapshot's JSON stays short."""
    return [float(f"{v:.{digits}g}") for v in values.tolist()]


class SampleTracker:
    """Per-sample counts and scores of one run, and the snapshots made of them."""

    def __init__(self, num_train: int, *, every: int, k: int, labels: Tensor, flipped: Tensor,
                 device: torch.device, scores_are_mms: bool = False) -> None:
        self.every, self.k, self.device = every, k, device
        # the selector ranks by MMS (Selector.threshold_is_mms): its scores are the margins, free
        self.scores_are_mms = scores_are_mms
        self.labels = labels.to(device)  # the (possibly noisy) training labels
        self.flipped = flipped.cpu()
        self._flipped_sent = False  # sent with the first snapshot of each process (resume: again)
        n = num_train

        def zeros(dtype: torch.dtype) -> Tensor:
            return torch.zeros(n, dtype=dtype, device=device)

        # since the last snapshot
        self.selected = zeros(torch.int32)
        self.selected_wrong = zeros(torch.int32)
        # over the run
        self.observed = zeros(torch.int32)
        self.mms_sum = zeros(torch.float32)
        self.score = zeros(torch.float32)
        self.last_mms = zeros(torch.float32)
        self.last_prediction = zeros(torch.int64)
        self._step: tuple[Tensor, Tensor, Tensor, Tensor] | None = None  # the last step's scored samples

    @property
    def enabled(self) -> bool:
        return self.every > 0

    def due(self, step: int, last: bool) -> bool:
        return self.enabled and (step % self.every == 0 or last)

    def observe(self, record: StepRecord, indices: Tensor, head_weight: Tensor) -> None:
        """Count one step: `indices` are the dataset indices of the step's candidates (CPU)."""
        if not self.enabled:
            return
        idx = indices.to(self.device, non_blocking=True)
        if not record.scored:  # only the trained batch was forwarded: it stands in for the candidates
            idx = idx[record.chosen]
        logits, labels = record.candidate_logits, record.candidate_labels
        scores = record.selection.scores
        if self.scores_are_mms and record.scored and scores is not None and len(scores) == len(logits):
            mms = scores.float()
        else:
            mms = minimal_margin_scores(logits, head_weight)
        prediction = logits.argmax(1)
        wrong = prediction != labels
        signed = torch.where(wrong, mms, -mms)
        prior = self.score[idx]
        self.score[idx] = torch.where(self.observed[idx] > 0, prior + EMA_WEIGHT * (signed - prior), signed)
        self.observed.index_add_(0, idx, torch.ones_like(idx, dtype=torch.int32))
        self.mms_sum.index_add_(0, idx, mms)
        self.last_mms[idx] = mms
        self.last_prediction[idx] = prediction
        chosen = idx[record.chosen] if record.scored else idx
        self.selected.index_add_(0, chosen, torch.ones_like(chosen, dtype=torch.int32))
        self.selected_wrong.index_add_(0, chosen, record.selected(wrong).int())
        self._step = (idx, labels, prediction, mms)

    def snapshot(self, counters: Counters, scored: bool) -> SampleSnapshot:
        """The snapshot of this step; resets the counts since the previous one."""
        if self._step is None:
            raise RuntimeError("snapshot before any observed step")
        idx, labels, prediction, mms = self._step
        order = mms.argsort()[: self.k]
        lowest = {"index": idx[order].tolist(), "label": labels[order].tolist(),
                  "prediction": prediction[order].tolist(), "mms": _round(mms[order])}

        touched = self.selected.nonzero().flatten()
        selected = {"index": touched.tolist(), "label": self.labels[touched].tolist(),
                    "count": self.selected[touched].tolist(),
                    "misclassified": self.selected_wrong[touched].tolist(),
                    "mms": _round(self.last_mms[touched]),
                    "prediction": self.last_prediction[touched].tolist()}
        self.selected[touched] = 0
        self.selected_wrong[touched] = 0

        candidates = torch.where((self.observed > 0) & (self.score > 0), self.score,
                                 torch.full_like(self.score, -1.0))
        top = candidates.topk(min(SUSPECTS_KEPT, len(candidates)))
        keep = top.indices[top.values > 0]
        observed = self.observed[keep]
        suspects = {"index": keep.tolist(), "label": self.labels[keep].tolist(),
                    "prediction": self.last_prediction[keep].tolist(), "score": _round(self.score[keep]),
                    "mean_mms": _round(self.mms_sum[keep] / observed.clamp_min(1)),
                    "observed": observed.tolist()}
        flipped: list[int] = []
        if not self._flipped_sent:
            flipped, self._flipped_sent = self.flipped.tolist(), True
        return SampleSnapshot(counters=counters, scored="candidates" if scored else "batch",
                              lowest=lowest, selected=selected, suspects=suspects, flipped=flipped)

    # --- checkpoints: a resumed run continues the counts and scores where they were

    _STATE = ("selected", "selected_wrong", "observed", "mms_sum", "score", "last_mms", "last_prediction")

    def state_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name).cpu() for name in self._STATE}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in self._STATE:
            if name in state and state[name].shape == getattr(self, name).shape:
                getattr(self, name).copy_(state[name].to(self.device))

