"""How well the suspect list finds flipped labels: precision of its top 100 and top 500.

    .venv/bin/python scripts/suspects_eval.py [--epochs 1] [--noise 0.1] [--seed 0] \
        [--out docs/benchmarks/samples/suspects.json]

Trains MNIST with a share of its training labels flipped (label_noise, symmetric), keeps the
run's events, and ranks the training samples four ways:
- "suspects": the run's own suspect list (the last SampleSnapshot's — exactly what
  GET /api/runs/{id}/suspects serves), built during training from every scored candidate;
- "loss": cross-entropy against the (noisy) label under the final model, highest first — the usual
  way to look for label errors, here with a full extra pass over the training set;
- "signed_margin_final": the suspect rule's signed margin from the final model alone;
- "lowest_mms_final": the smallest minimal margin scores under the final model (what an MMS selector
  prefers): low margin marks ambiguous samples, not mislabelled ones.
Precision@n = share of the top n that are flipped samples (chance = the noise share). Writes a
JSON (the numbers docs/samples.md quotes) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from marginscope.engine.bench.machine import machine_info  # noqa: E402
from marginscope.engine.callbacks import Recorder  # noqa: E402
from marginscope.engine.config import TrainConfig  # noqa: E402
from marginscope.engine.data import flip_labels, load_dataset  # noqa: E402
from marginscope.engine.events import SampleSnapshot  # noqa: E402
from marginscope.engine.models import create_model  # noqa: E402
from marginscope.engine.selection import head_weight, minimal_margin_scores  # noqa: E402
from marginscope.engine.loop import train  # noqa: E402

TOPS = (100, 500)


def precision(ranked: list[int], flipped: set[int], n: int) -> float:
    top = ranked[:n]
    return sum(i in flipped for i in top) / max(len(top), 1)


@torch.inference_mode()
def final_model_scores(checkpoint: Path, config: TrainConfig) -> dict[str, torch.Tensor]:
    """Per-sample loss, MMS and signed margin of every training sample under the final model."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    data = load_dataset(config.dataset, config.data_dir, seed=0, val_fraction=config.val_fraction,
                        train_subset=config.train_subset)
    labels, _ = flip_labels(data.train.labels, config.label_noise, data.num_classes, seed=config.seed)
    model = create_model(state["model_name"], num_classes=data.num_classes, input_shape=data.input_shape)
    model.load_state_dict(state["model"])
    model.eval()
    losses, margins, wrong = [], [], []
    for start in range(0, len(labels), 1000):
        idx = torch.arange(start, min(len(labels), start + 1000))
        x, _ = data.batch(data.train, idx, augment=False)
        logits = model(x).float()
        y = labels[idx]
        losses.append(F.cross_entropy(logits, y, reduction="none"))
        margins.append(minimal_margin_scores(logits, head_weight(model)))
        wrong.append(logits.argmax(1) != y)
    loss, mms, miss = torch.cat(losses), torch.cat(margins), torch.cat(wrong)
    return {"loss": loss, "mms": mms, "signed": torch.where(miss, mms, -mms)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--noise", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--selector", default="mms")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks/samples/suspects.json"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        config = TrainConfig(dataset="mnist", selector=args.selector, epochs=args.epochs,
                             label_noise=args.noise, seed=args.seed, samples_every=50, hist_every=0,
                             log_every=50, eval_samples=2000, threads=args.threads, out_dir=tmp)
        rec = Recorder()
        start = time.perf_counter()
        result = train(config, [rec])
        seconds = time.perf_counter() - start
        snaps = [e for e in rec.events if isinstance(e, SampleSnapshot)]
        flipped = set(snaps[0].flipped)
        final = final_model_scores(Path(tmp) / "checkpoint.pt", config)

    rankings: dict[str, list[int]] = {
        "suspects": list(snaps[-1].suspects["index"]),
        "loss": final["loss"].argsort(descending=True).tolist(),
        "signed_margin_final": final["signed"].argsort(descending=True).tolist(),
        "lowest_mms_final": final["mms"].argsort().tolist(),
    }
    results: dict[str, Any] = {
        name: {f"precision@{n}": round(precision(ranked, flipped, n), 4) for n in TOPS}
        | {"listed": min(len(ranked), max(TOPS))}
        for name, ranked in rankings.items()
    }
    command = ("python scripts/suspects_eval.py "
               f"--epochs {args.epochs:g} --noise {args.noise:g} --seed {args.seed} --selector {args.selector}")
    report = {
        "command": command,
        "dataset": "mnist", "selector": args.selector, "epochs": args.epochs, "label_noise": args.noise,
        "seed": args.seed, "num_train": len(final["loss"]), "flipped": len(flipped),
        "chance": round(len(flipped) / len(final["loss"]), 4),
        "test_accuracy": result.test_accuracy, "steps": result.steps, "train_seconds": round(seconds, 1),
        "results": results, "machine": machine_info(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'ranking':<22} " + " ".join(f"{'P@' + str(n):>8}" for n in TOPS))
    for name, row in results.items():
        print(f"{name:<22} " + " ".join(f"{row[f'precision@{n}']:>8.3f}" for n in TOPS))
    print(f"chance {report['chance']}, test accuracy {result.test_accuracy}, {seconds:.0f} s; wrote {args.out}")


if __name__ == "__main__":
    main()
