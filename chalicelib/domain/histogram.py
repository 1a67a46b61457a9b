"""Durations as fixed-bucket histograms, so percentiles over any period come from stored counts.

Bucket 0 holds durations under 1 s; bucket i (i >= 1) holds [B**(i-1), B**i) seconds with
B = 1.25, up to bucket 80 (about 67 days), and the last bucket everything longer. A percentile
is interpolated linearly inside its bucket, so it is off by less than one bucket's width: at most
25% of the true value (1 s below 1 s), typically much less. Counts and sums are exact, so means
are exact. docs/metrics.md states the same.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

BASE = 1.25
LAST_BUCKET = 81
MAX_RELATIVE_ERROR = BASE - 1  # the docs quote this figure


def bucket_of(seconds: float) -> int:
    if seconds < 1:
        return 0
    index = math.floor(math.log(seconds, BASE)) + 1
    # log() can land a hair below an exact power: keep the bucket's lower bound <= seconds.
    if lower_bound(index) > seconds:
        index -= 1
    return min(max(index, 1), LAST_BUCKET)


def lower_bound(index: int) -> float:
    return 0.0 if index <= 0 else BASE ** (index - 1)


def upper_bound(index: int) -> float:
    if index >= LAST_BUCKET:
        return math.inf
    return 1.0 if index <= 0 else BASE**index


def quantile(buckets: Mapping[int, int], q: float) -> float | None:
    """The q-quantile (0 < q <= 1) of the durations counted in `buckets` (index → count)."""
    total = sum(count for count in buckets.values() if count > 0)
    if total <= 0:
        return None
    rank = q * total
    seen = 0
    for index in sorted(buckets):
        count = buckets[index]
        if count <= 0:
            continue
        if seen + count >= rank:
            low, high = lower_bound(index), upper_bound(index)
            if math.isinf(high):
                return low
            return low + (high - low) * ((rank - seen) / count)
        seen += count
    return lower_bound(max(buckets))


def at_most(buckets: Mapping[int, int], seconds: float) -> float:
    """How many counted durations were at most `seconds` (interpolated inside its bucket)."""
    within = 0.0
    for index, count in buckets.items():
        if count <= 0:
            continue
        low, high = lower_bound(index), upper_bound(index)
        if high <= seconds:
            within += count
        elif low < seconds and not math.isinf(high):
            within += count * (seconds - low) / (high - low)
    return within
