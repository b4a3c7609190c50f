"""Learning-rate regimes as data: step drops at given epochs, scaled to the run's length.

A regime is either a preset name or an explicit list of (epoch, factor) drops. Steps are counted
in b-sized training steps and one "epoch" is N/b steps, as in the paper (Weinstein et al. 2019).
Presets are written for their native run length and their milestones scale by
run_epochs / native_epochs, so `aggressive` on a 4-epoch run drops at 3.2, 3.5, 3.8.
An explicit list gives absolute epochs of this run (not scaled). Factors multiply cumulatively.
The functions here are pure: the loop passes the step (timm's scheduler style).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["PRESETS", "Preset", "drop_steps", "list_regimes", "lr_at", "regime_drops", "validate_regime"]

Drops = list[tuple[float, float]]
Regime = str | Drops


@dataclass(frozen=True)
class Preset:
    native_epochs: float
    drops: tuple[tuple[float, float], ...]  # (epoch of the native run, factor)
    help: str


PRESETS: dict[str, Preset] = {
    "normal": Preset(200, ((81, 0.1), (122, 0.1), (164, 0.1)),
                     "x0.1 at epochs 81, 122, 164 of 200 (ResNet-44 on CIFAR-10)"),
    "aggressive": Preset(40, ((32, 0.1), (35, 0.1), (38, 0.1)),
                         "x0.1 at epochs 32, 35, 38 of 40 (the paper's fast regime with MMS)"),
    "normal-wrn": Preset(200, ((60, 0.2), (120, 0.2), (160, 0.2)),
                         "x0.2 at epochs 60, 120, 160 of 200 (WRN-28-10 on CIFAR-100)"),
    "aggressive-wrn": Preset(60, ((50, 0.2), (53, 0.2), (56, 0.2)),
                             "x0.2 at epochs 50, 53, 56 of 60 (WRN-28-10, fast)"),
    "constant": Preset(1, (), "no drops"),
}


def list_regimes() -> list[str]:
    """Preset names."""
    return list(PRESETS)


def validate_regime(value: Any) -> str | Drops:
    """Check a regime: a preset name, or a sorted list of (epoch >= 0, factor > 0) pairs.

    A string "epoch:factor,epoch:factor" (handy on a command line) is parsed into the list form.
    Raises ValueError with a message saying what to change.
    """
    if isinstance(value, str):
        name = value.strip()
        if name in PRESETS:
            return name
        if ":" in name:
            try:
                value = [tuple(float(x) for x in part.split(":")) for part in name.split(",") if part.strip()]
            except ValueError:
                raise ValueError(
                    f"cannot read regime {value!r}; write drops as 'epoch:factor,epoch:factor'"
                ) from None
        else:
            raise ValueError(
                f"unknown regime {value!r}; choose one of {', '.join(PRESETS)} or give a list of "
                "[epoch, factor] drops"
            )
    if not isinstance(value, (list, tuple)):
        # ValueError, not TypeError: pydantic turns only ValueError into a field error.
        raise ValueError(f"a regime is a preset name or a list of [epoch, factor] drops, got {value!r}")  # noqa: TRY004
    drops: Drops = []
    for item in value:
        if not isinstance(item, (list, tuple)) or len(item) != 2:
            raise ValueError(f"each regime drop is a pair [epoch, factor], got {item!r}")
        try:
            epoch, factor = float(item[0]), float(item[1])
        except (TypeError, ValueError):
            raise ValueError(f"each regime drop is a pair of numbers [epoch, factor], got {item!r}") from None
        if not (math.isfinite(epoch) and math.isfinite(factor)):
            raise ValueError(f"regime drop {item!r} must be finite numbers")
        if epoch < 0:
            raise ValueError(f"regime drop epoch must be >= 0, got {epoch:g}")
        if factor <= 0:
            raise ValueError(f"regime drop factor must be > 0, got {factor:g} at epoch {epoch:g}")
        if drops and epoch < drops[-1][0]:
            raise ValueError(
                f"regime drops must be sorted by epoch: {epoch:g} comes after {drops[-1][0]:g}"
            )
        drops.append((epoch, factor))
    return drops


def regime_drops(regime: Regime, run_epochs: float) -> Drops:
    """The (epoch of this run, factor) drops: presets scaled to `run_epochs`, lists as given."""
    regime = validate_regime(regime)
    if isinstance(regime, str):
        preset = PRESETS[regime]
        scale = run_epochs / preset.native_epochs
        return [(epoch * scale, factor) for epoch, factor in preset.drops]
    return list(regime)


def _step_drops(regime: Regime, total_steps: int, steps_per_epoch: float) -> list[tuple[int, float]]:
    if steps_per_epoch <= 0:
        raise ValueError(f"steps_per_epoch must be > 0, got {steps_per_epoch}")
    run_epochs = total_steps / steps_per_epoch
    # A drop at epoch e takes effect from step round(e * steps_per_epoch) on.
    return [(round(epoch * steps_per_epoch), factor) for epoch, factor in regime_drops(regime, run_epochs)]


def drop_steps(regime: Regime, total_steps: int, steps_per_epoch: float) -> list[int]:
    """Steps (in [0, total_steps)) at which the LR changes, sorted and unique, for plot markers."""
    return sorted({s for s, _ in _step_drops(regime, total_steps, steps_per_epoch) if 0 <= s < total_steps})


def lr_at(
    step: float, *, base_lr: float, regime: Regime, total_steps: int, steps_per_epoch: float,
    warmup_steps: int = 0,
) -> float:
    """Learning rate for optimizer step `step` (0-based; a fraction where a run's clock is not its
    step count: InfoBatch at matched epochs, engine/loop.py's `_Run.clock`).

    Linear warm-up base_lr * (step + 1) / warmup_steps for the first `warmup_steps` steps (so the
    first step is small but not 0), times the product of the factors of every drop reached.
    """
    factor = 1.0
    for drop_step, f in _step_drops(regime, total_steps, steps_per_epoch):
        if step >= drop_step:
            factor *= f
    lr = base_lr * factor
    if warmup_steps > 0 and step < warmup_steps:
        lr *= (step + 1) / warmup_steps
    return lr
