"""Command line: ``python -m tanas_core <command>``. Every library ``ValueError`` becomes one ``error:`` line, exit 2."""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from . import data as data_module
from .networks import ARCHITECTURES
from .store import Workspace
from .tasks import SUITE_NAMES, Task, suite_availability
from .training import PRESETS, get_preset
from .zoo import CUSTOM_SUITE, parse_archs, resolve_suite, train_zoo, zoo_table


def _print_table(rows: list[dict], columns: list[str] | None = None) -> None:
    if not rows:
        print("(none)")
        return
    frame = pd.DataFrame(rows)
    if columns:
        frame = frame[columns]
    print(frame.to_string(index=False))


def cmd_data_check(args) -> int:
    rows = data_module.check_datasets(args.data_dir, download=args.download)
    directory = args.data_dir or data_module.default_data_dir()
    print(f"data directory: {directory}")
    for row in rows:
        if row["available"]:
            print(f"  {row['dataset']:<17} ok   {row['classes']:>3} classes  train {row['train']:>6}  "
                  f"test {row['test']:>6}  {row['image']:<8}  from {row['source']}")
        else:
            print(f"  {row['dataset']:<17} MISSING  {row['reason']}")
    return 0


def cmd_tasks_list(args) -> int:
    workspace = Workspace(args.workspace) if args.workspace else None
    names = [args.suite] if args.suite else list(SUITE_NAMES) + [CUSTOM_SUITE]
    for name in names:
        if name == CUSTOM_SUITE:
            tasks = (workspace or Workspace()).load_tasks()
            print(f"[{CUSTOM_SUITE}] custom tasks saved in the workspace: {len(tasks)}")
            _print_tasks(tasks)
            continue
        available, reason = suite_availability(name)
        try:
            suite = resolve_suite(name, workspace)
        except ValueError as error:  # quickdraw's class names come from its data
            print(f"[{name}] unavailable: {error}")
            continue
        spec = suite.spec
        print(f"[{name}] {suite.title}  (input {spec.channels}x{spec.size}x{spec.size})"
              + ("" if available else f"  UNAVAILABLE: {reason}"))
        _print_tasks(suite.tasks)
    return 0


def _print_tasks(tasks: list[Task]) -> None:
    for index, task in enumerate(tasks):
        print(f"  {index}  {task.name:<36} {task.dataset:<14} {task.num_outputs:>2} outputs: "
              f"{', '.join(task.output_names)[:90]}")


def cmd_tasks_add(args) -> int:
    try:
        payload = json.loads(Path(args.json).read_text() if Path(args.json).is_file() else args.json)
    except json.JSONDecodeError as error:
        raise ValueError(f"--json is neither a file nor valid JSON ({error.msg} at position {error.pos})") from error
    task = Task.from_dict(payload)
    workspace = Workspace(args.workspace) if args.workspace else Workspace()
    workspace.save_task(task)
    print(f"saved custom task {task.name!r} ({task.num_outputs} outputs: {', '.join(task.output_names)})")
    return 0


def _progress_printer():
    from tqdm import tqdm

    bar = tqdm(total=0, unit="net", dynamic_ncols=True)

    def on_event(event) -> None:
        bar.total = event.total
        label = f"{event.task} {event.arch} s{event.seed}"
        if event.progress is not None:
            p = event.progress
            bar.set_description(f"{label} ep {p.epoch}/{p.epochs} loss {p.loss:.3f} acc {p.accuracy:.3f}")
        elif event.status in ("reused", "trained", "rebuilt-corrupt"):
            r = event.record
            note = {"reused": "reused", "trained": "trained", "rebuilt-corrupt": "checkpoint was CORRUPT: retrained"}
            bar.write(f"{label:<46} {note[event.status]:<8} test acc {r.test_accuracy:.4f}  "
                      f"{r.params:>9,} params  {r.seconds:6.1f} s  {r.device}")
            bar.update(1)

    return bar, on_event


def cmd_zoo_train(args) -> int:
    workspace = Workspace(args.workspace) if args.workspace else Workspace()
    suite = resolve_suite(args.suite, workspace)
    if args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
    tasks = [t.strip() for t in args.tasks.split(",")] if args.tasks else None
    bar, on_event = _progress_printer()
    started = time.perf_counter()
    try:
        records = train_zoo(workspace, suite, parse_archs(args.archs), list(range(args.seeds)), args.preset,
                            device=args.device, tasks=tasks, on_event=on_event, workers=args.workers)
    finally:
        bar.close()
    print(f"{len(records)} networks in {time.perf_counter() - started:.1f} s; workspace {workspace.root}")
    missing = [r for r in records if not r.is_epsilon_approximation]
    if missing:
        print(f"{len(missing)} miss the epsilon target (test accuracy < 1 - {missing[0].epsilon}): "
              + ", ".join(f"{r.task}/{r.arch}/s{r.seed} {r.test_accuracy:.3f}" for r in missing))
    return 0


def cmd_zoo_list(args) -> int:
    workspace = Workspace(args.workspace) if args.workspace else Workspace()
    rows = zoo_table(workspace.list_networks(args.suite, args.preset), workspace if args.verify else None)
    _print_table(rows)
    return 0


def cmd_bench_zoo(args) -> int:
    """Train a zoo from scratch in a throw-away workspace and print per-network accuracy, params and seconds."""
    preset = get_preset(args.preset)
    with tempfile.TemporaryDirectory(prefix="tanas-bench-") as scratch:
        workspace = Workspace(scratch)
        suite = resolve_suite(args.suite, workspace)
        bar, on_event = _progress_printer()
        started = time.perf_counter()
        try:
            records = train_zoo(workspace, suite, parse_archs(args.archs), list(range(args.seeds)), preset,
                                device=args.device, on_event=on_event, workers=args.workers)
        finally:
            bar.close()
        total = time.perf_counter() - started
    rows = [dict(task=r.task, arch=r.arch, seed=r.seed, test_acc=f"{r.test_accuracy:.4f}",
                 eps_ok="yes" if r.is_epsilon_approximation else "NO", params=f"{r.params:,}",
                 seconds=f"{r.seconds:.1f}", device=r.device) for r in records]
    print(f"\nzoo benchmark: suite {suite.name}, preset {preset.name}, {len(records)} networks, "
          f"{args.workers} worker(s), device {records[0].device if records else args.device}")
    _print_table(rows)
    per_arch = pd.DataFrame([dict(arch=r.arch, seconds=r.seconds) for r in records]).groupby("arch")["seconds"]
    print("\nper architecture: " + ", ".join(f"{a} median {s.median():.1f} s (sum {s.sum():.1f} s)"
                                             for a, s in per_arch))
    print(f"total wall time (incl. data preparation and evaluation): {total:.1f} s"
          f" — goal 300 s: {'met' if total <= 300 else 'NOT met'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tanas_core", description="TA-NAS Studio command line")
    parser.add_argument("--workspace", help="workspace directory (default: $TANAS_HOME or ~/.tanas)")
    commands = parser.add_subparsers(dest="command", required=True)

    data = commands.add_parser("data", help="datasets").add_subparsers(dest="action", required=True)
    check = data.add_parser("check", help="where each dataset is found, with its counts")
    check.add_argument("--data-dir", help="data directory (default: $TANAS_DATA_DIR or $TANAS_HOME/data)")
    check.add_argument("--download", action="store_true", help="try torchvision's download for missing datasets")
    check.set_defaults(func=cmd_data_check)

    tasks = commands.add_parser("tasks", help="task suites and custom tasks").add_subparsers(dest="action",
                                                                                            required=True)
    listing = tasks.add_parser("list", help="the suites' tasks (or one suite's)")
    listing.add_argument("--suite", choices=list(SUITE_NAMES) + [CUSTOM_SUITE])
    listing.set_defaults(func=cmd_tasks_list)
    add = tasks.add_parser("add", help="save a custom task from JSON",
                           description='example: --json \'{"name": "fives", "dataset": "mnist", "groups": '
                                       '[["5"]], "other": true}\'')
    add.add_argument("--json", required=True, help="task JSON, or a file holding it")
    add.set_defaults(func=cmd_tasks_add)

    zoo = commands.add_parser("zoo", help="the epsilon-approximation networks").add_subparsers(dest="action",
                                                                                              required=True)

    def zoo_options(sub, default_suite=None):
        sub.add_argument("--suite", required=default_suite is None, default=default_suite,
                         choices=list(SUITE_NAMES) + [CUSTOM_SUITE])
        sub.add_argument("--archs", default=",".join(ARCHITECTURES), help="comma-separated architectures")
        sub.add_argument("--seeds", type=int, default=1, help="K: train seeds 0..K-1")
        sub.add_argument("--preset", default="demo", choices=list(PRESETS))
        sub.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
        sub.add_argument("--workers", type=int, default=1,
                         help="networks trained at once in separate processes (CPU only; 2 suits a 2-core machine)")

    train = zoo.add_parser("train", help="train (or reuse) a network per task x architecture x seed")
    zoo_options(train)
    train.add_argument("--tasks", help="comma-separated task names (default: all of the suite)")
    train.set_defaults(func=cmd_zoo_train)
    zoo_list = zoo.add_parser("list", help="the stored networks")
    zoo_list.add_argument("--suite")
    zoo_list.add_argument("--preset")
    zoo_list.add_argument("--verify", action="store_true", help="check every checkpoint's sha256")
    zoo_list.set_defaults(func=cmd_zoo_list)

    bench = commands.add_parser("bench", help="benchmarks").add_subparsers(dest="action", required=True)
    bench_zoo = bench.add_parser("zoo", help="train a zoo from scratch (throw-away workspace) and time it")
    zoo_options(bench_zoo, default_suite="ld8")
    bench_zoo.set_defaults(func=cmd_bench_zoo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished networks are kept in the workspace", file=sys.stderr)
        return 130
