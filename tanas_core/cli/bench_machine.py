"""``bench load`` and ``bench soak``: how jobs hold on a real machine (busy cores, long mixed runs); the measuring is
``tanas_core.bench.load`` and ``tanas_core.bench.soak``, this module only prints."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from tanas_core.bench.load import SETTINGS as LOAD_JOBS
from tanas_core.bench.transcript import Transcript
from tanas_core.cli.common import ProgressPrinter, json_option
from tanas_core.data.suites import SUITE_NAMES
from tanas_core.errors import TanasError
from tanas_core.requests import parse_archs
from tanas_core.training.trainer import PRESETS


def register_machine(bench) -> None:
    """Add ``load`` and ``soak`` to the ``bench`` group's subparsers."""
    load = bench.add_parser("load", help="a job alone and beside busy processes: the zoo with the thread governor on "
                                         "and off, or a test selection; libgomp's default spin and a short one")
    load.add_argument("--job", default="zoo", choices=list(LOAD_JOBS),
                      help="zoo: `zoo train` on mnist4 (default); tests: a selection of the test suite")
    load.add_argument("--busy", type=int, default=None, help="busy processes beside the job (default: one per core)")
    load.add_argument("--repeats", type=int, default=3, help="timed runs per case, round-robin (default: 3)")
    load.add_argument("--demo", action="store_true", help="time the demo with its home page open (a real server and "
                                                          "Chromium) alone and beside the busy processes instead")
    json_option(load)
    load.set_defaults(func=run_load)
    soak = bench.add_parser("soak", help="a long mixed run of the job runner (zoo with 2 workers, a report, a FUSE "
                                         "search, a second client): deaths, retries, RSS, artifacts intact")
    soak.add_argument("--suite", default="mnist4", choices=list(SUITE_NAMES))
    soak.add_argument("--preset", default="demo", choices=list(PRESETS))
    soak.add_argument("--archs", default=None, help="comma-separated architectures (default: all three)")
    soak.add_argument("--workers", type=int, default=2, help="worker processes of the zoo job (default: 2)")
    soak.add_argument("--rounds", type=int, default=3, help="rounds of the mix, one more seed each (default: 3)")
    soak.add_argument("--keep", default=None, help="run in this workspace folder and keep it (default: a "
                                                   "throw-away one)")
    json_option(soak)
    soak.set_defaults(func=run_soak)


def run_load(args) -> int:
    """Time a job alone and beside busy processes in each of its settings; print the table and the goal."""
    from tanas_core.bench.load import GOAL, LIBGOMP_DEFAULT_SPIN, SHORT_SPIN, TESTS, ZOO, bench_load

    out = Transcript("load")
    busy = args.busy if args.busy is not None else (os.cpu_count() or 1)
    if args.demo:
        return _demo_load(out, busy, args.json)
    with ProgressPrinter() as printer:
        result = bench_load(busy, args.repeats, printer.on_progress, args.job)
    command = f"python -m tanas_core {' '.join(ZOO)}" if args.job == "zoo" else f"pytest -q {' '.join(TESTS)}"
    out.line(f"load benchmark: `{command}` in a fresh process and workspace per case, {result['cores']} CPU cores, "
             f"{busy} busy process(es) (a Python loop each); spin: GOMP_SPINCOUNT (libgomp's default "
             f"{LIBGOMP_DEFAULT_SPIN}); fair share: (cores + busy) / cores of the job's time alone; seconds: the "
             f"median of {result['repeats']} runs")
    out.table([dict(row, seconds=f"{row['seconds']:.1f}", x_alone=f"{row['x_alone']:.2f}x",
                    fair_share_x=f"{row['fair_share_x']:.2f}x", x_fair_share=f"{row['x_fair_share']:.2f}",
                    within_goal="" if row["within_goal"] is None else ("met" if row["within_goal"] else "NOT met"))
               for row in result["rows"]])
    rows = {(r["busy_processes"] > 0, r["governor"], r["spin"]): r["seconds"] for r in result["rows"]}
    for loaded in (False, True):
        where = "beside busy processes" if loaded else "alone"
        default, short = rows[(loaded, "off", LIBGOMP_DEFAULT_SPIN)], rows[(loaded, "off", SHORT_SPIN)]
        line = f"{where}, governor off, spin {SHORT_SPIN} / default: {short / default:.2f}x"
        if args.job == "zoo":
            governed = rows[(loaded, "on", LIBGOMP_DEFAULT_SPIN)]
            line += f"; governor on / off (default spin): {governed / default:.2f}x"
        out.line(line + " (below 1: faster)")
    out.line(f"goal: beside busy processes within {GOAL}x the fair share")
    out.save(args.json)
    return 0


def _demo_load(out: Transcript, busy: int, json_path: str | None) -> int:
    from tanas_core.bench.app_server import bench_demo_load
    from tanas_core.bench.load import GOAL, fair_share
    from tanas_core.data.datasets import default_data_dir

    rows = bench_demo_load(Path(__file__).resolve().parents[2], str(default_data_dir()), busy)
    alone, fair = rows[0]["seconds"], fair_share(os.cpu_count() or 1, busy)
    out.line(f"demo under load: the home page's demo with the page open in Chromium, a fresh `make run` server and "
             f"workspace per case, {os.cpu_count()} CPU cores; fair share (cores + busy) / cores = {fair:.2f}x")
    out.table([dict(row, seconds=f"{row['seconds']:.1f}", x_alone=f"{row['seconds'] / alone:.2f}x",
                    within_goal="" if not row["busy_processes"] else
                    ("met" if row["seconds"] / alone <= GOAL * fair else "NOT met")) for row in rows])
    out.line(f"goal: beside busy processes within {GOAL}x the fair share ({GOAL * fair:.2f}x its time alone)")
    out.save(json_path)
    return 0


def run_soak(args) -> int:
    """The soak run; prints its jobs, worker deaths and memory, and whether every goal held (exit 1 if not)."""
    from tanas_core.bench.soak import bench_soak

    if args.workers < 1 or args.rounds < 1:
        raise TanasError(f"--workers and --rounds must be at least 1, got {args.workers} and {args.rounds}")
    archs = parse_archs(args.archs) if args.archs else None
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="tanas-soak-")) / "workspace"
    out = Transcript("soak")
    with ProgressPrinter() as printer:
        result = bench_soak(root, args.suite, args.preset, archs, args.workers, args.rounds, printer.on_progress)
    out.line(f"soak: {result['rounds']} round(s), one more seed each: suite {result['suite']}, preset "
             f"{result['preset']}, zoo of {', '.join(result['archs'])} with "
             f"{result['workers']} worker processes, then a validation report and a FUSE search at once (the app's "
             f"job runner, this process), while a second process submits a zoo and a distances job; "
             f"{result['seconds'] / 60:.1f} min, {os.cpu_count()} CPU cores; workspace {root}")
    out.table(result["jobs"])
    parent, artifacts = result["parent"], result["artifacts"]
    slope = parent["slope_mb_per_round"]
    out.table([dict(figure="jobs done", value=f"{sum(j['status'] == 'done' for j in result['jobs'])} of "
                                              f"{len(result['jobs'])}"),
               dict(figure="worker deaths", value=len(result["deaths"])),
               dict(figure="retries", value=result["retries"]),
               dict(figure="worker peak RSS per kind of work, MiB",
                    value=", ".join(f"{kind} {mb:,.0f}" for kind, mb in result["worker_peaks_mb"].items()) or "-"),
               dict(figure="parent RSS peak while working / after the run, MiB",
                    value=f"{parent['peak_mb']:,.0f} / {parent['final_mb']:,.0f}"),
               dict(figure="parent RSS after each round, MiB",
                    value=", ".join(f"{mb:,.0f}" for mb in parent["after_round_mb"])),
               dict(figure="parent RSS slope over the rounds from the 2nd, MiB per round",
                    value="- (needs 3 rounds)" if slope is None else f"{slope:+.1f}"),
               dict(figure="artifacts verified (sha256) / bad", value=f"{artifacts['checked']} / "
                                                                     f"{len(artifacts['bad'])}")])
    for death in result["deaths"]:
        out.line(f"death: {death['item']}: {death['cause']}, {death.get('rss_mb')} MiB (attempt {death['attempt']})")
    held = (all(j["status"] == "done" for j in result["jobs"]) and not result["deaths"] and not artifacts["bad"])
    out.line("goals: every job done, 0 worker deaths, 0 bad artifacts: " + ("met" if held else "NOT met"))
    out.save(args.json)
    return 0 if held else 1
