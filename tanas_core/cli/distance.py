"""``distance`` / ``closest``: task distance matrices d[b, t] and a target's closest baselines."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from tanas_core.cli.common import (
    ProgressPrinter,
    distance_options,
    distance_settings,
    make_context,
    preset_option,
    run_options,
    suite_option,
    workspace,
)
from tanas_core.data.suites import resolve_suite
from tanas_core.distances.metrics import get_metric
from tanas_core.distances.views import REFERENCE_TEXT
from tanas_core.requests import DistanceRequest


def register(commands) -> None:
    """Add ``distance`` and ``closest`` to ``commands``."""
    distance = commands.add_parser("distance", help="task distance matrices d[b, t] (prints them, writes CSV)")
    _options(distance)
    distance.add_argument("--out", default=None, help="directory for the CSV files (default: the workspace's "
                                                      "exports/distances)")
    distance.set_defaults(func=run_distance, request=distance_request)
    closest = commands.add_parser("closest", help="the baselines closest to a target task")
    _options(closest)
    closest.add_argument("--target", required=True, help="target task name")
    closest.add_argument("--top", type=int, default=3, help="how many baselines to list (default: 3)")
    closest.set_defaults(func=run_closest, request=distance_request)


def _options(sub) -> None:
    suite_option(sub)
    distance_options(sub, DistanceRequest)
    preset_option(sub, DistanceRequest)
    run_options(sub)


def distance_request(args) -> DistanceRequest:
    """The ``DistanceRequest`` of ``distance`` / ``closest``."""
    return DistanceRequest.from_dict(dict(distance_settings(args), suite=args.suite, preset=args.preset))


def compute(args, request: DistanceRequest) -> list:
    """``distance_matrices`` with a progress bar: one ``DistanceResult`` per architecture of the request."""
    from tanas_core.distances.matrices import distance_matrices

    with ProgressPrinter() as printer:
        return distance_matrices(request, make_context(args, workspace(args), **printer.sinks()))


def _matrix_frame(result, values) -> pd.DataFrame:
    frame = pd.DataFrame(values, index=result.tasks, columns=result.tasks)
    frame.index.name = "baseline \\ target"
    return frame


def print_result(result, datasets: dict[str, str]) -> None:
    """The mean matrix, its spread over seeds, column means, noise floor, dataset contrast and closest baselines."""
    origin = "read from the workspace" if result.cached else f"computed in {result.seconds:.1f} s"
    print(f"\n{result.suite} / {result.arch} / {result.metric}"
          + (f" (sigma {result.sigma:g})" if result.metric == "logdet" else "")
          + f" / {len(result.seeds)} seed(s), {origin}")
    print("mean d[b, t] (row = baseline b, column = target t):")
    print(_matrix_frame(result, result.mean))
    if len(result.seeds) > 1:
        print("standard deviation over seeds:")
        print(_matrix_frame(result, result.std))
    print("column means (average distance to target t): "
          + ", ".join(f"{name} {value:.4f}" for name, value in zip(
              result.tasks, result.mean.sum(0) / max(1, len(result.tasks) - 1))))
    if result.replicates.shape[-1]:
        twins = REFERENCE_TEXT[DistanceRequest.from_stored(result.request).twin_kind] if result.request else "?"
        print(f"reference r[t] (twins of t as baselines: {twins}; a baseline must beat it): "
              + ", ".join(f"{name} {value:.4f}" for name, value in zip(result.tasks, result.reference)))
    if len(result.seeds) > 1:
        print("cross-initialisation spread (same task, different seeds): "
              + ", ".join(f"{name} {value:.4f}" for name, value in zip(result.tasks, result.noise_floor)))
    if get_metric(result.metric).lift is not None:
        print("log-det lift of F[t, t] above sigma^2 (near 0: the distance measures sigma): "
              + ", ".join(f"{name} {value:.2f}" for name, value in zip(result.tasks, result.lift.mean(0))))
    if len(set(datasets.values())) > 1:
        same, across = result.dataset_contrast(datasets)
        print(f"mean off-diagonal distance: same-dataset pairs {same:.4f}, cross-dataset pairs {across:.4f}")
    print("closest baseline per target: mean ± std over seeds, 95 % interval and rank frequency over seeds x "
          "bootstrap resamples, the baselines tied with it (inside the noise), the target's reference r[t]:")
    for t, target in enumerate(result.tasks):
        best = result.closest_summary(target)
        print(f"  {target}: {best['baseline']} {best['distance']:.4f} ± {best['std']:.4f} "
              f"[{best['interval_low']:.4f}, {best['interval_high']:.4f}], rank frequency "
              f"{best['rank_frequency']:.2f}; tied: {', '.join(best['ties']) or 'none'}; "
              f"r[t] {result.reference[t]:.4f}")


def write_csv(result, out_dir: Path) -> Path:
    """Every seed's matrix as ``seed,baseline,target,distance`` rows in ``SUITE_ARCH_METRIC.csv``."""
    stem = f"{result.suite}_{result.arch}_{result.metric}".replace("+", "-")
    path = out_dir / f"{stem}.csv"
    rows = [dict(seed=seed, baseline=b, target=t, distance=result.matrices[k, i, j])
            for k, seed in enumerate(result.seeds) for i, b in enumerate(result.tasks)
            for j, t in enumerate(result.tasks)]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def run_distance(args) -> int:
    """Compute (or read) the matrices of each architecture (and their average), print them, write CSVs."""
    from tanas_core.distances.matrices import across_architectures

    request = distance_request(args)
    results = compute(args, request)
    if len(results) > 1:
        results.append(across_architectures(results))
    datasets = {t.name: t.dataset for t in resolve_suite(request.suite, workspace(args)).tasks}
    out_dir = Path(args.out) if args.out else workspace(args).root / "exports" / "distances"
    out_dir.mkdir(parents=True, exist_ok=True)
    with pd.option_context("display.width", 250, "display.max_columns", 30, "display.precision", 4):
        for result in results:
            print_result(result, datasets)
            print(f"wrote {write_csv(result, out_dir)}")
    return 0


def run_closest(args) -> int:
    """The ``--top`` baselines closest to ``--target``, per architecture, with each seed's distance."""
    request = distance_request(args)
    resolve_suite(request.suite, workspace(args)).task(args.target)  # an unknown target fails before any work
    for result in compute(args, request):
        print(f"closest baselines to {args.target} ({result.arch}, {result.metric}, {len(result.seeds)} seed(s)):")
        for rank, row in enumerate(result.closest(args.target, args.top), 1):
            print(f"  {rank}. {row['baseline']:<34} {row['distance']:.4f} ± {row['std']:.4f}  "
                  f"per seed {', '.join(f'{v:.4f}' for v in row['per_seed'])}")
    return 0
