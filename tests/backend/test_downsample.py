"""The downsampling pure functions: first, last and every bucket's extremes survive."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from marginscope.backend.store.downsample import downsample_indices, thin_indices

finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e6)


@given(st.lists(finite, max_size=400), st.integers(min_value=4, max_value=100))
def test_keeps_first_last_and_global_extremes(values: list[float], max_points: int) -> None:
    idx = downsample_indices(values, max_points)
    assert len(idx) <= max_points
    assert idx == sorted(set(idx))
    if not values:
        assert idx == []
        return
    assert idx[0] == 0 and idx[-1] == len(values) - 1
    kept = [values[i] for i in idx]
    assert min(values) in kept and max(values) in kept


@given(st.lists(finite, max_size=50), st.integers(min_value=50, max_value=100))
def test_short_series_unchanged(values: list[float], max_points: int) -> None:
    assert downsample_indices(values, max_points) == list(range(len(values)))


def test_nan_is_not_an_extreme() -> None:
    values = [0.0] + [float("nan")] * 5 + [5.0] + [1.0] * 50 + [0.5]
    kept = [values[i] for i in downsample_indices(values, 6)]
    assert 5.0 in kept


def test_tiny_budgets() -> None:
    assert downsample_indices([1.0, 2.0, 3.0], 0) == []
    assert downsample_indices([1.0, 2.0, 3.0], 1) == [2]
    assert downsample_indices([1.0, 2.0, 3.0, 4.0], 2) == [0, 3]


@given(st.integers(min_value=0, max_value=5000), st.integers(min_value=1, max_value=600))
def test_thin_indices(n: int, max_points: int) -> None:
    idx = thin_indices(n, max_points)
    assert len(idx) == min(n, max_points)
    assert idx == sorted(set(idx))
    if n:
        assert idx[-1] == n - 1
        assert max_points == 1 or idx[0] == 0
