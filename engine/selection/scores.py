"""Per-sample scores of a candidate batch: minimal margin (MMS), cross-entropy, softmax entropy.

Pure functions of logits (and the head's weight for MMS), plus `score_logits`, the one place that
runs a model forward for scoring (eval mode, no gradients, in chunks).

The minimal margin score follows Weinstein, Fine & Hel-Or, "Selective sampling for accelerating
training of deep neural networks" (arXiv:1911.06996): for logits z = W h + b and predicted class
i = argmax z, MMS = min over j != i of (z_i - z_j) / ||w_i - w_j||, the Euclidean distance from the
features h to the nearest decision boundary of the linear head (derivation: docs/method.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "NORM_EPS",
    "cross_entropy_scores",
    "entropy_scores",
    "minimal_margin_scores",
    "pairwise_row_distances",
    "score_logits",
]

# Relative guard for ||w_i - w_j||: a pair of weight rows closer than NORM_EPS x (largest row
# norm of W) counts as that far apart. Identical rows (zero distance) can never be separated by
# moving h, so the true margin to that class is infinite unless the logits tie (then it is 0);
# the guard turns "infinite" into "very large but finite" (gap / (1e-6 * max||w||)), which keeps
# such classes from ever being the minimum when any other class is a real competitor. Being
# relative to the weight scale, the guard keeps MMS invariant under scaling W and b by c > 0.
NORM_EPS = 1e-6
_F32_MAX = torch.finfo(torch.float32).max
_F32_TINY = torch.finfo(torch.float32).tiny


def pairwise_row_distances(weight: Tensor) -> Tensor:
    """K x K matrix of ||w_a - w_b||_2 (float32) via the Gram matrix, computed once per step.

    Rows are centred first: distances do not change, and the ||a||^2 + ||b||^2 - 2 a.b
    cancellation shrinks when the rows share a large common component. The squared norms are
    the Gram diagonal, so identical rows give exactly 0 (on CPU; a GPU GEMM may differ in the
    last bits). Known limit of the float32 Gram form: rows closer than about 3e-4 x their centred
    norm get a noisy distance, possibly 0 (then the NORM_EPS guard applies); trained heads are far
    from that.
    """
    w = weight.detach().float()
    w = w - w.mean(dim=0, keepdim=True)
    gram = w @ w.T  # (K, K)
    sq = gram.diagonal()
    d2 = (sq[:, None] + sq[None, :] - 2.0 * gram).clamp_min_(0.0)
    d2.fill_diagonal_(0.0)
    return d2.sqrt_()


def minimal_margin_scores(logits: Tensor, weight: Tensor, *, runner_up_only: bool = False,
                          bias: Tensor | None = None) -> Tensor:
    """Minimal margin score of each row of `logits` [B, K] given the head's `weight` [K, d].

    Exact: min over j != argmax of (z_i - z_j) / ||w_i - w_j||. With `runner_up_only` only the
    class of the second-largest logit is considered (it can be larger than the exact score).
    With `bias` [K] the norm is taken over the rows of [W | b], i.e. ||[w_i; b_i] - [w_j; b_j]||:
    the paper's reference code appends a constant 1 to the features and folds the bias into the
    weight, so its norm includes (b_i - b_j). That is no longer the Euclidean distance of h to the
    boundary, only the reference's score. Float32 on the logits' device, finite and >= 0 for every
    input (zero row distances are guarded by NORM_EPS, see above; tied logits give 0).
    """
    if logits.ndim != 2:
        raise ValueError(f"logits must be [B, K], got shape {tuple(logits.shape)}")
    num_classes = logits.shape[1]
    if weight.ndim != 2 or weight.shape[0] != num_classes:
        raise ValueError(
            f"weight must be [K, d] with K = {num_classes} (logits' classes), got {tuple(weight.shape)}"
        )
    if num_classes < 2:
        raise ValueError("MMS needs at least 2 classes")
    z = logits.detach().float()
    w = weight.detach().to(device=z.device, dtype=torch.float32)
    if bias is not None:
        if bias.shape != (num_classes,):
            raise ValueError(f"bias must be [K] with K = {num_classes}, got {tuple(bias.shape)}")
        w = torch.cat([w, bias.detach().to(device=z.device, dtype=torch.float32)[:, None]], dim=1)
    # A tensor, not a float: no device sync on GPU.
    eps = (NORM_EPS * w.norm(dim=1).max()).clamp_min(_F32_TINY)

    if runner_up_only:
        # Only B pairs are needed: take the row differences directly (O(Bd), exact, no K x K).
        top_vals, top_idx = z.topk(2, dim=1)  # (B, 2)
        gap = top_vals[:, 0] - top_vals[:, 1]
        scores = gap / (w[top_idx[:, 0]] - w[top_idx[:, 1]]).norm(dim=1).clamp_min(eps)
    else:
        denom = pairwise_row_distances(w).clamp_min(eps)  # (K, K)
        top_vals, pred = z.max(dim=1)  # (B,)
        gap = top_vals[:, None] - z  # (B, K), >= 0
        ratio = gap / denom.index_select(0, pred)  # (B, K): row i of the distances for each sample
        ratio.scatter_(1, pred[:, None], float("inf"))  # mask j = i
        scores = ratio.min(dim=1).values
    # NaN logits (a diverged model) score 0 = "most uncertain"; overflow saturates.
    return torch.nan_to_num(scores, nan=0.0, posinf=_F32_MAX, neginf=0.0).clamp_(0.0, _F32_MAX)


def cross_entropy_scores(logits: Tensor, labels: Tensor) -> Tensor:
    """Per-sample cross-entropy with the true label, float32 [B]."""
    return F.cross_entropy(logits.detach().float(), labels.to(logits.device).long(), reduction="none")


def entropy_scores(logits: Tensor) -> Tensor:
    """Per-sample entropy of the softmax (nats), float32 [B]; -inf logits contribute 0."""
    logp = F.log_softmax(logits.detach().float(), dim=1)
    p = logp.exp()
    return -torch.where(p > 0, p * logp, torch.zeros_like(p)).sum(dim=1)


def score_logits(model: nn.Module, inputs: Tensor, *, chunk: int = 128) -> Tensor:
    """Eval-mode logits [B, K] (float32) of `inputs`, without gradients, in chunks of `chunk`.

    `chunk` = 0 scores everything in one batch (on CPU chunks of ~128 were 1.5-2.5x faster per
    sample than one 640 batch; measure per device). Each module's train/eval flag is restored
    afterwards, so a model with some modules deliberately in eval mode stays that way. Slices
    along the batch dimension keep the inputs' memory format (channels-last stays so).
    """
    if chunk < 0:
        raise ValueError(f"chunk must be >= 0, got {chunk}")
    modes = [(m, m.training) for m in model.modules()]
    step = inputs.shape[0] if chunk == 0 else chunk
    outs: list[Tensor] = []
    try:
        model.eval()
        with torch.inference_mode():
            for start in range(0, inputs.shape[0], max(step, 1)):
                outs.append(model(inputs[start:start + step]).float())
    finally:
        for module, mode in modes:
            module.training = mode
    if not outs:
        raise ValueError("score_logits got an empty batch")
    # Concatenating outside inference mode yields an ordinary tensor the caller may reuse freely.
    return torch.cat(outs, dim=0)
