"""Scenarios: sets of failed risk groups, as a padded integer matrix for vectorised evaluation."""

from __future__ import annotations

from itertools import combinations
from math import comb

import numpy as np

MAX_SCENARIOS = 20_000_000


def scenario_count(groups: int, depth: int) -> int:
    """How many scenarios `enumerate_scenarios` yields: the intact topology plus every k-subset, k <= depth."""
    return sum(comb(groups, k) for k in range(depth + 1))


def enumerate_scenarios(groups: int, depth: int) -> np.ndarray:
    """Rows of group indices, padded with `groups` (= no failure): intact first, then singles, pairs...

    Order is stable: by size, then lexicographic by sorted group index.
    """
    if depth < 0:
        raise ValueError("depth must be >= 0")
    total = scenario_count(groups, depth)
    if total > MAX_SCENARIOS:
        raise ValueError(f"{total:,} scenarios at depth {depth} is too many (limit {MAX_SCENARIOS:,})")
    width = max(depth, 1)
    out = np.full((total, width), groups, dtype=np.int32)
    row = 1  # row 0: intact
    for k in range(1, depth + 1):
        n = comb(groups, k)
        if n == 0:
            continue
        if k == 1:
            out[row:row + n, 0] = np.arange(groups)
        elif k == 2:
            a, b = np.triu_indices(groups, 1)
            out[row:row + n, 0], out[row:row + n, 1] = a, b
        else:
            out[row:row + n, :k] = np.array(list(combinations(range(groups), k)), dtype=np.int32)
        row += n
    return out
