"""What a benchmark runs: its arms (a selector with options, under a regime, with data settings)
and its settings, and the named suites the documentation's tables come from.

Kept apart from the runner so the command line can parse and validate a suite (a malformed arm, an
unknown selector) before a single step is trained, and so the arithmetic of run lengths (a short
``@aggressive`` arm) and of arm order (rotated per seed) lives in one place.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from typing import Any

from marginscope.engine.config import TrainConfig
from marginscope.engine.regimes import PRESETS

# Named arms: a readable label for an arm written in full.
ALIASES = {
    "mms-bn-batch": "mms{bn_stats=batch}",  # the paper's procedure: BatchNorm statistics of the trained batch
    "mms-memory-priority": "mms-memory[priority=0.5]",  # refresh half of each block by lowest margin
    "mms-late": "mms[late_candidates=192;late_after=0.5]",  # fewer fresh candidates in the second half
}
DEFAULT_ARMS = ("uniform", "uniform@aggressive", "mms", "mms-bn-batch", "mms@aggressive", "mms-runner-up",
                "hard-negative", "selective-backprop", "infobatch", "mms-memory", "mms-memory-priority")
# A fast regime and the normal one it shortens: (normal partner, run-length ratio of the paper).
SHORT_REGIMES = {"aggressive": ("normal", PRESETS["aggressive"].native_epochs / PRESETS["normal"].native_epochs),
                 "aggressive-wrn": ("normal-wrn", PRESETS["aggressive-wrn"].native_epochs
                                    / PRESETS["normal-wrn"].native_epochs)}
# Run settings an arm may change with {key=value}: data and BatchNorm, never the budget.
ARM_CONFIG_KEYS = ("bn_stats", "label_noise", "clean_only", "candidates")


def _options(spec: str, text: str) -> tuple[tuple[str, Any], ...]:
    options = []
    for item in filter(None, text.split(";")):
        key, eq, value = item.partition("=")
        if not eq:
            raise ValueError(f"arm {spec!r}: option {item!r} needs key=value")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value  # a bare word, e.g. unseen=first
        options.append((key.strip(), parsed))
    return tuple(options)


def _word(value: Any) -> str:
    """A setting's value as an arm spec writes it (true, not Python's True: the spec parses back)."""
    return json.dumps(value) if isinstance(value, bool) else str(value)


@dataclass(frozen=True)
class Arm:
    """One line of the table: a selector with options, run under a regime (the suite's own unless
    given), with run settings of its own. Written ``selector[key=value;...]{setting=value;...}@regime``,
    e.g. ``mms-memory[refresh_epochs=2]``, ``mms{bn_stats=batch}``, ``uniform{label_noise=0.2}``; a
    name of `ALIASES` stands for its spelled-out arm and keeps its own label."""

    selector: str
    regime: str | None = None
    options: tuple[tuple[str, Any], ...] = ()
    config: tuple[tuple[str, Any], ...] = ()  # TrainConfig fields of this arm (ARM_CONFIG_KEYS)
    alias: str | None = None
    length: float | None = None  # a share of the suite's run length (a frontier arm, ``uniform@25%``)

    @classmethod
    def parse(cls, spec: str) -> Arm:
        spec = spec.strip()
        head, _, regime = spec.partition("@")
        if regime.endswith("%"):  # a shortened run, uniform@25%: its schedule scaled to its own length
            try:
                share = float(regime[:-1]) / 100
            except ValueError:
                raise ValueError(f"arm {spec!r}: a run length is a percentage, e.g. uniform@25%") from None
            if not 0 < share <= 1:
                raise ValueError(f"arm {spec!r}: a run length is a share of the run, above 0% and at most 100%")
            return replace(cls.parse(head), length=share)
        if head in ALIASES:
            return replace(cls.parse(ALIASES[head] + (f"@{regime}" if regime else "")), alias=spec)
        head, _, cfg = head.partition("{")
        config: tuple[tuple[str, Any], ...] = ()
        if cfg:
            if not cfg.endswith("}"):
                raise ValueError(f"arm {spec!r}: run settings go in braces, e.g. mms{{bn_stats=batch}}")
            config = _options(spec, cfg[:-1])
            unknown = [k for k, _ in config if k not in ARM_CONFIG_KEYS]
            if unknown:
                raise ValueError(f"arm {spec!r}: {', '.join(unknown)} cannot differ between arms; "
                                 f"an arm may set {', '.join(ARM_CONFIG_KEYS)}")
        selector, _, rest = head.partition("[")
        options: tuple[tuple[str, Any], ...] = ()
        if rest:
            if not rest.endswith("]"):
                raise ValueError(f"arm {spec!r}: options go in brackets, e.g. mms-memory[refresh_epochs=2]")
            options = _options(spec, rest[:-1])
        return cls(selector.strip(), regime or None, options, config)

    @property
    def data_label(self) -> str:
        """The run settings part, ``{label_noise=0.2}`` (empty without)."""
        return f"{{{';'.join(f'{k}={_word(v)}' for k, v in self.config)}}}" if self.config else ""

    @property
    def label(self) -> str:
        if self.length is not None:
            return f"{replace(self, length=None).label}@{self.length:.0%}"
        if self.alias:
            return self.alias
        opts = f"[{';'.join(f'{k}={v}' for k, v in self.options)}]" if self.options else ""
        base = f"{self.selector}{opts}{self.data_label}"
        return f"{base}@{self.regime}" if self.regime else base

    @property
    def reference(self) -> str:
        """The arm this one is compared with: uniform under the same data (label noise), normal regime."""
        data = {k: v for k, v in self.config if k == "label_noise"}
        return Arm("uniform", config=tuple(data.items())).label


@dataclass
class BenchSettings:
    dataset: str = "mnist"
    model: str = "small-cnn"
    batch_size: int = 64  # b
    candidates: int = 640  # B, for the selectors that draw a pool
    steps: int = 1200  # steps of an arm under the suite's regime (1.54 epochs of MNIST's 50k at b = 64)
    regime: str = "normal"
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    arms: tuple[str, ...] = DEFAULT_ARMS
    targets: tuple[float, ...] = (0.98, 0.985, 0.988, 0.99, 0.992)  # beside uniform's plateau
    budgets: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)  # shares of uniform's time (wall and CPU)
    plateau_share: float = 0.1  # uniform's plateau: mean of its last 10% of evaluations (at least 3)
    plateau_tolerance: float = 0.001  # the plateau target is the plateau minus this (0.1 points)
    eval_every: int = 25
    eval_samples: int | None = None  # None = the whole validation split
    score_chunk: int | None = None  # None = measure the best chunk on this device first
    hist_every: int = 0  # monitoring off: the micro-benchmark measures what it costs
    lr: float = 0.1
    label_noise: float = 0.0  # every arm's (an arm may set its own with {label_noise=...})
    rotate: bool = True  # arm order rotated per seed (a Latin square over seeds): drift hits no position
    data_dir: str = "data"
    device: str = "auto"
    threads: int | None = 1  # torch CPU threads: 1 makes CPU time a second clock (None = all cores)
    quick: bool = False
    suite: str | None = None  # the named suite these settings came from
    # --- protocol v2 (docs/benchmarks.md, "Protocol v2"), fixed before a suite runs
    protocol: int = 2
    frontier: tuple[float, ...] = ()  # uniform also run at these shares of the run: the frontier
    primary: str | None = None  # the primary endpoint (stats.ENDPOINTS); None: by the frontier
    sustain: int = 3  # a target is reached at the first of this many validations in a row above it
    discard_cpu_share: float = 0.9  # threads = 1: a run with CPU / wall below this is run again
    discard_load: float | None = None  # ... or ending with a 1-min load average above this (None: cores + 1)
    max_reruns: int = 2  # runs again at most this often, then kept and flagged
    min_judged_wall: float = 5.0  # shorter runs are not judged: their CPU / wall is mostly start-up

    def __post_init__(self) -> None:
        from marginscope.engine.bench.stats import ENDPOINTS

        if self.primary is None:
            self.primary = "frontier-gap-wall" if self.frontier else "test-accuracy"
        if self.primary not in ENDPOINTS:
            raise ValueError(f"unknown primary endpoint {self.primary!r}; choose one of {', '.join(ENDPOINTS)}")
        if self.primary.startswith("frontier-gap") and not self.frontier:
            raise ValueError("a frontier-gap endpoint needs a frontier (shares of the run for uniform)")
        if any(not 0 < f < 1 for f in self.frontier):
            raise ValueError(f"frontier shares lie strictly between 0 and 1, got {list(self.frontier)}")

    @classmethod
    def quick_settings(cls, **overrides: Any) -> BenchSettings:
        """About 2 minutes on 2 CPU cores: short runs, a smaller pool, 2 seeds, a 2k validation."""
        base = dict(steps=160, candidates=256, seeds=(0, 1), eval_every=20, eval_samples=2000,
                    targets=(0.9, 0.95), arms=("uniform", "mms", "selective-backprop", "infobatch",
                                               "mms-memory"), quick=True)
        return cls(**{**base, **overrides})

    def arm_list(self) -> list[Arm]:
        """The arms as given, each reference (uniform under the same data) first if missing, and
        after each reference its frontier arms (``uniform@25%`` ...), when the settings have one."""
        arms = [Arm.parse(s) for s in self.arms]
        labels = {a.label for a in arms}
        for arm in list(arms):  # every ratio is to uniform under the same data
            if arm.reference not in labels:
                arms.insert(0, Arm.parse(arm.reference))
                labels.add(arm.reference)
        for ref in [a for a in arms if a.label == a.reference and a.length is None]:
            at = arms.index(ref) + 1
            for share in sorted(self.frontier):
                short = replace(ref, length=share)
                if short.label not in labels:
                    arms.insert(at, short)
                    labels.add(short.label)
                    at += 1
        return arms

    def order(self, arms: list[Arm], seed_position: int) -> list[Arm]:
        """The arms of the seed at `seed_position`, rotated by it (arm k runs k-th, then (k-1)-th ...)."""
        if not self.rotate or not arms:
            return list(arms)
        k = seed_position % len(arms)
        return arms[k:] + arms[:k]

    def arm_steps(self, arm: Arm) -> int:
        if arm.length is not None:
            return max(1, round(self.steps * arm.length))
        if arm.regime in SHORT_REGIMES and SHORT_REGIMES[arm.regime][0] == self.regime:
            return max(1, round(self.steps * SHORT_REGIMES[arm.regime][1]))
        return self.steps

    def config(self, arm: Arm, seed: int, chunk: int) -> TrainConfig:
        fields = dict(
            dataset=self.dataset, model=self.model, data_dir=self.data_dir, selector=arm.selector,
            selector_options={"seed": seed, **dict(arm.options)}, candidates=self.candidates,
            batch_size=self.batch_size, score_chunk=chunk, steps=self.arm_steps(arm),
            regime=arm.regime or self.regime, lr=self.lr, eval_every=self.eval_every,
            eval_samples=self.eval_samples, hist_every=self.hist_every, log_every=50, seed=seed,
            device=self.device, threads=self.threads,
            samples_every=0,  # the sample tracker would run inside the timed loop: off in benchmarks
        )
        if self.label_noise:
            fields["label_noise"] = self.label_noise
        fields.update(dict(arm.config))
        return TrainConfig(**fields)


def steps_for_epochs(settings: BenchSettings, epochs: float) -> int:
    """Steps of `epochs` epochs (N/b steps each) of the settings' dataset."""
    from marginscope.engine.data import load_dataset

    n = len(load_dataset(settings.dataset, settings.data_dir, seed=0).train)
    return max(1, round(epochs * math.ceil(n / settings.batch_size)))


# --- the named suites (docs/benchmarks.md's tables come from their results) ----------------------

SUITES = ("short", "long", "noise", "noise-long")


def suite_settings(name: str, **overrides: Any) -> BenchSettings:
    """The settings of a named suite, with command-line overrides (seeds, out, threads ...).

    - ``short``: 1,200 steps (1.54 epochs) at b = 64, B = 640, every arm of `DEFAULT_ARMS`,
      5 seeds, validation every 25 steps on the whole validation split (10k).
    - ``long``: 10 epochs (7,813 steps) at b = 64 with a smaller pool (B = 256: the fresh selectors'
      cost is 1 + B/3b = 2.3x a uniform step instead of 4.3x), validation every 78 steps (1% of
      the run), 5 seeds; uniform, mms, selective-backprop, InfoBatch and the score memory.
    - ``noise``: the short setting under 20% and 40% symmetric label noise (clean validation and
      test), uniform, mms, hard-negative, InfoBatch and the cheap mode, 5 seeds, and an oracle:
      uniform over the intact samples only (``clean_only``), the accuracy no label-agnostic
      selector can beat by avoiding flipped labels.
    - ``noise-long``: the same arms for 10 epochs, in the long suite's setting (B = 256, validation
      every 78 steps).

    Every suite runs protocol v2 with one torch thread. Short and long add uniform's frontier
    (uniform at 25, 50 and 75% of the run, beside uniform's whole run) and name the frontier gap in
    wall-clock their primary endpoint; noise names the final clean test accuracy against uniform
    (under the same noise) its primary endpoint.
    """
    v2: dict[str, Any] = dict(protocol=2, threads=1, frontier=(0.25, 0.5, 0.75), primary="frontier-gap-wall")
    if name == "short":
        base: dict[str, Any] = v2
    elif name == "long":
        base = dict(v2, steps=7813, candidates=256, seeds=(0, 1, 2, 3, 4), eval_every=78,
                    arms=("uniform", "mms", "selective-backprop", "infobatch", "mms-memory"))
    elif name in ("noise", "noise-long"):
        arms = []
        for share in (0.2, 0.4):
            arms += [f"uniform{{label_noise={share}}}", f"mms{{label_noise={share}}}",
                     f"hard-negative{{label_noise={share}}}", f"infobatch{{label_noise={share}}}",
                     f"mms-memory{{label_noise={share}}}", f"uniform{{label_noise={share};clean_only=true}}"]
        base = dict(protocol=2, threads=1, frontier=(), primary="test-accuracy", seeds=(0, 1, 2, 3, 4),
                    arms=tuple(arms), eval_every=50)
        if name == "noise-long":
            base.update(steps=7813, candidates=256, eval_every=78)
    else:
        raise ValueError(f"unknown suite {name!r}; choose {', '.join(SUITES)}")
    return BenchSettings(**{**base, "suite": name, **overrides})
