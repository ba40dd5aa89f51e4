"""The docs agree with the project: every relative link (and its anchor) resolves, and every default the docs state
for a command-line option or the default row is the one the code uses."""
from __future__ import annotations

import argparse
import re

import pytest

from conftest import REPO
from tanas_core.cli import build_parser
from tanas_core.distances.validation import row_name
from tanas_core.requests import DistanceRequest

pytestmark = pytest.mark.unit

DOCS = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped (letters, digits, ``-`` and ``_`` kept), spaces
    as hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    return {_slug(line.lstrip("#")) for line in text.splitlines() if line.startswith("#")}


def test_every_relative_link_of_the_docs_resolves_to_a_file_and_heading():
    broken = []
    for page in DOCS:
        for target in LINK.findall(page.read_text()):
            if re.match(r"^[a-z]+:", target):  # https:, mailto:
                continue
            name, _, anchor = target.partition("#")
            path = (page.parent / name).resolve() if name else page
            if not path.exists():
                broken.append(f"{page.relative_to(REPO)}: {target} (no such file)")
            elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
                broken.append(f"{page.relative_to(REPO)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


def _option_defaults(parser, out: dict) -> dict:
    """``{--option: {default as the CLI states it}}`` over every command (help's "(default: X)" and argparse's)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _option_defaults(sub, out)
            continue
        for option in action.option_strings:
            values = out.setdefault(option, set())
            stated = re.search(r"\(default: ([^;)]*)", action.help or "")
            if stated:
                values.add(stated.group(1).strip())
            if action.default not in (None, argparse.SUPPRESS, False):
                values.add(str(action.default))
    return out


def test_every_option_default_the_docs_state_is_the_clis():
    """"`--samples` (default 800)" in a page must be what `--help` says; prose defaults ("both") are not compared."""
    defaults = _option_defaults(build_parser(), {})
    stated = re.compile(r"`(--[a-z0-9-]+)(?: [A-Za-z_]+)?`,?\s*\(defaults?:? `?([\w.,-]*\w)`?[;:),]")
    wrong, checked = [], 0
    for page in DOCS:
        for option, value in stated.findall(page.read_text()):
            if page.name == "CHANGELOG.md":
                continue  # history: what a default was when it changed
            checked += 1
            if option not in defaults:
                wrong.append(f"{page.name}: {option} is not an option of any command")
            elif value not in defaults[option]:
                wrong.append(f"{page.name}: {option} default {value}, the CLI says {sorted(defaults[option])}")
    assert checked >= 5 and not wrong, "\n".join(wrong)


def test_the_docs_name_the_default_row_the_code_uses():
    default = row_name(DistanceRequest.default("view"), DistanceRequest.default("metric"))
    stated = [(page.name, row) for page in DOCS if page.name != "CHANGELOG.md"
              for row in re.findall(r"default (?:is|row is|row,?) `([a-z]+:[a-z-]+|[a-z-]+)`", page.read_text())]
    assert stated and all(row == default for _, row in stated), (default, stated)
