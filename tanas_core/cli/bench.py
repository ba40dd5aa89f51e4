"""``bench fisher`` / ``pages`` / ``zoo`` / ``distances`` / ``app`` / ``backends`` (``load`` and ``soak``:
``cli/bench_machine.py``): the benchmarks;
``tanas_core.bench`` and ``tanas_core.bench_app`` measure and analyse, this module only prints."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch

from tanas_core.bench.transcript import Transcript, is_transcript, transcript_markdown
from tanas_core.cli.bench_machine import register_machine
from tanas_core.cli.common import ProgressPrinter, json_option, print_table, run_settings
from tanas_core.cli.zoo import zoo_options, zoo_request
from tanas_core.data.suites import SUITE_NAMES
from tanas_core.errors import TanasError
from tanas_core.requests import ZooRequest, parse_archs
from tanas_core.training.trainer import PRESETS

BENCH_SUITE = "ld8"  # the source document's 8 tasks: what the README's benchmark figures were measured on


def register(commands) -> None:
    """Add the ``bench`` group to ``commands``."""
    bench = commands.add_parser("bench", help="benchmarks").add_subparsers(dest="action", required=True)
    fisher = bench.add_parser("fisher", help="time the Fisher paths against a batched backward pass")
    fisher.add_argument("--samples", type=int, default=256, help="M: images per Fisher (default: 256)")
    fisher.add_argument("--repeats", type=int, default=5)
    fisher.add_argument("--device", default="auto")
    json_option(fisher)
    fisher.set_defaults(func=run_fisher)
    pages = bench.add_parser("pages", help="time every app page on a populated workspace (AppTest)")
    pages.add_argument("--repeats", type=int, default=5)
    json_option(pages)
    pages.set_defaults(func=run_pages)
    zoo = bench.add_parser("zoo", help="train a zoo from scratch (throw-away workspace) and time it")
    zoo_options(zoo, suite_required=False)
    json_option(zoo)
    zoo.set_defaults(func=run_zoo, request=lambda args: zoo_request(args, BENCH_SUITE))
    distances = bench.add_parser("distances", help="one seed's distance matrices at several M (Fisher images)")
    distances.add_argument("--suite", default="mnist4", choices=list(SUITE_NAMES))
    distances.add_argument("--archs", default="vgg16,densenet121",
                           help="comma-separated architectures (default: the fastest and the slowest per Fisher)")
    distances.add_argument("--samples", default="512,800", help="comma-separated M values (the old default, the new)")
    json_option(distances)
    distances.set_defaults(func=run_distances)
    pair = bench.add_parser("pair", help="one F[b, t] of the default report per architecture, previous vs current "
                                         "kernels")
    pair.add_argument("--archs", default=",".join(ZooRequest.default("archs")), help="comma-separated architectures")
    pair.add_argument("--runs", type=int, default=3, help="timed runs per case (round-robin; default: 3)")
    json_option(pair)
    pair.set_defaults(func=run_pair)
    cells = bench.add_parser("cells", help="cell networks vs the demo VGG per image, contiguous vs channels_last")
    cells.add_argument("--preset", default="demo", choices=list(PRESETS))
    cells.add_argument("--runs", type=int, default=7, help="timed steps per case (round-robin; default: 7)")
    json_option(cells)
    cells.set_defaults(func=run_cells)
    register_machine(bench)
    _register_results(bench)
    app = bench.add_parser("app", help="a real server and Chromium: idle CPU, job slowdown with tabs open, page "
                                       "settle times, the demo's wall time")
    app.add_argument("--idle-seconds", type=float, default=20.0, help="seconds of each idle CPU measurement")
    app.add_argument("--screenshots", default=None, help="folder for screenshots of the app after the demo")
    json_option(app)
    app.set_defaults(func=run_app)
    backends = bench.add_parser("backends", help="the same zoo trained locally and on a local Ray, timed")
    backends.add_argument("--suite", default=BENCH_SUITE, choices=list(SUITE_NAMES))
    backends.add_argument("--archs", default=",".join(ZooRequest.default("archs")),
                          help="comma-separated architectures")
    backends.add_argument("--seeds", type=int, default=2)
    backends.add_argument("--preset", default=ZooRequest.default("preset"), choices=list(PRESETS))
    backends.add_argument("--ray-workers", type=int, default=2, help="CPUs of the local Ray (one per task)")
    json_option(backends)
    backends.set_defaults(func=run_backends)


def _register_results(bench) -> None:
    """``bench coverage`` (a simulation) and ``bench show`` (a saved transcript as Markdown)."""
    coverage = bench.add_parser("coverage", help="simulated zoos: how often the report's seed-resampling range "
                                                 "holds the figure it brackets")
    coverage.add_argument("--seeds", default="3,5,10", help="comma-separated zoo sizes (default: 3,5,10)")
    coverage.add_argument("--zoos", type=int, default=200, help="simulated zoos per size (default: 200)")
    coverage.add_argument("--json", default=None, help="also write the rows to this JSON file")
    coverage.add_argument("--from", dest="source", default=None,
                          help="print the Markdown table of a JSON file written by --json (no simulation)")
    coverage.set_defaults(func=run_coverage)
    show = bench.add_parser("show", help="print a benchmark's output saved by --json as Markdown (no measuring)")
    show.add_argument("file", help="a JSON file written by `bench ... --json FILE`")
    show.set_defaults(func=run_show)


def run_show(args) -> int:
    """Print a saved benchmark transcript as Markdown (the form its results page shows)."""
    try:
        data = json.loads(Path(args.file).read_text())
    except (OSError, ValueError) as error:
        raise TanasError(f"cannot read {args.file}: {error}; give a file written by `bench ... --json`") from None
    if not is_transcript(data):
        raise TanasError(f"{args.file} is not a benchmark transcript; give a file written by `bench ... --json`")
    print(transcript_markdown(data, args.file), end="")
    return 0


def run_fisher(args) -> int:
    """Time the Fisher paths on a demo VGG-16 and print the table, the Gram's cost and the goals."""
    out = Transcript("fisher")
    from tanas_core.bench.fisher import bench_fisher, fisher_goals, fisher_setup

    setup = fisher_setup(args.samples, args.device)
    samples = len(setup["targets"])
    out.line(f"Fisher benchmark: demo VGG-16 ({setup['params']:,} parameters, {setup['backbone_params']:,} in the "
          f"backbone), M = {samples} real CIFAR-10 images, device {setup['device']}, torch threads "
          f"{torch.get_num_threads()}")
    rows = bench_fisher(setup["model"], setup["inputs"], setup["targets"], setup["other_targets"],
                        repeats=args.repeats)
    out.table([dict(path=r["path"], median_s=f"{r['median_s']:.3g}", x_floor=f"{r['x_floor']:.3g}",
                    peak_extra_MiB=f"{r['peak_extra_MiB']:.3g}", runs=r["runs"]) for r in rows])
    goals = fisher_goals(rows, samples, setup["backbone_params"])
    out.line(f"each M x M Gram of a factor is {goals['gram_gflop']:.1f} GFLOP in float64 (2 M^2 n), run at "
          f"{goals['gram_gflops_per_s']:.1f} GFLOP/s here; (d) needs two, so the Grams alone are "
          f"{goals['grams_x_floor']:.1f}x the floor on this device")
    out.line("goals: " + "; ".join(f"{g['goal']}: {g['value']} {'met' if g['met'] else 'NOT met'}"
                                for g in goals["goals"]))
    out.save(args.json)
    return 0


def run_pages(args) -> int:
    """Time every page (AppTest) on ``--workspace`` or on a throw-away workspace populated here."""
    out = Transcript("pages")
    from tanas_core.bench.pages import bench_pages, populate_for_pages
    from tanas_core.workspace.store import Workspace

    repo = Path(__file__).resolve().parents[2]
    if args.workspace is None:
        home = Path(tempfile.mkdtemp(prefix="tanas-bench-pages-"))
        os.environ["TANAS_HOME"] = str(home)  # the pages under test read their workspace from TANAS_HOME
        print(f"populating a throw-away workspace {home} (smoke preset: mnist4 zoo, distances, one FUSE search)")
        populate_for_pages(Workspace(home))
    else:
        os.environ["TANAS_HOME"] = str(Path(args.workspace).resolve())
    rows = bench_pages(repo, args.repeats)
    out.table([{k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()} for row in rows])
    out.line(f"medians of {args.repeats} AppTest sessions per page; goal: every render within 2 s")
    out.save(args.json)
    return 0


def run_zoo(args) -> int:
    """Train a zoo from scratch in a throw-away workspace; per-network rows, per-architecture medians, the goal."""
    out = Transcript("zoo")
    from tanas_core.bench.workloads import bench_zoo

    request = zoo_request(args, BENCH_SUITE)
    with ProgressPrinter() as printer:
        result = bench_zoo(request, run_settings(args), **printer.sinks())
    records = result["records"]
    out.line(f"\nzoo benchmark: suite {request.suite}, preset {request.preset}, {len(records)} networks, "
          f"{request.workers} worker(s), device {records[0].device if records else run_settings(args).device}")
    out.table(result["rows"])
    out.line("\nper architecture: " + ", ".join(f"{a['arch']} median {a['median_s']:.1f} s (sum {a['sum_s']:.1f} s)"
                                             for a in result["per_arch"]))
    out.line(f"total wall time (incl. data preparation and evaluation): {result['total_s']:.1f} s"
          f" — goal {result['goal_s']:.0f} s: {'met' if result['met'] else 'NOT met'}")
    out.save(args.json)
    return 0


def run_distances(args) -> int:
    """Time one seed's distance matrices per architecture at each M; print the table with ratios to the first M."""
    out = Transcript("distances")
    from tanas_core.bench.workloads import bench_distances

    archs, samples = parse_archs(args.archs), [int(m) for m in args.samples.split(",")]
    with ProgressPrinter() as printer:
        result = bench_distances(args.suite, archs, samples, **printer.sinks())
    out.line(f"\ndistance benchmark: suite {args.suite}, 1 seed, 2 same-initialisation replicates, 40 bootstrap "
          f"resamples, logdet, device cpu, torch threads {torch.get_num_threads()}; zoo + replicates trained first in "
          f"{result['zoo_s']:.1f} s (not in the table)")
    out.table([dict(arch=r["arch"], M=r["M"], fishers=r["fishers"], seconds=f"{r['seconds']:.1f}",
                      s_per_fisher=f"{r['s_per_fisher']:.2f}", x_first_M=f"{r['x_first_M']:.2f}x")
                 for r in result["rows"]])
    out.save(args.json)
    return 0


def run_pair(args) -> int:
    """Time one ``F[b, t]`` per architecture with the previous and the current kernels, alone and two at once; print
    the table."""
    out = Transcript("pair")
    from tanas_core.bench.fisher import PREVIOUS_KERNELS, bench_pair
    from tanas_core.fisher.target import KERNELS

    with ProgressPrinter() as printer:
        result = bench_pair(archs=parse_archs(args.archs), runs=args.runs, **printer.sinks())
    out.line(f"\npair benchmark: F[mnist-digit0, cifar10-car-cat-ship] of ld8 at the default Fisher settings, demo "
          f"networks (trained first in {result['zoo_s']:.1f} s, not in the table), cpu, 1 torch thread per process, "
          f"median of {args.runs} (side by side: of both processes' runs); previous {PREVIOUS_KERNELS}, current "
          f"{KERNELS}")
    out.table([dict(arch=r["arch"], **{f"{mode}_{key}": f"{r[mode][key]:.2f}" + ("x" if key == "speedup" else "")
                                          for mode in ("alone", "side_by_side")
                                          for key in ("previous_s", "current_s", "speedup")},
                      max_rel_diff=f"{r['max_rel_diff']:.1e}") for r in result["rows"]])
    out.save(args.json)
    return 0


def run_cells(args) -> int:
    """Time training steps of cell networks and the demo VGG in both memory layouts; print the table."""
    out = Transcript("cells")
    from tanas_core.bench.workloads import bench_cells

    result = bench_cells(args.preset, runs=args.runs)
    out.line(f"cell network step benchmark: preset {args.preset}, batch {result['batch']}, 3 x 32 x 32 images, cpu, "
          f"torch threads {result['threads']}; median of {args.runs} steps per case, timed round-robin")
    out.table([dict(network=r["network"], layout=r["layout"], ms_per_image=f"{r['ms_per_image']:.2f}",
                      x_vgg=f"{r['x_vgg']:.2f}x", x_contiguous=f"{r['x_contiguous']:.2f}x") for r in result["rows"]])
    out.save(args.json)
    return 0


def run_app(args) -> int:
    """Measure the app in Chromium against a fresh ``make run`` server; print the tables and the goals."""
    out = Transcript("app")
    from tanas_core.bench.app_server import app_goals, bench_app
    from tanas_core.data.datasets import default_data_dir

    repo = Path(__file__).resolve().parents[2]
    shots = Path(args.screenshots) if args.screenshots else None
    measured = bench_app(repo, str(default_data_dir()), args.idle_seconds, shots)
    out.line(f"app benchmark: `make run` server on 127.0.0.1, Chromium (headless) via Playwright, throw-away "
          f"workspace, {os.cpu_count()} CPU cores")
    out.line("\nidle CPU (percent of one core, over {:.0f} s; no job running)".format(args.idle_seconds))
    out.table([dict(tabs=tabs, server=f"{cpu['server']:.1f}", chromium=f"{cpu['browser']:.1f}")
                 for tabs, cpu in measured["idle"].items()])
    zero, two = measured["job_0_tabs"], measured["job_2_tabs"]
    out.line("\nzoo job launched from the Zoo page (mnist4, VGG-16, 1 seed, demo preset: 4 networks)")
    out.table([dict(tabs_open=0, seconds=f"{zero['seconds']:.1f}", status=zero["status"]),
                 dict(tabs_open="2 (home, Search)", seconds=f"{two['seconds']:.1f}", status=two["status"],
                      ratio=f"{two['seconds'] / zero['seconds']:.2f}x")])
    out.line("\npage settle times (until Streamlit's status widget is gone), seconds")
    out.table([dict(page=r["page"], first_visit=f"{r['first_visit_s']:.2f}", revisit=f"{r['revisit_s']:.2f}")
                 for r in measured["pages"]])
    demo = measured["demo"]
    out.line(f"\ndemo with the home page open: {demo['seconds']:.0f} s, {demo['status']}; longest time its progress "
          f"stood still: {demo['longest_pause']:.1f} s" + (f"; error: {demo['error']}" if demo["error"] else ""))
    out.line("\ngoals:")
    for goal in app_goals(measured):
        out.line(f"  {goal['goal']}: {goal['value']} {'met' if goal['met'] else 'NOT met'}")
    if shots:
        out.line(f"screenshots in {shots}")
    out.save(args.json)
    return 0


def run_backends(args) -> int:
    """Train the same zoo locally and on a local Ray, then project the paper zoo's time from measured steps."""
    out = Transcript("backends")
    from tanas_core.bench.workloads import bench_backends, paper_projection, paper_step_seconds

    archs = parse_archs(args.archs)
    with ProgressPrinter() as printer:
        rows = bench_backends(args.suite, args.seeds, archs, args.preset, args.ray_workers, **printer.sinks())
    out.line(f"\nbackend benchmark: suite {args.suite}, {len(archs)} architecture(s), {args.seeds} seed(s), preset "
          f"{args.preset}, every network trained from scratch in a throw-away workspace, device cpu")
    out.table([dict(backend=r["backend"], networks=r["networks"], wall_s=f"{r['wall_s']:.1f}",
                      median_network_s=f"{r['median_network_s']:.1f}", sum_network_s=f"{r['sum_network_s']:.1f}",
                      speedup=f"{r['ratio']:.2f}x") for r in rows])
    speedup = rows[-1]["ratio"]
    steps = paper_step_seconds(args.suite, archs)
    out.line("\npaper preset, measured on this machine: seconds per training step (full width, batch 128) and the "
          "steps of one network (all training images, 30 epochs)")
    out.table([dict(arch=r["arch"], step_s=f"{r['step_s']:.2f}", steps_per_network=int(r["steps_per_network"]),
                      hours_per_network_here=f"{r['network_hours']:.1f}") for r in steps])
    projection = paper_projection(args.suite, archs, steps, speedup)
    out.line(f"\nPROJECTION (not a measurement): the paper zoo of {args.suite} = {projection['tasks']} tasks x "
          f"{len(archs)} architectures x 10 seeds = {projection['networks']} networks, {projection['hours']:,.0f} "
          f"machine-hours of one network at a time on a machine like this one. Ray ({args.ray_workers} one-core "
          f"tasks at once) trained the zoo above {speedup:.2f}x as fast as the local backend; at that rate a Ray "
          "cluster of N such machines would take about:")
    for wall in projection["walls"]:
        out.line(f"  N = {wall['machines']:>2}: {wall['hours']:,.0f} h")
    out.line("On GPU machines each network is one Ray task asking for one GPU, so N machines with g GPUs train N*g "
          "networks at once: wall time ~ ceil(networks / (N*g)) x the per-network GPU time, which was not measured "
          "here (no GPU was lent to this task).")
    out.save(args.json)
    return 0


def run_coverage(args) -> int:
    """Print, per zoo size, the share of simulated zoos whose 95 % seed-resampling range holds the population value
    of each verdict figure (and write ``--json``)."""
    from tanas_core.bench.coverage import coverage, coverage_markdown, simulation_truth

    if args.source:
        print(coverage_markdown(json.loads(Path(args.source).read_text())), end="")
        return 0
    truth = simulation_truth()
    rows = [coverage(truth, int(seeds), zoos=args.zoos) for seeds in args.seeds.split(",")]
    print(f"simulated zoos of a 4-task suite, 2 twins per task and seed, {args.zoos} zoos per size; nominal level "
          "95 %, population values from 4,000 seeds: "
          + ", ".join(f"{name} {value:.3f}" for name, value in rows[0]["population"].items()))
    print_table([dict(seeds=row["seeds"], distinct_resamples=row["distinct_resamples"],
                      **{f"{name}_coverage": f"{share:.2f}" for name, share in row["coverage"].items()},
                      **{f"{name}_width": f"{width:.3f}" for name, width in row["width"].items()}) for row in rows])
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
        print(f"wrote {args.json}")
    return 0
