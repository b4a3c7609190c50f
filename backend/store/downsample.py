"""Server-side downsampling of metric series that keeps the shape a reader cares about.

Min/max bucketing (as in plotting libraries' "minmax" decimation): the first and last points are
always kept, the interior is cut into equal-count buckets and each bucket keeps its minimum and its
maximum (in x order). Spikes and dips therefore survive any reduction, unlike stride sampling.
Pure functions on sequences: no database, tested on their own (tests/backend/test_downsample.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def downsample_indices(values: Sequence[float], max_points: int) -> list[int]:
    """Sorted indices of at most `max_points` points of `values` (points in x order).

    Keeps index 0 and the last index, and for each of (max_points - 2) // 2 buckets of the interior
    the index of its minimum and of its maximum (NaNs are ignored unless a bucket has nothing else).
    With len(values) <= max_points every index is kept. max_points < 2 keeps only the last point
    (or nothing when max_points <= 0)."""
    n = len(values)
    if max_points <= 0 or n == 0:
        return []
    if n <= max_points:
        return list(range(n))
    if max_points < 2:
        return [n - 1]
    if max_points < 4:
        return [0, n - 1]
    buckets = (max_points - 2) // 2
    interior = n - 2  # indices 1 .. n-2
    keep = [0]
    for b in range(buckets):
        lo = 1 + (b * interior) // buckets
        hi = 1 + ((b + 1) * interior) // buckets  # exclusive
        if lo >= hi:
            continue
        finite = [i for i in range(lo, hi) if not _is_nan(values[i])]
        if not finite:
            keep.append(lo)
            continue
        i_min = min(finite, key=lambda i: values[i])
        i_max = max(finite, key=lambda i: values[i])
        keep.extend(sorted({i_min, i_max}))
    keep.append(n - 1)
    return keep


def _is_nan(value: float) -> bool:
    return isinstance(value, float) and math.isnan(value)


def thin_indices(n: int, max_points: int) -> list[int]:
    """Evenly spaced indices of at most `max_points` out of n, always keeping the first and last."""
    if max_points <= 0 or n == 0:
        return []
    if n <= max_points:
        return list(range(n))
    if max_points == 1:
        return [n - 1]
    step = (n - 1) / (max_points - 1)
    return sorted({round(k * step) for k in range(max_points)})
