"""How often the report's seed-resampling range holds the figure it brackets: a simulation (``bench coverage``).

``validation.figure_intervals`` draws a zoo's seeds with replacement and reports the 2.5-97.5 percentiles of the
verdict's two figures. With K seeds there are only C(2K-1, K) distinct resamples (10 for K = 3), so the range can be
narrower than a 95 % confidence interval. This simulates zoos whose seeds are draws from a known model of task
distances, replicates and their noise, and counts how often a zoo's range holds the figure of a very large zoo of the
same model (its population value).

The model, per seed: ``d[b, t] = D[b, t] + noise``, ``r[t, k] = R[t] + noise`` (each clipped at 0), the noise of one
seed shared by its column (``seed_share``: a seed's network moves every distance of its column together, as a
retrained network does) plus independent noise. ``D``, ``R`` and the scales are fixed by ``seed``.
"""
from __future__ import annotations

from math import comb

import numpy as np

from tanas_core.distances.validation import VERDICT_FIGURES, figure_intervals, identity_top1, signal_to_noise
from tanas_core.workspace.records import DistanceResult

FIGURES = dict(identity_top1=identity_top1, signal_to_noise=signal_to_noise)


def simulated_zoo(truth: dict, seeds: int, rng: np.random.Generator) -> DistanceResult:
    """A ``DistanceResult`` of ``seeds`` seeds drawn from ``truth`` (``simulation_truth``)."""
    distances, reference, noise, share = truth["distances"], truth["reference"], truth["noise"], truth["seed_share"]
    tasks, replicates = len(reference), truth["replicates"]
    column = rng.normal(0, noise * share, size=(seeds, 1, tasks))  # a seed's network moves its whole column
    matrices = np.clip(distances[None] + column + rng.normal(0, noise, size=(seeds, tasks, tasks)), 0, None)
    matrices[:, np.arange(tasks), np.arange(tasks)] = 0.0
    twins = np.clip(reference[None, :, None] + column.transpose(0, 2, 1)
                    + rng.normal(0, noise, size=(seeds, tasks, replicates)), 0, None)
    return DistanceResult(suite="simulated", arch="model", metric="frechet", sigma=0.0, seeds=list(range(seeds)),
                          tasks=[f"t{t}" for t in range(tasks)], matrices=matrices,
                          noise_floor=np.full(tasks, np.nan), seconds=0.0, replicates=twins,
                          lift=np.full((seeds, tasks), np.nan), bootstrap=np.zeros((seeds, 0, tasks, tasks)))


def simulation_truth(tasks: int = 4, replicates: int = 2, noise: float = 0.04, seed_share: float = 1.0,
                     seed: int = 0) -> dict:
    """A model of a suite: true distances ``D`` in [0.15, 0.45], twin distances ``R`` around 0.08 (so baselines beat
    the twin now and then, as in the demo reports), and the noise scales."""
    rng = np.random.default_rng(seed)
    distances = rng.uniform(0.15, 0.45, size=(tasks, tasks)) * (1 - np.eye(tasks))
    return dict(distances=distances, reference=rng.uniform(0.06, 0.10, size=tasks), noise=noise,
                seed_share=seed_share, replicates=replicates)


def coverage(truth: dict, seeds: int, zoos: int = 200, resamples: int = 400, population_seeds: int = 4000,
             seed: int = 1) -> dict:
    """``{seeds, zoos, distinct_resamples, population: {figure: value}, coverage: {figure: share of zoos whose range
    holds it}, width: {figure: median range width}}`` for zoos of ``seeds`` seeds of ``truth``."""
    rng = np.random.default_rng(seed)
    population = simulated_zoo(truth, population_seeds, rng)
    values = {name: FIGURES[name]([population]) for name in VERDICT_FIGURES}
    held, widths = {name: 0 for name in VERDICT_FIGURES}, {name: [] for name in VERDICT_FIGURES}
    for zoo in range(zoos):
        ranges = figure_intervals([simulated_zoo(truth, seeds, rng)], resamples=resamples, seed=zoo)
        for name, bounds in ranges.items():
            held[name] += bounds is not None and bounds[0] <= values[name] <= bounds[1]
            widths[name].append(np.nan if bounds is None else bounds[1] - bounds[0])
    return dict(seeds=seeds, zoos=zoos, distinct_resamples=comb(2 * seeds - 1, seeds), population=values,
                coverage={name: held[name] / zoos for name in VERDICT_FIGURES},
                width={name: float(np.nanmedian(widths[name])) for name in VERDICT_FIGURES})


def coverage_markdown(rows: list[dict]) -> str:
    """``coverage`` rows as a Markdown table (for docs/results; ``bench coverage --from FILE`` prints it)."""
    names = list(rows[0]["coverage"])
    lines = ["population values (4,000 seeds): " + ", ".join(f"{name} {value:.3f}"
                                                             for name, value in rows[0]["population"].items()), "",
             "| seeds | distinct resamples | " + " | ".join(f"{name}: held | {name}: median width" for name in names)
             + " |", "| --- | --- | " + " | ".join("--- | ---" for _ in names) + " |"]
    for row in rows:
        lines.append(f"| {row['seeds']} | {row['distinct_resamples']:,} | " + " | ".join(
            f"{row['coverage'][name]:.2f} | {row['width'][name]:.3f}" for name in names) + " |")
    return "\n".join(lines) + "\n"
