"""Command line: ``python -m tanas_core <command>``. Every library ``ValueError`` becomes one ``error:`` line, exit 2."""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

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
    workspace = Workspace(args.workspace)
    names = [args.suite] if args.suite else list(SUITE_NAMES) + [CUSTOM_SUITE]
    for name in names:
        if name == CUSTOM_SUITE:
            tasks = workspace.load_tasks()
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
    workspace = Workspace(args.workspace)
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
    workspace = Workspace(args.workspace)
    suite = resolve_suite(args.suite, workspace)
    if args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
    tasks = [t.strip() for t in args.tasks.split(",")] if args.tasks else None
    bar, on_event = _progress_printer()
    started = time.perf_counter()
    try:
        records = train_zoo(workspace, suite, parse_archs(args.archs), list(range(args.seeds)), args.preset,
                            device=args.device, tasks=tasks, on_event=on_event, workers=args.workers,
                            backend=_backend(args))
    finally:
        bar.close()
    print(f"{len(records)} networks in {time.perf_counter() - started:.1f} s; workspace {workspace.root}")
    missing = [r for r in records if not r.is_epsilon_approximation]
    if missing:
        print(f"{len(missing)} miss the epsilon target (test accuracy < 1 - {missing[0].epsilon}): "
              + ", ".join(f"{r.task}/{r.arch}/s{r.seed} {r.test_accuracy:.3f}" for r in missing))
    return 0


def cmd_zoo_list(args) -> int:
    workspace = Workspace(args.workspace)
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
                                device=args.device, on_event=on_event, workers=args.workers,
                                backend=_backend(args))
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


def _backend(args):
    """``--backend local`` (with ``--workers`` processes for zoo training) or ``--backend ray [--ray-address A]``."""
    from .backends import make_backend

    return make_backend(args.backend, args.ray_address, workers=args.workers if args.backend == "local" else 1)


def _distance_result(args, workspace, arch: str):
    from .task_distances import FisherConfig, distance_matrices

    suite = resolve_suite(args.suite, workspace)
    config = FisherConfig(samples=args.samples, head_samples=max(args.samples, args.head_samples), head=args.head,
                          projection_dim=args.projection_dim)
    bar, on_event = _progress_printer()
    state = {"last": ""}

    def on_progress(message: str, fraction: float) -> None:
        if message != state["last"]:
            bar.set_description(f"{arch} {message}")
            state["last"] = message

    try:
        return distance_matrices(workspace, suite, arch, args.metric, list(range(args.seeds)), args.preset,
                                 sigma=args.sigma, config=config, device=args.device, on_progress=on_progress,
                                 workers=args.workers, backend=_backend(args))
    finally:
        bar.close()


def _matrix_frame(result, values) -> pd.DataFrame:
    frame = pd.DataFrame(values, index=result.tasks, columns=result.tasks)
    frame.index.name = "baseline \\ target"
    return frame


def cmd_distance(args) -> int:
    from .task_distances import across_architectures

    workspace = Workspace(args.workspace)
    results = [_distance_result(args, workspace, arch) for arch in parse_archs(args.arch)]
    if len(results) > 1:
        results.append(across_architectures(results))
    datasets = {t.name: t.dataset for t in resolve_suite(args.suite, workspace).tasks}
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    with pd.option_context("display.width", 250, "display.max_columns", 30, "display.precision", 4):
        for result in results:
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
            if len(result.seeds) > 1:
                print("noise floor (same task, different seeds, same data): "
                      + ", ".join(f"{name} {value:.4f}" for name, value in zip(result.tasks, result.noise_floor)))
            if len(set(datasets.values())) > 1:
                same, across = result.dataset_contrast(datasets)
                print(f"mean off-diagonal distance: same-dataset pairs {same:.4f}, cross-dataset pairs {across:.4f}")
            for target in result.tasks:
                best = result.closest(target, 1)[0]
                print(f"  closest to {target}: {best['baseline']} ({best['distance']:.4f} ± {best['std']:.4f})")
            stem = f"{result.suite}_{result.arch}_{result.metric}".replace("+", "-")
            path = out_dir / f"{stem}.csv"
            rows = [dict(seed=seed, baseline=b, target=t, distance=result.matrices[k, i, j])
                    for k, seed in enumerate(result.seeds) for i, b in enumerate(result.tasks)
                    for j, t in enumerate(result.tasks)]
            pd.DataFrame(rows).to_csv(path, index=False)
            print(f"wrote {path}")
    return 0


def cmd_closest(args) -> int:
    workspace = Workspace(args.workspace)
    for arch in parse_archs(args.arch):
        result = _distance_result(args, workspace, arch)
        print(f"closest baselines to {args.target} ({arch}, {args.metric}, {len(result.seeds)} seed(s)):")
        for rank, row in enumerate(result.closest(args.target, args.top), 1):
            print(f"  {rank}. {row['baseline']:<34} {row['distance']:.4f} ± {row['std']:.4f}  "
                  f"per seed {', '.join(f'{v:.4f}' for v in row['per_seed'])}")
    return 0


def cmd_bench_fisher(args) -> int:
    from .bench import bench_fisher
    from .fisher import select_parameters
    from .tasks import make_splits, get_suite
    from .training import resolve_device
    from .zoo import ensure_network, load_network

    device = resolve_device(args.device)
    preset = get_preset("demo")
    suite = get_suite("ld8")
    task = suite.task("cifar10-10class")
    with tempfile.TemporaryDirectory(prefix="tanas-bench-") as scratch:
        workspace = Workspace(scratch)
        record, _ = ensure_network(workspace, suite, task, "vgg16", preset, 0, device=str(device))
        model = load_network(workspace, record, device)
    splits = make_splits(task, preset.sizes, 0, suite.spec)
    images, labels = splits.tensors("train")
    inputs, targets = images[: args.samples].to(device), labels[: args.samples].to(device)
    other = torch.roll(targets, 1)
    n = sum(p.numel() for _, p in select_parameters(model, "backbone"))
    print(f"Fisher benchmark: demo VGG-16 ({record.params:,} parameters, {n:,} in the backbone), M = {len(targets)} "
          f"real CIFAR-10 images, device {device}, torch threads {torch.get_num_threads()}")
    rows = bench_fisher(model, inputs, targets, other, repeats=args.repeats)
    table = pd.DataFrame(rows)[["path", "median_s", "x_floor", "peak_extra_MiB", "runs"]]
    with pd.option_context("display.width", 200, "display.precision", 3):
        print(table.to_string(index=False))
    by_name = {row["path"].split()[0]: row for row in rows}
    diag, loop, low = by_name["(c)"], by_name["(b)"], by_name["(d)"]
    gram_flops = 2 * len(targets) ** 2 * n
    gram_row = by_name["(d2)"]
    print(f"each M x M Gram of a factor is {gram_flops / 1e9:.1f} GFLOP in float64 (2 M^2 n), run at "
          f"{gram_flops / gram_row['median_s'] / 1e9:.1f} GFLOP/s here; (d) needs two, so the Grams alone are "
          f"{2 * gram_row['x_floor']:.1f}x the floor on this device")
    print(f"goals: (c) <= 2x floor: {diag['x_floor']:.2f}x {'met' if diag['x_floor'] <= 2 else 'NOT met'}; "
          f"(c) >= 5x faster than (b): {loop['median_s'] / diag['median_s']:.1f}x "
          f"{'met' if loop['median_s'] / diag['median_s'] >= 5 else 'NOT met'}; "
          f"(d) <= 4x floor: {low['x_floor']:.2f}x {'met' if low['x_floor'] <= 4 else 'NOT met'}")
    return 0


def cmd_bench_backends(args) -> int:
    from .bench import bench_backends, paper_step_seconds
    from .tasks import get_suite

    archs = tuple(parse_archs(args.archs))
    suite = get_suite(args.suite)
    bar, on_event = _progress_printer()
    try:
        rows = bench_backends(args.suite, args.seeds, archs, args.preset, args.ray_workers, on_event)
    finally:
        bar.close()
    print(f"\nbackend benchmark: suite {args.suite}, {len(archs)} architecture(s), {args.seeds} seed(s), preset "
          f"{args.preset}, every network trained from scratch in a throw-away workspace, device cpu")
    _print_table([dict(backend=r["backend"], networks=r["networks"], wall_s=f"{r['wall_s']:.1f}",
                       median_network_s=f"{r['median_network_s']:.1f}", sum_network_s=f"{r['sum_network_s']:.1f}",
                       speedup=f"{r['ratio']:.2f}x") for r in rows])
    speedup = rows[-1]["ratio"]
    steps = paper_step_seconds(args.suite, archs)
    print("\npaper preset, measured on this machine: seconds per training step (full width, batch 128) and the "
          "steps of one network (all training images, 30 epochs)")
    _print_table([dict(arch=r["arch"], step_s=f"{r['step_s']:.2f}", steps_per_network=int(r["steps_per_network"]),
                       hours_per_network_here=f"{r['network_hours']:.1f}") for r in steps])
    networks = len(suite.tasks) * 10
    hours = sum(r["network_hours"] for r in steps) * networks
    print(f"\nPROJECTION (not a measurement): the paper zoo of {args.suite} = {len(suite.tasks)} tasks x "
          f"{len(archs)} architectures x 10 seeds = {networks * len(archs)} networks, {hours:,.0f} machine-hours "
          f"of one network at a time on a machine like this one. Ray ({args.ray_workers} one-core tasks at once) "
          f"trained the zoo above {speedup:.2f}x as fast as the local backend; at that rate a Ray cluster of N such "
          "machines would take about:")
    for machines in (1, 8, 32):
        wall = hours / (machines * speedup)
        print(f"  N = {machines:>2}: {wall:,.0f} h")
    print("On GPU machines each network is one Ray task asking for one GPU, so N machines with g GPUs train N*g "
          "networks at once: wall time ~ ceil(networks / (N*g)) x the per-network GPU time, which was not measured "
          "here (no GPU was lent to this task).")
    return 0


def parse_budget(text: str | None):
    """``"candidates=4,rounds=2,max_seconds=600"`` -> ``SearchBudget`` (unnamed fields keep their defaults)."""
    from dataclasses import fields

    from .fuse import SearchBudget

    if not text:
        return SearchBudget()
    types = {f.name: f.type for f in fields(SearchBudget)}
    changes = {}
    for item in text.split(","):
        name, _, value = item.partition("=")
        name = name.strip()
        if name not in types or not value.strip():
            raise ValueError(f"--budget: {item!r} is not NAME=VALUE with NAME one of {', '.join(types)}")
        try:
            changes[name] = int(value) if types[name] == "int" else float(value)
        except ValueError:
            raise ValueError(f"--budget: {name} needs a number, got {value!r}") from None
    return SearchBudget.from_dict(changes)


def _closest_settings(args):
    from .nas import ClosestSettings

    return ClosestSettings.from_dict(dict(
        metric=args.metric, archs=args.arch, seeds=args.seeds, sigma=args.sigma, samples=args.samples,
        head_samples=max(args.samples, args.head_samples), top=args.top,
        baselines=[b.strip() for b in (args.baselines or "").split(",") if b.strip()]))


def _search_printer():
    def on_event(event: dict) -> None:
        if event.get("type") == "alpha" and (event["step"] % 5 == 0 or event["step"] == 1):
            weights = " ".join(f"{w:.3f}" for w in event["weights"])
            print(f"  round {event['round']} step {event['step']:>3}  softmax(alpha) [{weights}]  "
                  f"train loss {event['train_loss']:.3f}  val loss {event['val_loss']:.3f}  "
                  f"{event['elapsed']:6.1f} s", flush=True)
        elif event.get("type") == "round_done":
            print(f"  round {event['round']} done after {event['steps']} steps "
                  f"({'converged' if event['converged'] else 'step limit'}): winner {event['winner']}", flush=True)
        elif event.get("type") == "candidate":
            print(f"  candidate {event['step']}: {event['candidates'][0]} val accuracy {event['val_accuracy']:.3f} "
                  f"({event['seconds']:.1f} s)", flush=True)

    def on_progress(message: str, fraction: float) -> None:
        print(f"[{message}]", flush=True)

    return on_event, on_progress


def cmd_search(args) -> int:
    from .nas import parse_target, run_search

    workspace = Workspace(args.workspace)
    suite, target = parse_target(args.target, lambda name: resolve_suite(name, workspace))
    on_event, on_progress = _search_printer()
    record = run_search(workspace, suite, target, space=args.space, method=args.method, preset=args.preset,
                        budget=parse_budget(args.budget), seed=args.seed, device=args.device,
                        closest=_closest_settings(args), on_event=on_event, on_progress=on_progress,
                        backend=_backend(args))
    print(f"search {record['run_id']}: {record['status']}")
    print(f"  space {record['space']['name']} ({record['space']['size']} genotypes"
          + (f", from {', '.join(record['space']['sources'])}" if record['space']['sources'] else "") + ")")
    print(f"  winner {record.get('genotype_text')}")
    if record.get("test_accuracy") is not None:
        print(f"  test accuracy {record['test_accuracy']:.4f}  val accuracy {record['val_accuracy']:.4f}  "
              f"params {record['params'] / 1e6:.3f} M  search {record['search_seconds']:.1f} s  "
              f"training {record['train_seconds']:.1f} s  on {record['device']}")
    return 0


def cmd_compare(args) -> int:
    from .nas import COMPARISON_COLUMNS, compare, parse_target, write_csv

    workspace = Workspace(args.workspace)
    suite, target = parse_target(args.target, lambda name: resolve_suite(name, workspace))
    on_event, on_progress = _search_printer()
    result = compare(workspace, suite, target, args.preset, parse_budget(args.budget), args.seed, args.device,
                     _closest_settings(args), on_event=on_event, on_progress=on_progress, backend=_backend(args))
    print(f"\ncomparison on {suite.name}:{target.name} (preset {args.preset}); closest task: "
          + ", ".join(f"{row['baseline']} ({row['distance']:.3f})" for row in result["closest"]))
    _print_table([{k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}
                  for row in result["rows"]], COMPARISON_COLUMNS)
    out = Path(args.out) / Path(result["csv"]).name
    write_csv(result["rows"], out, COMPARISON_COLUMNS)
    print(f"whole comparison: {result['seconds']:.1f} s; CSV: {out}")
    return 0


def cmd_zoo_search(args) -> int:
    from .nas import zoo_search

    workspace = Workspace(args.workspace)
    suite = resolve_suite(args.suite, workspace)
    tasks = [t.strip() for t in args.tasks.split(",")] if args.tasks else None
    _, on_progress = _search_printer()
    rows = zoo_search(workspace, suite, args.preset, parse_budget(args.budget), args.seed, args.device, tasks,
                      on_progress=on_progress)
    _print_table(rows)
    return 0


def cmd_bench_pages(args) -> int:
    from .bench import bench_pages, populate_for_pages

    repo = Path(__file__).resolve().parents[1]
    if args.workspace is None:
        home = Path(tempfile.mkdtemp(prefix="tanas-bench-pages-"))
        os.environ["TANAS_HOME"] = str(home)
        print(f"populating a throw-away workspace {home} (smoke preset: mnist4 zoo, distances, one FUSE search)")
        populate_for_pages(Workspace(home))
    else:
        os.environ["TANAS_HOME"] = str(Path(args.workspace).resolve())
    rows = bench_pages(repo, args.repeats)
    _print_table([{k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()} for row in rows])
    print(f"medians of {args.repeats} AppTest sessions per page; goal: every render within 2 s")
    return 0


BUDGET_HELP = ("search budget as NAME=VALUE pairs, comma-separated: candidates, rounds, epochs_per_round, "
               "random_candidates, random_epochs, final_epochs, alpha_lr, tolerance, window, min_steps, max_seconds")


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

    def backend_options(sub):
        sub.add_argument("--backend", default="local", choices=["local", "ray"],
                         help="where networks, Fishers and random-search candidates run: here (default) or as Ray "
                              "tasks")
        sub.add_argument("--ray-address", default=None,
                         help="a running Ray cluster (e.g. ray://head:10001); default: start a local Ray")

    def zoo_options(sub, default_suite=None):
        sub.add_argument("--suite", required=default_suite is None, default=default_suite,
                         choices=list(SUITE_NAMES) + [CUSTOM_SUITE])
        sub.add_argument("--archs", default=",".join(ARCHITECTURES), help="comma-separated architectures")
        sub.add_argument("--seeds", type=int, default=1, help="K: train seeds 0..K-1")
        sub.add_argument("--preset", default="demo", choices=list(PRESETS))
        sub.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
        sub.add_argument("--workers", type=int, default=1,
                         help="networks trained at once in separate processes (CPU only; 2 suits a 2-core machine)")
        backend_options(sub)

    train = zoo.add_parser("train", help="train (or reuse) a network per task x architecture x seed")
    zoo_options(train)
    train.add_argument("--tasks", help="comma-separated task names (default: all of the suite)")
    train.set_defaults(func=cmd_zoo_train)
    zoo_list = zoo.add_parser("list", help="the stored networks")
    zoo_list.add_argument("--suite")
    zoo_list.add_argument("--preset")
    zoo_list.add_argument("--verify", action="store_true", help="check every checkpoint's sha256")
    zoo_list.set_defaults(func=cmd_zoo_list)
    zoo_search_parser = zoo.add_parser("search", help="store each task's best genotype (FUSE, standard space)")
    zoo_search_parser.add_argument("--suite", required=True, choices=list(SUITE_NAMES) + [CUSTOM_SUITE])
    zoo_search_parser.add_argument("--tasks", help="comma-separated task names (default: all of the suite)")
    zoo_search_parser.add_argument("--preset", default="demo", choices=list(PRESETS))
    zoo_search_parser.add_argument("--budget", help=BUDGET_HELP)
    zoo_search_parser.add_argument("--seed", type=int, default=0)
    zoo_search_parser.add_argument("--device", default="auto")
    zoo_search_parser.set_defaults(func=cmd_zoo_search)

    def distance_options(sub, with_suite=True):
        if with_suite:
            sub.add_argument("--suite", required=True, choices=list(SUITE_NAMES) + [CUSTOM_SUITE])
        sub.add_argument("--arch", default="vgg16" if with_suite else ",".join(ARCHITECTURES),
                         help="architecture(s), comma-separated")
        sub.add_argument("--metric", default="logdet", choices=["logdet", "frechet", "frechet-full"])
        sub.add_argument("--seeds", type=int, default=1, help="K: networks of seeds 0..K-1")
        sub.add_argument("--sigma", type=float, default=1e-3, help="sigma of the log-det distance")
        sub.add_argument("--preset", default="demo", choices=list(PRESETS))
        sub.add_argument("--samples", type=int, default=256, help="M: target images per Fisher")
        sub.add_argument("--head-samples", type=int, default=512, help="images the refitted head is trained on")
        sub.add_argument("--head", default="refit", choices=["refit", "own"],
                         help="refit a linear head on the target (empirical Fisher) or keep the baseline's head "
                              "(model Fisher)")
        sub.add_argument("--projection-dim", type=int, default=None,
                         help="CountSketch width for frechet-full when M x n does not fit in memory")
        sub.add_argument("--device", default="auto")
        sub.add_argument("--workers", type=int, default=1, help="processes for training missing zoo networks")
        backend_options(sub)

    distance = commands.add_parser("distance", help="task distance matrices d[b, t] (prints them, writes CSV)")
    distance_options(distance)
    distance.add_argument("--out", default=".", help="directory for the CSV files")
    distance.set_defaults(func=cmd_distance)
    closest = commands.add_parser("closest", help="the baselines closest to a target task")
    distance_options(closest)
    closest.add_argument("--target", required=True, help="target task name")
    closest.add_argument("--top", type=int, default=3)
    closest.set_defaults(func=cmd_closest)

    def search_options(sub):
        distance_options(sub, with_suite=False)
        sub.add_argument("--target", required=True, help="SUITE:TASK, e.g. ld8:mnist-10class")
        sub.add_argument("--top", type=int, default=1, help="k closest tasks that define the related space")
        sub.add_argument("--baselines", help="comma-separated learned tasks to choose from (default: all others)")
        sub.add_argument("--budget", help=BUDGET_HELP)
        sub.add_argument("--seed", type=int, default=0)

    search = commands.add_parser("search", help="search an architecture for a target task")
    search_options(search)
    search.add_argument("--space", default="related", choices=["related", "standard"])
    search.add_argument("--method", default="fuse", choices=["fuse", "random"])
    search.set_defaults(func=cmd_search)
    compare = commands.add_parser("compare", help="hand-designed networks vs random search vs FUSE on a target")
    search_options(compare)
    compare.add_argument("--out", default=".", help="directory for the CSV file")
    compare.set_defaults(func=cmd_compare)

    bench = commands.add_parser("bench", help="benchmarks").add_subparsers(dest="action", required=True)
    bench_fisher_parser = bench.add_parser("fisher", help="time the Fisher paths against a batched backward pass")
    bench_fisher_parser.add_argument("--samples", type=int, default=256)
    bench_fisher_parser.add_argument("--repeats", type=int, default=5)
    bench_fisher_parser.add_argument("--device", default="auto")
    bench_fisher_parser.set_defaults(func=cmd_bench_fisher)
    bench_pages_parser = bench.add_parser("pages", help="time every app page on a populated workspace (AppTest)")
    bench_pages_parser.add_argument("--repeats", type=int, default=5)
    bench_pages_parser.set_defaults(func=cmd_bench_pages)
    bench_zoo = bench.add_parser("zoo", help="train a zoo from scratch (throw-away workspace) and time it")
    zoo_options(bench_zoo, default_suite="ld8")
    bench_zoo.set_defaults(func=cmd_bench_zoo)
    bench_backends = bench.add_parser("backends", help="the same zoo trained locally and on a local Ray, timed")
    bench_backends.add_argument("--suite", default="ld8", choices=list(SUITE_NAMES))
    bench_backends.add_argument("--archs", default=",".join(ARCHITECTURES), help="comma-separated architectures")
    bench_backends.add_argument("--seeds", type=int, default=2)
    bench_backends.add_argument("--preset", default="demo", choices=list(PRESETS))
    bench_backends.add_argument("--ray-workers", type=int, default=2, help="CPUs of the local Ray (one per task)")
    bench_backends.set_defaults(func=cmd_bench_backends)
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
