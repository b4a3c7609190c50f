"""What a benchmark runs: its arms (a selector with options, under a regime) and its settings.

Kept apart from the runner so the command line can parse and validate a suite (a malformed arm, an
unknown selector) before a single step is trained, and so the arithmetic of run lengths (a short
``@aggressive`` arm) lives in one place.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from engine.config import TrainConfig
from engine.regimes import PRESETS

DEFAULT_ARMS = ("uniform", "mms", "mms-runner-up", "hard-negative", "entropy", "selective-backprop",
                "mms@aggressive", "mms-memory", "mms-memory[refresh_epochs=2]")
# A fast regime and the normal one it shortens: (normal partner, run-length ratio of the paper).
SHORT_REGIMES = {"aggressive": ("normal", PRESETS["aggressive"].native_epochs / PRESETS["normal"].native_epochs),
                 "aggressive-wrn": ("normal-wrn", PRESETS["aggressive-wrn"].native_epochs
                                    / PRESETS["normal-wrn"].native_epochs)}


@dataclass(frozen=True)
class Arm:
    """One line of the table: a selector with options, run under a regime (the suite's own unless
    given). Written ``selector[key=value;key=value]@regime``, e.g. ``mms-memory[refresh_epochs=2]``."""

    selector: str
    regime: str | None = None
    options: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def parse(cls, spec: str) -> Arm:
        head, _, regime = spec.strip().partition("@")
        selector, _, rest = head.partition("[")
        options = []
        if rest:
            if not rest.endswith("]"):
                raise ValueError(f"arm {spec!r}: options go in brackets, e.g. mms-memory[refresh_epochs=2]")
            for item in filter(None, rest[:-1].split(";")):
                key, eq, value = item.partition("=")
                if not eq:
                    raise ValueError(f"arm {spec!r}: option {item!r} needs key=value")
                try:
                    parsed = json.loads(value)
                except json.JSONDecodeError:
                    parsed = value  # a bare word, e.g. unseen=first
                options.append((key.strip(), parsed))
        return cls(selector.strip(), regime or None, tuple(options))

    @property
    def label(self) -> str:
        opts = f"[{';'.join(f'{k}={v}' for k, v in self.options)}]" if self.options else ""
        return f"{self.selector}{opts}@{self.regime}" if self.regime else f"{self.selector}{opts}"


@dataclass
class BenchSettings:
    dataset: str = "mnist"
    model: str = "small-cnn"
    batch_size: int = 64  # b
    candidates: int = 640  # B, for the selectors that draw a pool
    steps: int = 1200  # steps of an arm under the suite's regime (1.54 epochs of MNIST at b = 64;
    # about 30 minutes for the default suite on 2 idle CPU cores)
    regime: str = "normal"
    seeds: tuple[int, ...] = (0, 1, 2)
    arms: tuple[str, ...] = DEFAULT_ARMS
    targets: tuple[float, ...] = (0.985, 0.99)  # fixed targets beside uniform's best
    eval_every: int = 100
    eval_samples: int | None = None  # None = the whole validation split
    score_chunk: int | None = None  # None = measure the best chunk on this device first
    hist_every: int = 0  # monitoring off: the micro-benchmark measures what it costs
    lr: float = 0.1
    data_dir: str = "data"
    device: str = "auto"
    threads: int | None = None  # torch CPU threads (None = torch's default, all cores)
    quick: bool = False

    @classmethod
    def quick_settings(cls, **overrides: Any) -> BenchSettings:
        """About 2 minutes on 2 CPU cores: short runs, a smaller pool, 2 seeds, a 2k validation."""
        base = dict(steps=160, candidates=256, seeds=(0, 1), eval_every=40, eval_samples=2000,
                    targets=(0.9, 0.95), quick=True)
        return cls(**{**base, **overrides})

    def arm_list(self) -> list[Arm]:
        arms = [Arm.parse(s) for s in self.arms]
        if not any(a.selector == "uniform" and a.regime is None for a in arms):
            arms.insert(0, Arm("uniform"))  # every ratio is to uniform
        return arms

    def arm_steps(self, arm: Arm) -> int:
        if arm.regime in SHORT_REGIMES and SHORT_REGIMES[arm.regime][0] == self.regime:
            return max(1, round(self.steps * SHORT_REGIMES[arm.regime][1]))
        return self.steps

    def config(self, arm: Arm, seed: int, chunk: int) -> TrainConfig:
        return TrainConfig(
            dataset=self.dataset, model=self.model, data_dir=self.data_dir, selector=arm.selector,
            selector_options={"seed": seed, **dict(arm.options)}, candidates=self.candidates, batch_size=self.batch_size,
            score_chunk=chunk, steps=self.arm_steps(arm), regime=arm.regime or self.regime, lr=self.lr,
            eval_every=self.eval_every, eval_samples=self.eval_samples, hist_every=self.hist_every,
            log_every=50, seed=seed, device=self.device, threads=self.threads,
        )


def steps_for_epochs(settings: BenchSettings, epochs: float) -> int:
    """Steps of `epochs` epochs (N/b steps each) of the settings' dataset."""
    from engine.data import load_dataset

    n = len(load_dataset(settings.dataset, settings.data_dir, seed=0).train)
    return max(1, round(epochs * math.ceil(n / settings.batch_size)))
