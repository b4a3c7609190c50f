"""Why hard-negative mining collapses under label noise: is the network dead, or is the data it picks wrong?

    .venv/bin/python scripts/noise_collapse.py [--noise 0.2] [--steps 1200] [--switch-at 300] \
        [--out docs/benchmarks/noise/collapse.json]

On MNIST with a share of the training labels flipped (the noise suite's setting: small-cnn, b = 64,
B = 640, LR 0.1 normal regime, one torch thread, seed 0), four runs of `--steps` steps:

- ``top-loss``: the largest losses only, from step 0 (what the first noise suite ran as hard-negative);
- ``top-loss → uniform``: the same run, its checkpoint at step `--switch-at` continued by uniform
  sampling (same weights, optimizer, data order and LR schedule; only the selector changes);
- ``hard-negative``: the reference procedure (a ramp from uniform, class-balanced), the suites' arm;
- ``uniform``.

At every validation each run reports its clean validation accuracy and loss and the network's health
(`model/dead_features`: feature units off for every probe sample; `model/head_norm`), and over the
whole run the harm of what it trained on (monitoring.NoiseHarm: share of trained samples with a
flipped label, share of the training signal from them). A dead network stays at chance after the
switch; a live one trained on the wrong samples recovers under uniform. Writes the JSON and prints
the table docs/benchmarks.md shows (`render`; tests/engine/test_noise_collapse_doc.py ties them).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from marginscope.engine.bench.machine import machine_info  # noqa: E402
from marginscope.engine.config import TrainConfig  # noqa: E402
from marginscope.engine.events import Evaluation, Event, Scalars  # noqa: E402
from marginscope.engine.loop import TrainResult, train  # noqa: E402
from marginscope.engine.selection import make_selector  # noqa: E402


class Curve:
    """The validations of a run: step, accuracy, loss, dead features, head norm."""

    def __init__(self) -> None:
        self.points: dict[int, dict[str, float]] = {}

    def __call__(self, event: Event) -> None:
        if isinstance(event, Evaluation) and event.split == "val":
            self.points.setdefault(event.counters.step, {}).update(accuracy=event.accuracy, loss=event.loss)
        elif isinstance(event, Scalars) and "model/dead_features" in event.values:
            self.points.setdefault(event.counters.step, {}).update(
                dead_features=event.values["model/dead_features"], head_norm=event.values["model/head_norm"])

    def rows(self) -> list[dict[str, float]]:
        return [{"step": step, **{k: round(v, 4) for k, v in p.items()}} for step, p in sorted(self.points.items())]


def record(name: str, result: TrainResult, curve: Curve) -> dict[str, Any]:
    return {"run": name, "test_accuracy": result.test_accuracy, "selected_flipped_share":
            result.selected_flipped / max(result.samples_backpropagated, 1),
            "flipped_gradient_share": result.flipped_gradient_share,
            "flipped_predicted_true": result.flipped_predicted_true, "validations": curve.rows()}


def switched_to_uniform(checkpoint: Path, seed: int) -> Path:
    """A copy of `checkpoint` whose selector state is a fresh uniform selector's: a resume from it
    continues the run (weights, optimizer, data order, schedule) with uniform sampling."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    state["selector"] = make_selector("uniform", seed=seed).state_dict()
    out = checkpoint.with_name("switched.pt")
    torch.save(state, out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--noise", type=float, default=0.2)
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--switch-at", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "noise" / "collapse.json")
    args = parser.parse_args()
    base = dict(dataset="mnist", model="small-cnn", batch_size=64, candidates=640, steps=args.steps, lr=0.1,
                regime="normal", label_noise=args.noise, seed=args.seed, eval_every=100, log_every=50,
                hist_every=0, samples_every=0, threads=1, selector_options={"seed": args.seed},
                checkpoint_every=args.switch_at)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        top, first = Path(tmp) / "top-loss", Curve()
        calls = {"n": 0}

        def stop_at_switch() -> bool:  # polled once before each step
            calls["n"] += 1
            return calls["n"] > args.switch_at

        part = train(TrainConfig(selector="top-loss", out_dir=str(top), **base), [first],
                     should_stop=stop_at_switch)
        assert part.checkpoint is not None and part.steps == args.switch_at
        saved = Path(tmp) / "at-switch.pt"
        shutil.copy(part.checkpoint, saved)
        for name, selector, resume in (("top-loss", "top-loss", saved),
                                       ("top-loss → uniform", "uniform", switched_to_uniform(saved, args.seed))):
            curve = Curve()
            curve.points = {k: dict(v) for k, v in first.points.items()}  # the shared first part
            result = train(TrainConfig(selector=selector, out_dir=str(Path(tmp) / name.replace(" ", "")),
                                       resume_from=str(resume), **base), [curve])
            runs.append(record(name, result, curve))
        for name in ("hard-negative", "uniform"):
            curve = Curve()
            runs.append(record(name, train(TrainConfig(selector=name, **base), [curve]), curve))
    results = {"command": f"scripts/noise_collapse.py --noise {args.noise} --steps {args.steps} "
                          f"--switch-at {args.switch_at} --seed {args.seed}",
               "machine": machine_info(), "settings": {k: v for k, v in base.items() if k != "selector_options"},
               "switch_at": args.switch_at, "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(render(results))
    print(f"wrote {args.out}")


def _at(run: dict[str, Any], step: int) -> dict[str, float]:
    return next((v for v in run["validations"] if v["step"] == step), {})


def render(results: dict[str, Any]) -> str:
    """The table of docs/benchmarks.md ("Why hard-negative mining collapses"), from collapse.json."""
    switch, last = results["switch_at"], results["settings"]["steps"]
    lines = [f"| run | val accuracy at step {switch} | dead features at {switch} | head norm at {switch} | "
             f"val accuracy at {last} | val loss at {last} | dead features at {last} | test accuracy | "
             "trained samples with a flipped label | training signal from flipped labels |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for run in results["runs"]:
        a, b = _at(run, switch), _at(run, last)
        lines.append(f"| {run['run']} | {a['accuracy']:.1%} | {a['dead_features']:.0%} | {a['head_norm']:.2f} | "
                     f"{b['accuracy']:.1%} | {b['loss']:.3f} | {b['dead_features']:.0%} | {run['test_accuracy']:.1%} | "
                     f"{run['selected_flipped_share']:.1%} | {run['flipped_gradient_share']:.1%} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
