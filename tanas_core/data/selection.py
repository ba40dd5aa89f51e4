"""Class-balanced selection of image positions: per task output and source class, how many images to take so every
output gets the same count, spread as evenly as the classes allow (used by the splits and the probe sets)."""
from __future__ import annotations

import numpy as np

from tanas_core.errors import TanasError


def class_members(labels: np.ndarray, mapping: np.ndarray, outputs: int, rng,
             exclude: np.ndarray | None = None) -> list[list[np.ndarray]]:
    """Per output, per source class (label order): that class's positions (not in ``exclude``), shuffled by ``rng``."""
    keep = np.ones(len(labels), dtype=bool) if exclude is None else ~exclude
    pool = []
    for output in range(outputs):
        classes = np.flatnonzero(mapping == output)
        pool.append([rng.permutation(np.flatnonzero((labels == c) & keep)) for c in classes])
    return pool


def balanced_take(pool, total: int, used) -> list[list[int]]:
    """Per output and class, how many images to take so every output gets the same count (<= total // outputs)."""
    if total < len(pool):
        raise TanasError(f"a split of {total} images cannot hold one image of each of {len(pool)} outputs")
    capacity = [[len(m) - u for m, u in zip(classes, used_c)] for classes, used_c in zip(pool, used)]
    per_output = min(total // len(pool), *(sum(c) for c in capacity))
    return [spread(per_output, caps) for caps in capacity]


def spread(count: int, capacities: list[int]) -> list[int]:
    """Split ``count`` over classes as evenly as their ``capacities`` allow (water-filling)."""
    take = [0] * len(capacities)
    remaining = count
    open_classes = [i for i, c in enumerate(capacities) if c > 0]
    while remaining > 0 and open_classes:
        share, extra = divmod(remaining, len(open_classes))
        for rank, i in enumerate(list(open_classes)):
            add = min(share + (1 if rank < extra else 0), capacities[i] - take[i])
            take[i] += add
            remaining -= add
        open_classes = [i for i in open_classes if take[i] < capacities[i]]
    return take


def all_remaining(pool, used) -> list[list[int]]:
    """Per output and class, every image not ``used`` yet."""
    return [[len(m) - u for m, u in zip(classes, used_c)] for classes, used_c in zip(pool, used)]
