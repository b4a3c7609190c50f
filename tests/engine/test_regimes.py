"""LR regimes: presets scale to the run length, explicit lists are absolute, warm-up, validation."""

from __future__ import annotations

import pytest

from marginscope.engine.regimes import PRESETS, drop_steps, list_regimes, lr_at, regime_drops, validate_regime


def lrs(regime, steps, *, total=400, per_epoch=10, warmup=0, base=0.1):  # type: ignore[no-untyped-def]
    return [lr_at(s, base_lr=base, regime=regime, total_steps=total, steps_per_epoch=per_epoch,
                  warmup_steps=warmup) for s in steps]


def test_list_regimes() -> None:
    assert list_regimes() == ["normal", "aggressive", "normal-wrn", "aggressive-wrn", "constant"]


def test_presets_at_native_length() -> None:
    # normal on its native 200 epochs at 10 steps/epoch: drops at steps 810, 1220, 1640.
    assert drop_steps("normal", 2000, 10) == [810, 1220, 1640]
    assert lrs("normal", [809, 810, 1219, 1220, 1640, 1999], total=2000) == pytest.approx(
        [0.1, 0.01, 0.01, 0.001, 1e-4, 1e-4])
    assert drop_steps("normal-wrn", 2000, 10) == [600, 1200, 1600]
    assert lrs("normal-wrn", [599, 600, 1600], total=2000) == pytest.approx([0.1, 0.02, 0.1 * 0.2**3])
    assert drop_steps("aggressive-wrn", 600, 10) == [500, 530, 560]


@pytest.mark.parametrize("run_epochs", [4, 40, 400])
def test_presets_scale_with_run_length(run_epochs: int) -> None:
    per_epoch = 50
    total = run_epochs * per_epoch
    scale = run_epochs / 40
    want = [round(e * scale * per_epoch) for e in (32, 35, 38)]
    assert drop_steps("aggressive", total, per_epoch) == want
    epochs, factors = zip(*regime_drops("aggressive", run_epochs))
    assert epochs == pytest.approx((32 * scale, 35 * scale, 38 * scale)) and factors == (0.1, 0.1, 0.1)
    assert lr_at(want[0] - 1, base_lr=1.0, regime="aggressive", total_steps=total,
                 steps_per_epoch=per_epoch) == 1.0
    assert lr_at(total - 1, base_lr=1.0, regime="aggressive", total_steps=total,
                 steps_per_epoch=per_epoch) == pytest.approx(1e-3)


def test_constant() -> None:
    assert drop_steps("constant", 1000, 7) == []
    assert set(lrs("constant", range(0, 400, 37))) == {0.1}


def test_explicit_list_is_absolute_and_cumulative() -> None:
    regime = [(2, 0.5), (3, 0.5), (3, 0.1), (100, 0.1)]
    # Not scaled by the run length: the same steps for a 40- and a 4000-step run.
    assert drop_steps(regime, 40, 10) == [20, 30]  # epoch 100 lies beyond the run
    assert drop_steps(regime, 4000, 10) == [20, 30, 1000]
    assert lrs(regime, [19, 20, 29, 30, 999, 1000], total=4000) == pytest.approx(
        [0.1, 0.05, 0.05, 0.0025, 0.0025, 0.00025])
    assert lrs([(1, 2.0)], [5, 10], total=20) == pytest.approx([0.1, 0.2])  # factors > 1 allowed


def test_fractional_steps_per_epoch() -> None:
    # N/b need not be whole: 781.25 steps per epoch.
    assert drop_steps([(1, 0.1), (2.5, 0.1)], 4000, 781.25) == [781, 1953]


def test_warmup() -> None:
    got = lrs("constant", [0, 1, 4, 5, 6], warmup=5)
    assert got == pytest.approx([0.02, 0.04, 0.1, 0.1, 0.1])
    assert 0 < got[0] < 0.1
    # Warm-up multiplies whatever the regime says at that step.
    assert lrs([(0, 0.1)], [0, 10], warmup=10) == pytest.approx([0.001, 0.01])


def test_validate_accepts() -> None:
    for name in PRESETS:
        assert validate_regime(name) == name
    assert validate_regime([[1, 0.1], [1, 0.5], [2.5, 0.2]]) == [(1.0, 0.1), (1.0, 0.5), (2.5, 0.2)]
    assert validate_regime("30:0.1, 60:0.1") == [(30.0, 0.1), (60.0, 0.1)]
    assert validate_regime([]) == []


@pytest.mark.parametrize("bad, message", [
    ("fast", r"unknown regime 'fast'; choose one of normal, aggressive"),
    ([(-1, 0.1)], "epoch must be >= 0"),
    ([(1, 0.0)], "factor must be > 0"),
    ([(1, -0.5)], "factor must be > 0"),
    ([(5, 0.1), (3, 0.1)], "sorted"),
    ([(1, 0.1, 3)], "pair"),
    ([("a", 0.1)], "numbers"),
    ([(float("nan"), 0.1)], "finite"),
    ("30:x", "epoch:factor"),
    (3, "preset name or a list"),
])
def test_validate_rejects(bad, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=message):
        validate_regime(bad)


def test_train_config_uses_validation() -> None:
    from pydantic import ValidationError

    from marginscope.engine.config import TrainConfig

    assert TrainConfig(regime=[[1, 0.1]]).regime == [(1.0, 0.1)]
    with pytest.raises(ValidationError, match="regime"):
        TrainConfig(regime="fast")


def test_bad_steps_per_epoch() -> None:
    with pytest.raises(ValueError, match="steps_per_epoch"):
        drop_steps("normal", 100, 0)
