"""Label noise, explained: what a run trains on (NoiseHarm), the clean-only oracle, and the
network-health scalars that tell a collapsed network from a slow one."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from marginscope.engine.callbacks import Recorder
from marginscope.engine.config import TrainConfig
from marginscope.engine.data import flip_labels, load_dataset
from marginscope.engine.events import Scalars
from marginscope.engine.loop import train
from marginscope.engine.models import create_model
from marginscope.engine.monitoring import NoiseHarm, network_health
from marginscope.engine.sampler import PassSampler

NOISY = dict(dataset="digits", label_noise=0.3, seed=3, steps=40, eval_every=20, log_every=10,
             batch_size=16, candidates=64, device="cpu", threads=1, hist_every=0)


def test_noise_harm_measures_the_gradient_at_the_logits() -> None:
    logits = torch.tensor([[10.0, 0.0, 0.0],  # confident in class 0
                           [0.0, 0.0, 0.0]])  # undecided
    labels = torch.tensor([1, 0])  # the first is trained on a wrong label
    true = torch.tensor([0, 0])
    harm = NoiseHarm.of(logits, labels, true, torch.tensor([True, False]))
    p0 = torch.softmax(logits[0], 0)
    big = math.sqrt(float((p0[0]) ** 2 + (p0[1] - 1) ** 2 + p0[2] ** 2))  # about sqrt 2
    small = math.sqrt((1 / 3 - 1) ** 2 + 2 / 9)
    assert harm.trained == 2 and harm.flipped == 1 and harm.flipped_true == 1
    assert harm.flipped_push == pytest.approx(big) and harm.push == pytest.approx(big + small)
    shares = harm.shares()
    assert shares["noise/flipped_share"] == 0.5
    assert shares["noise/flipped_gradient_share"] == pytest.approx(big / (big + small))
    assert shares["noise/flipped_predicted_true"] == 1.0
    # nothing flipped trained: nothing said of the flipped ones
    assert "noise/flipped_predicted_true" not in NoiseHarm.of(logits, true, true, torch.tensor([False, False])).shares()


def test_a_noisy_run_reports_its_harm_live_and_in_its_result() -> None:
    rec = Recorder()
    result = train(TrainConfig(selector="uniform", **NOISY), [rec])
    noise = [e.values for e in rec.of(Scalars) if "noise/flipped_share" in e.values]
    assert len(noise) == 4  # every StepMetrics (log_every 10 of 40 steps)
    assert all(0 < v["noise/flipped_share"] < 1 and 0 < v["noise/flipped_gradient_share"] < 1 for v in noise)
    assert result.selected_flipped > 0
    assert 0 < result.flipped_gradient_share < 1 and 0 <= result.flipped_predicted_true <= 1
    # the windows add up to the run's count of flipped samples trained on
    windows = sum(v["noise/flipped_share"] * 10 * 16 for v in noise)
    assert windows == pytest.approx(result.selected_flipped)


def test_a_clean_run_reports_no_harm() -> None:
    rec = Recorder()
    result = train(TrainConfig(**{**NOISY, "label_noise": 0.0}), [rec])
    assert not any("noise/flipped_share" in e.values for e in rec.of(Scalars))
    assert result.flipped_gradient_share is None and result.selected_flipped == 0


def test_the_clean_only_oracle_never_trains_on_a_flipped_label() -> None:
    noisy = train(TrainConfig(selector="uniform", **NOISY))
    oracle = train(TrainConfig(selector="uniform", clean_only=True, **NOISY))
    assert oracle.steps == noisy.steps and oracle.samples_backpropagated == noisy.samples_backpropagated
    assert oracle.selected_flipped == 0 and oracle.flipped_gradient_share == 0.0
    with pytest.raises(ValidationError, match="clean_only"):
        TrainConfig(dataset="digits", clean_only=True)


def test_a_pass_over_a_population_is_a_permutation_of_it() -> None:
    n = len(load_dataset("digits").train)
    _, flipped = flip_labels(load_dataset("digits").train.labels, 0.3, 10, seed=3)
    keep = torch.ones(n, dtype=torch.bool)
    keep[flipped] = False
    population = keep.nonzero().flatten()
    sampler = PassSampler(n, seed=3, population=population)
    first = sampler.draw(len(population))
    assert torch.equal(first.sort().values, population)
    assert sampler.pass_index == 1 and not torch.equal(sampler.draw(len(population)), first)


def test_a_resumed_noisy_run_keeps_its_harm(tmp_path: Path) -> None:
    full = train(TrainConfig(selector="mms", out_dir=str(tmp_path / "full"), **NOISY))
    calls = {"n": 0}

    def stop_after_20() -> bool:
        calls["n"] += 1
        return calls["n"] > 20

    part = train(TrainConfig(selector="mms", out_dir=str(tmp_path / "part"), **NOISY), should_stop=stop_after_20)
    resumed = train(TrainConfig(selector="mms", out_dir=str(tmp_path / "part"), resume_from=part.checkpoint,
                                **NOISY))
    assert resumed.selected_flipped == full.selected_flipped
    assert resumed.flipped_gradient_share == pytest.approx(full.flipped_gradient_share)
    assert resumed.flipped_predicted_true == full.flipped_predicted_true


def test_network_health_sees_dead_features_and_the_head() -> None:
    model = create_model("small-cnn", num_classes=10, input_shape=(1, 8, 8))
    x = torch.randn(32, 1, 8, 8)
    alive = network_health(model, x)
    assert 0 <= alive["model/dead_features"] < 0.5
    assert alive["model/head_norm"] == pytest.approx(model.head.weight.norm().item())
    with torch.no_grad():  # every feature unit's pre-activation pushed far below 0: all dead
        model.fc[1].bias.fill_(-1e6)  # the BatchNorm before the feature ReLU
    assert network_health(model, x)["model/dead_features"] == 1.0
    assert network_health(torch.nn.Linear(4, 2), torch.randn(3, 4)) == {}


def test_every_validation_reports_the_network_health() -> None:
    rec = Recorder()
    train(TrainConfig(**{**NOISY, "label_noise": 0.0}), [rec])
    health = [e for e in rec.of(Scalars) if "model/dead_features" in e.values]
    assert [e.counters.step for e in health] == [20, 40]


def test_a_noise_suite_tables_the_harm_and_the_oracle(tmp_path: Path) -> None:
    from marginscope.engine.bench import BenchSettings, run_suite
    from marginscope.engine.bench.report import noise_markdown
    from marginscope.engine.bench.results import read_results
    from marginscope.engine.bench.stats import build_table

    settings = BenchSettings(dataset="digits", steps=20, candidates=64, batch_size=16, seeds=(0, 1),
                             arms=("mms", "uniform{clean_only=true}"), label_noise=0.3, eval_every=10,
                             targets=(0.5,), score_chunk=32)
    run_suite(settings, tmp_path, progress=False, log=lambda _: None)
    results = read_results(tmp_path / "results.json")
    results["table"] = build_table(results)
    table = noise_markdown(results).splitlines()
    assert "training signal from flipped labels" in table[0]
    rows = {line.split(" | ")[0].lstrip("| "): line for line in table[2:]}
    assert set(rows) == {"uniform", "mms", "uniform{clean_only=true}"}  # uniform: the reference
    # the oracle trains on no flipped label: 0% of its samples and of its training signal
    oracle = rows["uniform{clean_only=true}"].split(" | ")
    assert oracle[4] == "0.0% ± 0.0%" and oracle[5] == "0.0% ± 0.0%" and oracle[6].startswith("—")
    assert all(r["summary"]["flipped_gradient_share"] is not None for r in results["runs"])
