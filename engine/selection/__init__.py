"""Sample selection: per-sample scores (MMS, loss, entropy) and the selectors built on them.

Use a selector in your own loop:

    selector = make_selector("mms")
    for idx, x, y in loader:                      # a candidate batch of B samples
        sel = selector.select(model, x, y, idx, batch_size=64)
        loss = F.cross_entropy(model(x[sel.index]), y[sel.index])
        opt.zero_grad(); loss.backward(); opt.step()
"""

from marginscope.engine.selection.scores import (
    cross_entropy_scores,
    entropy_scores,
    minimal_margin_scores,
    pairwise_row_distances,
    score_logits,
)
from marginscope.engine.selection.selectors import (
    Selection,
    Selector,
    head_bias,
    head_layer,
    head_weight,
    list_selectors,
    make_selector,
    register_selector,
    selector_help,
)
# registered after uniform and the mms variants, in this order: the baselines, the cheap mode, InfoBatch
from marginscope.engine.selection import baselines as _baselines  # noqa: F401
from marginscope.engine.selection import memory as _memory  # noqa: F401
from marginscope.engine.selection import infobatch as _infobatch  # noqa: F401

__all__ = [
    "Selection",
    "Selector",
    "cross_entropy_scores",
    "entropy_scores",
    "head_bias",
    "head_layer",
    "head_weight",
    "list_selectors",
    "make_selector",
    "minimal_margin_scores",
    "pairwise_row_distances",
    "register_selector",
    "score_logits",
    "selector_help",
]
