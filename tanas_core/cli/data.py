"""``data check``: where each dataset is found, and which built-in suites cannot run for lack of data."""
from __future__ import annotations

from pathlib import Path

from tanas_core.data.datasets import DatasetUnavailableError, check_datasets, data_dir_choice
from tanas_core.data.suites import SUITE_NAMES, get_suite


def register(commands) -> None:
    """Add the ``data`` group to ``commands``."""
    data = commands.add_parser("data", help="datasets").add_subparsers(dest="action", required=True)
    check = data.add_parser("check", help="where each dataset is found, with its counts (exit 1 when a built-in "
                                          "suite lacks a dataset)")
    check.add_argument("--data-dir", help="data directory (default: $TANAS_DATA_DIR; unset: $TANAS_HOME/data or "
                                          "../shared/datasets beside the checkout, whichever holds data)")
    check.add_argument("--download", action="store_true", help="try torchvision's download for missing datasets")
    check.set_defaults(func=run_check)


def suite_datasets(name: str) -> list[str]:
    """The datasets built-in suite ``name`` needs (a suite whose definition reads its data names the missing one)."""
    try:
        return get_suite(name).datasets
    except DatasetUnavailableError as error:  # quickdraw's class names come from its pack
        return [error.dataset or "quickdraw"]


def blocked_suites(rows: list[dict]) -> dict[str, list[str]]:
    """``{suite: [missing datasets]}`` for every built-in suite that lacks data, given ``check_datasets`` rows."""
    missing = {row["dataset"] for row in rows if not row["available"]}
    blocked = {name: [d for d in suite_datasets(name) if d in missing] for name in SUITE_NAMES}
    return {name: datasets for name, datasets in blocked.items() if datasets}


def run_check(args) -> int:
    """Print one line per dataset; exit 1 (saying how to provide each missing dataset) when a suite cannot run."""
    rows = check_datasets(args.data_dir, download=args.download)
    directory, why = (Path(args.data_dir), "--data-dir") if args.data_dir else data_dir_choice()
    print(f"data directory: {directory} ({why})")
    for row in rows:
        if row["available"]:
            print(f"  {row['dataset']:<17} ok   {row['classes']:>3} classes  train {row['train']:>6}  "
                  f"test {row['test']:>6}  {row['image']:<8}  from {row['source']}")
        else:
            print(f"  {row['dataset']:<17} MISSING  {row['reason']}")
    blocked = blocked_suites(rows)
    if not blocked:
        print("every built-in suite has its data")
        return 0
    print(f"\n{len(blocked)} built-in suite(s) cannot run: "
          + "; ".join(f"{name} (needs {', '.join(datasets)})" for name, datasets in blocked.items()))
    reasons = {row["dataset"]: row["reason"] for row in rows}
    print("to provide the missing datasets:")
    for dataset in sorted({d for datasets in blocked.values() for d in datasets}):
        print(f"  {dataset}: {reasons[dataset]}")
    if not args.download:
        print("(`python -m tanas_core data check --download` tries torchvision's verified download)")
    return 1
