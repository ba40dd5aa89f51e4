"""What a benchmark printed, kept as data: lines of text and tables, in order.

A benchmark prints through a ``Transcript``; with ``--json FILE`` the same blocks are written to FILE, and
``bench show FILE`` renders them as Markdown for a page under ``docs/results/``. The page's tables are therefore
generated from the committed JSON, never typed (``tests/test_results.py`` checks that they agree).
"""
from __future__ import annotations

import json
import os
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

KIND = "bench transcript"


def _plain(value):
    """A JSON-safe cell: numpy scalars as Python numbers, anything else as text."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "item"):
        return value.item()
    return str(value)


class Transcript:
    """Print a benchmark's output and keep it: ``line(text)`` and ``table(rows)``, then ``save(path)``."""

    def __init__(self, bench: str, argv: list[str] | None = None):
        self.data = dict(kind=KIND, bench=bench, command=" ".join(["python -m tanas_core", *_without_json(
                             sys.argv[1:] if argv is None else argv)]),
                         date=datetime.now(timezone.utc).strftime("%Y-%m-%d"),
                         machine=f"{platform.machine()}, {os.cpu_count() or 1} CPU cores, "
                                 f"Python {platform.python_version()}",
                         blocks=[])

    def line(self, text: str = "") -> None:
        """Print ``text`` and keep it as a paragraph line."""
        print(text)
        self.data["blocks"].extend(dict(text=part) for part in text.split("\n"))

    def table(self, rows: list[dict]) -> None:
        """Print ``rows`` as a plain-text table and keep them (cells made JSON-safe)."""
        rows = [{str(k): _plain(v) for k, v in row.items()} for row in rows]
        print(pd.DataFrame(rows).to_string(index=False) if rows else "(none)")
        self.data["blocks"].append(dict(table=rows))

    def save(self, path: str | None) -> None:
        """Write the transcript to ``path`` as JSON (nothing when ``path`` is None)."""
        if path:
            Path(path).write_text(json.dumps(self.data, indent=1) + "\n")
            print(f"wrote {path}")


def _without_json(argv: list[str]) -> list[str]:
    """The command's arguments without ``--json FILE``: where the transcript went is not part of what was measured."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--json":
            skip = True
        elif not arg.startswith("--json="):
            out.append(arg)
    return out


def is_transcript(data) -> bool:
    """Whether ``data`` (parsed JSON) is a benchmark transcript."""
    return isinstance(data, dict) and data.get("kind") == KIND and isinstance(data.get("blocks"), list)


def _cell(value) -> str:
    return "" if value is None else str(value).replace("|", "\\|")


def transcript_markdown(data: dict, source: str | None = None) -> str:
    """A transcript as Markdown: a heading line naming the command, date and machine, then its lines (consecutive
    lines as one paragraph, each ending in a hard break) and tables, in the order the benchmark printed them."""
    if not is_transcript(data):
        raise ValueError("this file is not a benchmark transcript (written by `bench ... --json FILE`)")
    origin = f" (from `{source}`)" if source else ""
    out = [f"`{data['command']}` on {data['date']}, {data['machine']}{origin}:", ""]
    paragraph: list[str] = []

    def flush():
        if paragraph:
            out.extend([line + ("\\" if i < len(paragraph) - 1 else "") for i, line in enumerate(paragraph)] + [""])
            paragraph.clear()

    for block in data["blocks"]:
        if "text" in block:
            if block["text"].strip():
                paragraph.append(block["text"].strip())
            else:
                flush()
            continue
        flush()
        rows = block["table"]
        if not rows:
            out.extend(["(none)", ""])
            continue
        columns = list(dict.fromkeys(key for row in rows for key in row))
        out.append("| " + " | ".join(columns) + " |")
        out.append("| " + " | ".join("---" for _ in columns) + " |")
        out.extend("| " + " | ".join(_cell(row.get(c)) for c in columns) + " |" for row in rows)
        out.append("")
    flush()
    return "\n".join(out)
