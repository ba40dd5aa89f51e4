"""Command line: ``python -m tanas_core <command>``.

Each command group is one module with ``register(subparsers)`` and its ``run_*`` handlers; commands that start an
operation parse their arguments into that operation's request (``ZooRequest``, ``DistanceRequest``,
``SearchRequest``, ``CompareRequest``, ``ZooSearchRequest``) with ``from_dict``, so every default and limit comes
from ``tanas_core/requests.py``, and build one ``RunContext`` from ``--device`` / ``--backend`` / ``--ray-address``.

A ``TanasError`` (bad input, missing data) becomes one ``error:`` line and exit code 2; a cancel (Ctrl-C) exits 130
and keeps what was finished; any other exception is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import sys

from tanas_core.cli import bench, data, distance, search, tasks, validate, workspace, zoo
from tanas_core.errors import Cancelled, TanasError
from tanas_core.requests import Request

GROUPS = (data, tasks, zoo, distance, validate, search, workspace, bench)


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command; each sets ``func`` (its handler) and, when it runs an operation, ``request``
    (``args -> Request``)."""
    parser = argparse.ArgumentParser(prog="python -m tanas_core", description="TA-NAS Studio command line")
    parser.add_argument("--workspace", help="workspace directory (default: $TANAS_HOME or ~/.tanas)")
    commands = parser.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.register(commands)
    return parser


def parse_request(argv: list[str]) -> Request:
    """The request a command line stands for (without running it); ``TanasError`` when it is invalid."""
    args = build_parser().parse_args(argv)
    if not hasattr(args, "request"):
        raise TanasError(f"`{' '.join(argv)}` does not run an operation with a request")
    return args.request(args)


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns its exit code (0 done, 1 a check failed, 2 user error, 130 cancelled)."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except TanasError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (Cancelled, KeyboardInterrupt):
        print("interrupted: finished work (networks, Fishers, searches) is kept in the workspace", file=sys.stderr)
        return 130
