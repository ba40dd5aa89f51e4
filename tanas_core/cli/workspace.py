"""``workspace export FILE`` / ``workspace import FILE``: a workspace (or some of its suites) as one checked archive."""
from __future__ import annotations

from tanas_core.cli.common import workspace
from tanas_core.data.suites import ALL_SUITE_NAMES
from tanas_core.errors import TanasError
from tanas_core.workspace.archive import export_workspace, import_workspace


def register(commands) -> None:
    """Add the ``workspace`` group to ``commands``."""
    group = commands.add_parser("workspace", help="export / import a workspace as one archive").add_subparsers(
        dest="action", required=True)
    export = group.add_parser("export", help="write networks, Fishers, distances, reports and searches to FILE")
    export.add_argument("file", help="the archive to write (a zip of JSON and safetensors)")
    export.add_argument("--suites", default=None,
                        help="comma-separated suites to export (default: every suite in the workspace)")
    export.set_defaults(func=run_export)
    load = group.add_parser("import", help="check FILE in full, then add what it holds to the workspace")
    load.add_argument("file", help="an archive written by `workspace export`")
    load.set_defaults(func=run_import)


def run_export(args) -> int:
    """Export and say what went in."""
    suites = None
    if args.suites:
        suites = [name.strip() for name in args.suites.split(",") if name.strip()]
        unknown = [name for name in suites if name not in ALL_SUITE_NAMES]
        if unknown:
            raise TanasError(f"unknown suite(s) {', '.join(unknown)}: choose among {', '.join(ALL_SUITE_NAMES)}")
    counts = export_workspace(workspace(args), args.file, suites)
    print(f"wrote {args.file}: {counts['networks']} networks, {counts['results']} results (Fishers, distances, "
          f"reports, searches), {counts['files']} files, {counts['bytes'] / 1e6:.1f} MB")
    return 0


def run_import(args) -> int:
    """Import and say what was added (rows the workspace already held are kept)."""
    added = import_workspace(workspace(args), args.file)
    print(f"imported {args.file}: " + ", ".join(f"{count} {name}" for name, count in added.items())
          + " added (rows already in the workspace kept as they were)")
    return 0
