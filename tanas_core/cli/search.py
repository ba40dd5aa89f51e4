"""``search`` / ``compare``: an architecture for a target task, and the comparison table of the methods."""
from __future__ import annotations

from pathlib import Path

from tanas_core.cli.common import (
    SearchPrinter,
    budget_option,
    closest_settings,
    default_help,
    distance_options,
    make_context,
    parse_budget,
    preset_option,
    print_table,
    range_help,
    run_options,
    workspace,
)
from tanas_core.requests import METHODS, SPACES, ClosestSettings, CompareRequest, SearchRequest


def register(commands) -> None:
    """Add ``search`` and ``compare`` to ``commands``."""
    search = commands.add_parser("search", help="search an architecture for a target task")
    _options(search, SearchRequest)
    search.add_argument("--space", default=None, choices=list(SPACES),
                        help=default_help("search space", SearchRequest, "space"))
    search.add_argument("--method", default=None, choices=list(METHODS),
                        help=default_help("search method", SearchRequest, "method"))
    search.set_defaults(func=run_search, request=search_request)
    compare = commands.add_parser("compare", help="hand-designed networks vs random search vs FUSE on a target")
    _options(compare, CompareRequest)
    compare.add_argument("--out", default=None, help="directory for the CSV file (default: the workspace's "
                                                     "exports/comparisons)")
    compare.add_argument("--repeats", type=int, default=None,
                         help=range_help("independent search seeds (and zoo seeds) per method", CompareRequest,
                                         "repeats"))
    compare.set_defaults(func=run_compare, request=compare_request)


def _options(sub, request_type) -> None:
    """The closest-task settings (distance settings, ``--top``, ``--baselines``), target, budget, seed."""
    distance_options(sub, ClosestSettings)
    preset_option(sub, request_type)
    run_options(sub)
    sub.add_argument("--target", required=True, help="SUITE:TASK, e.g. ld8:mnist-10class")
    sub.add_argument("--top", type=int, default=None,
                     help=range_help("k closest tasks that define the related space", ClosestSettings, "top"))
    sub.add_argument("--baselines", help="comma-separated learned tasks to choose from (default: all others)")
    budget_option(sub)
    sub.add_argument("--seed", type=int, default=None, help=default_help("search seed", request_type, "seed"))


def _common(args) -> dict:
    return dict(target=args.target, preset=args.preset, budget=parse_budget(args.budget), seed=args.seed,
                closest=ClosestSettings.from_dict(closest_settings(args)))


def search_request(args) -> SearchRequest:
    """The ``SearchRequest`` of ``search`` (``--head``, ``--projection-dim`` and ``--workers`` included)."""
    return SearchRequest.from_dict(dict(_common(args), space=args.space, method=args.method))


def compare_request(args) -> CompareRequest:
    """The ``CompareRequest`` of ``compare``."""
    return CompareRequest.from_dict(dict(_common(args), repeats=args.repeats))


def run_search(args) -> int:
    """Run one search and print its space, winner and (after the final training) accuracies."""
    from tanas_core.search.nas import run_search as search

    request = search_request(args)
    record = search(request, make_context(args, workspace(args), **SearchPrinter().sinks()))
    sources = record.space.get("sources") or []
    print(f"search {record.run_id}: {record.status}")
    print(f"  space {record.space['name']} ({record.space['size']} genotypes"
          + (f", from {', '.join(sources)}" if sources else "") + ")")
    print(f"  winner {record.genotype_text}")
    if record.test_accuracy is not None:
        print(f"  test accuracy {record.test_accuracy:.4f}  val accuracy {record.val_accuracy:.4f}  "
              f"params {record.params / 1e6:.3f} M  search {record.search_seconds:.1f} s  "
              f"training {record.train_seconds:.1f} s  on {record.device}")
    return 0


def run_compare(args) -> int:
    """Run (or read) the comparison, print its table and write its CSV into ``--out``."""
    from tanas_core.search.comparison import COMPARISON_COLUMNS, compare, control_warnings, write_csv

    request = compare_request(args)
    result = compare(request, make_context(args, workspace(args), **SearchPrinter().sinks()))
    print(f"\ncomparison on {result.suite}:{result.target} (preset {request.preset}); closest task: "
          + ", ".join(f"{row['baseline']} ({row['distance']:.3f})" for row in result.closest))
    rows = result.table_rows()
    print_table([{k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()} for row in rows],
                COMPARISON_COLUMNS)
    out_dir = Path(args.out) if args.out else workspace(args).root / "exports" / "comparisons"
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / Path(result.csv).name
    write_csv(rows, out, COMPARISON_COLUMNS)
    print_summary(result)
    for warning in control_warnings(result, workspace(args)):
        print(f"note: {warning}")
    print(f"whole comparison: {result.seconds:.1f} s; CSV: {out}")
    return 0


def _interval(row: dict, figure: str, digits: int) -> str:
    mean, low, high = row[figure], row[f"{figure}_low"], row[f"{figure}_high"]
    if mean != mean:  # nan: not measured (hand-designed networks have no search)
        return "n/a"
    return f"{mean:.{digits}f}" + ("" if low != low else f" [{low:.{digits}f}, {high:.{digits}f}]")


def print_summary(result) -> None:
    """Mean and 95 % interval per method over the repeats, and FUSE-related against each method (paired)."""
    print("\nper method, mean [95 % t-interval] over the repeats:")
    print_table([dict(method=r["method"], repeats=r["repeats"], test_accuracy=_interval(r, "test_accuracy", 4),
                      params_m=_interval(r, "params_m", 3), search_s=_interval(r, "search_seconds", 1),
                      train_s=_interval(r, "train_seconds", 1)) for r in result.summary()])
    paired = result.paired()
    if paired:
        print("\nFUSE, related space minus each method, test accuracy, paired over the same seeds:")
        print_table([dict(method=p["method"], pairs=p["n"], difference=f"{p['mean']:+.4f}",
                          interval="n/a" if p["low"] != p["low"] else f"[{p['low']:+.4f}, {p['high']:+.4f}]",
                          verdict=p["verdict"]) for p in paired])
