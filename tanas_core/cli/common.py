"""Shared options and printers of the command groups.

Options that feed a request default to ``None``: ``Request.from_dict`` treats ``None`` as "use the request's
default", so a default lives in one place (``tanas_core/requests.py``) and the help texts only quote it.
"""
from __future__ import annotations

import argparse
import dataclasses

import pandas as pd

from tanas_core.data.suites import ALL_SUITE_NAMES
from tanas_core.errors import TanasError
from tanas_core.requests import (
    HEADS,
    METRICS,
    REFERENCES,
    VIEWS,
    FisherConfig,
    MeasurementSettings,
    Request,
    SearchBudget,
)
from tanas_core.search.fuse import decision_text
from tanas_core.training.trainer import PRESETS
from tanas_core.workspace.backends import BACKENDS
from tanas_core.workspace.context import RunContext, RunSettings
from tanas_core.workspace.store import Workspace


def _shown(value) -> str:
    if isinstance(value, tuple):
        return ",".join(value) if value else "all"
    return f"{value:g}" if isinstance(value, float) else str(value)


def default_help(text: str, request_type: type[Request], name: str) -> str:
    """``text`` followed by the request's default for field ``name`` (the only place that default is written)."""
    return f"{text} (default: {_shown(request_type.default(name))})".lstrip()


def range_help(text: str, request_type: type[Request], name: str) -> str:
    """``text`` with the request's default and inclusive range for field ``name``."""
    low, high = request_type.limits(name)
    return f"{text} (default: {_shown(request_type.default(name))}; {_shown(low)}..{_shown(high)})"


def workspace(args) -> Workspace:
    """The workspace of ``--workspace`` (``None``: ``$TANAS_HOME`` or ``~/.tanas``)."""
    return Workspace(args.workspace)


# ---------------------------------------------------------------------------------------------- run settings

def run_options(sub: argparse.ArgumentParser, backend: bool = True) -> None:
    """``--device`` and, for commands with fan-out work, ``--backend`` / ``--ray-address``."""
    sub.add_argument("--device", default=None, help="auto, cpu, cuda or mps (default: auto)")
    if not backend:
        return
    sub.add_argument("--backend", default=None, choices=BACKENDS,
                     help="where networks, Fishers and random-search candidates run: here (default: local) or as "
                          "Ray tasks")
    sub.add_argument("--ray-address", default=None,
                     help="a running Ray cluster (e.g. ray://head:10001); default: start a local Ray")


def run_settings(args) -> RunSettings:
    """``--backend`` / ``--ray-address`` / ``--device`` as ``RunSettings`` (its defaults for missing ones)."""
    return RunSettings.from_dict(dict(backend=getattr(args, "backend", None),
                                      ray_address=getattr(args, "ray_address", None),
                                      device=getattr(args, "device", None)))


def make_context(args, space: Workspace, **sinks) -> RunContext:
    """The run context of a command: its workspace, the ``run_settings`` and the printers' sinks."""
    return run_settings(args).context(space, **sinks)


# ---------------------------------------------------------------------------------------------- request options

def suite_option(sub: argparse.ArgumentParser, required: bool = True) -> None:
    """``--suite``: a built-in suite or ``custom``."""
    sub.add_argument("--suite", required=required, default=None, choices=list(ALL_SUITE_NAMES))


def preset_option(sub: argparse.ArgumentParser, request_type: type[Request]) -> None:
    """``--preset``, its default taken from ``request_type``."""
    sub.add_argument("--preset", default=None, choices=list(PRESETS),
                     help=default_help("training preset of the zoo networks", request_type, "preset"))


def budget_option(sub: argparse.ArgumentParser) -> None:
    """``--budget NAME=VALUE,...``, parsed into a ``SearchBudget`` by the command."""
    names = ", ".join(f.name for f in dataclasses.fields(SearchBudget))
    sub.add_argument("--budget", default=None,
                     help=f"search budget as NAME=VALUE pairs, comma-separated: {names} (unnamed ones keep their "
                          "defaults)")


def parse_budget(text: str | None) -> SearchBudget:
    """``"candidates=4,rounds=2,max_seconds=600"`` -> ``SearchBudget`` (via ``from_dict``: its limits apply)."""
    names = [f.name for f in dataclasses.fields(SearchBudget)]
    changes = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        name, _, value = item.partition("=")
        name = name.strip()
        if name not in names or not value.strip():
            raise TanasError(f"--budget: {item!r} is not NAME=VALUE with NAME one of {', '.join(names)}")
        changes[name] = value.strip()
    return SearchBudget.from_dict(changes)


def distance_options(sub: argparse.ArgumentParser, settings: type[MeasurementSettings], metric: bool = True) -> None:
    """The distance settings (``MeasurementSettings`` fields and the Fisher's; ``metric``: with ``--metric``,
    ``--view`` and ``--reference``, the ``DistanceSettings`` of one distance)."""
    sub.add_argument("--arch", "--archs", dest="arch", default=None,
                     help=default_help("architecture(s), comma-separated", settings, "archs"))
    if metric:
        sub.add_argument("--metric", default=None, choices=list(METRICS),
                         help=default_help("task distance metric", settings, "metric"))
        sub.add_argument("--view", default=None, choices=list(VIEWS),
                         help=default_help("tanas: the source's d[b, t] (task b's network on t's images); probe: one "
                                           "common probe network embeds every task (Task2Vec's design)", settings,
                                           "view"))
        sub.add_argument("--reference", default=None, choices=list(REFERENCES),
                         help=default_help("the twins r[t] compares with: view (the view's own: TA-NAS retrained, "
                                           "probe redraw), redraw (the same network on other draws of t's data) or "
                                           "retrained (t's network retrained from the same initial weights)",
                                           settings, "reference"))
    sub.add_argument("--seeds", type=int, default=None, help=range_help("K: networks of seeds 0..K-1", settings,
                                                                        "seeds"))
    sub.add_argument("--sigma", type=float, default=None,
                     help=default_help("sigma of the log-det distance", settings, "sigma"))
    sub.add_argument("--samples", type=int, default=None,
                     help=range_help("M: held-out probe images of the target per Fisher", FisherConfig, "samples"))
    sub.add_argument("--head-samples", type=int, default=None,
                     help=range_help("training images the refitted head is fitted on", FisherConfig, "head_samples"))
    sub.add_argument("--replicates", type=int, default=None,
                     help=range_help("replicates per task and seed, the reference r[t] (TA-NAS view: same-"
                                     "initialisation networks; probe view: other draws of the task's data)",
                                     settings, "replicates"))
    sub.add_argument("--bootstrap", type=int, default=None,
                     help=range_help("resamples of the probe images (intervals, rank frequency, ties)", settings,
                                     "bootstrap"))
    sub.add_argument("--head", default=None, choices=list(HEADS),
                     help=default_help("refit a linear head on the target (empirical Fisher) or keep the baseline's "
                                       "head (model Fisher)", FisherConfig, "head"))
    sub.add_argument("--head-weight-decay", type=float, default=None,
                     help=range_help("L2 penalty of the refitted head's fit", FisherConfig, "head_weight_decay"))
    sub.add_argument("--projection-dim", type=int, default=None,
                     help="CountSketch width for frechet-full when M x n does not fit in memory (default: exact)")
    sub.add_argument("--workers", type=int, default=None,
                     help=range_help("local processes for training missing zoo networks and computing Fishers",
                                     settings, "workers"))


def measurement_settings(args) -> dict:
    """The ``MeasurementSettings`` fields given on the command line (``None`` for the ones left to defaults)."""
    fisher = dict(samples=args.samples, head_samples=args.head_samples, head=args.head,
                  projection_dim=args.projection_dim, head_weight_decay=args.head_weight_decay)
    return dict(archs=args.arch, seeds=args.seeds, sigma=args.sigma, workers=args.workers,
                replicates=args.replicates, bootstrap=args.bootstrap,
                fisher={k: v for k, v in fisher.items() if v is not None})


def distance_settings(args) -> dict:
    """The ``DistanceSettings`` fields given on the command line (``None`` for the ones left to defaults)."""
    return dict(measurement_settings(args), metric=getattr(args, "metric", None), view=getattr(args, "view", None),
                reference=getattr(args, "reference", None))


def closest_settings(args) -> dict:
    """``ClosestSettings`` fields of search / compare: the distance settings, ``--top`` and ``--baselines``."""
    return dict(distance_settings(args), top=args.top, baselines=args.baselines)


# ---------------------------------------------------------------------------------------------- printers

def json_option(parser: argparse.ArgumentParser) -> None:
    """A benchmark's ``--json FILE`` option (its transcript, rendered by ``bench show FILE``)."""
    parser.add_argument("--json", default=None,
                        help="also write what the benchmark prints to this JSON file (`bench show FILE` renders it)")


def print_table(rows: list[dict], columns: list[str] | None = None) -> None:
    """Rows as a plain text table (``(none)`` when empty)."""
    if not rows:
        print("(none)")
        return
    frame = pd.DataFrame(rows)
    if columns:
        frame = frame[columns]
    print(frame.to_string(index=False))


_NOTES = {"reused": "reused", "trained": "trained", "rebuilt-corrupt": "checkpoint was CORRUPT: retrained"}


class ProgressPrinter:
    """A tqdm bar of the run's overall fraction (``on_progress``: its position and text, so the bar and its time
    estimate follow every phase, not only the zoo's), with one line per finished zoo network (``on_event``). Use as
    a context manager so the bar is closed on errors too."""

    def __init__(self, prefix: str = ""):
        from tqdm import tqdm

        self.prefix = prefix
        self.bar = tqdm(total=100, dynamic_ncols=True, bar_format="{l_bar}{bar}| {elapsed}<{remaining}")

    def on_progress(self, message: str, fraction: float) -> None:
        self.bar.n = round(100 * min(max(fraction, 0.0), 1.0), 1)
        self.bar.set_description(f"{self.prefix}{message}"[:100])

    def on_event(self, event) -> None:
        if not hasattr(event, "status") or not hasattr(event, "total"):
            return  # search events are not about zoo networks
        if event.status in _NOTES and event.record is not None:
            r = event.record
            label = f"{event.task} {event.arch} s{event.seed}"
            self.bar.write(f"{label:<46} {_NOTES[event.status]:<8} test acc {r.test_accuracy:.4f}  "
                           f"{r.params:>9,} params  {r.seconds:6.1f} s  {r.device}")

    def sinks(self) -> dict:
        """``on_progress`` / ``on_event`` keyword arguments for ``RunContext``."""
        return dict(on_progress=self.on_progress, on_event=self.on_event)

    def __enter__(self) -> ProgressPrinter:
        return self

    def __exit__(self, *exc) -> None:
        self.bar.close()


class SearchPrinter:
    """Plain lines for searches (their logs are long, so no bar): one line per new phase of the run, the FUSE
    rounds' alpha steps, random-search candidates, and each zoo network a search had to train."""

    def __init__(self):
        self.last_phase = None

    def on_progress(self, message: str, fraction: float) -> None:
        # Step messages change every step; print a line only when the phase (all but the last part) changes.
        phase = message.rsplit(" › ", 1)[0] if " › " in message else message
        if phase != self.last_phase:
            self.last_phase = phase
            print(f"[{message}] {100 * fraction:.0f}%", flush=True)

    def on_event(self, event) -> None:
        if not isinstance(event, dict):
            if getattr(event, "status", None) in _NOTES and getattr(event, "record", None) is not None:
                print(f"  zoo network {event.task} {event.arch} s{event.seed}: {_NOTES[event.status]}, test acc "
                      f"{event.record.test_accuracy:.4f}", flush=True)
            return
        kind = event.get("type")
        if kind == "alpha" and (event["step"] % 5 == 0 or event["step"] == 1):
            weights = " ".join(f"{w:.3f}" for w in event["weights"])
            validation = "warm-up" if event["val_loss"] is None else f"val loss {event['val_loss']:.3f}"
            print(f"  round {event['round']} step {event['step']:>3}  softmax(alpha) [{weights}]  "
                  f"train loss {event['train_loss']:.3f}  {validation}  {event['elapsed']:6.1f} s", flush=True)
        elif kind == "round_done":
            print(f"  round {event['round']} done after {event['steps']} steps "
                  f"({'converged' if event['converged'] else 'step limit'}): winner {event['winner']}", flush=True)
            decision = event.get("decision")
            print(f"    {decision_text(decision, event['winner'], decision and decision['runner_up'])}", flush=True)
        elif kind == "candidate":
            print(f"  candidate {event['step']}: {event['candidates'][0]} val accuracy {event['val_accuracy']:.3f} "
                  f"({event['seconds']:.1f} s)", flush=True)

    def sinks(self) -> dict:
        """``on_progress`` / ``on_event`` keyword arguments for ``RunContext``."""
        return dict(on_progress=self.on_progress, on_event=self.on_event)
