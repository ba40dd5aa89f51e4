"""``tasks list`` / ``tasks add``: the built-in suites and the workspace's custom tasks."""
from __future__ import annotations

import json
from pathlib import Path

from tanas_core.cli.common import workspace
from tanas_core.data.suites import ALL_SUITE_NAMES, CUSTOM_SUITE, SUITE_NAMES, resolve_suite, suite_availability
from tanas_core.data.tasks import Task, check_task_data
from tanas_core.errors import TanasError
from tanas_core.requests import ZooRequest
from tanas_core.training.trainer import get_preset

ADD_EXAMPLE = 'example: --json \'{"name": "fives", "dataset": "mnist", "groups": [["5"]], "other": true}\''


def register(commands) -> None:
    """Add the ``tasks`` group to ``commands``."""
    tasks = commands.add_parser("tasks", help="task suites and custom tasks").add_subparsers(dest="action",
                                                                                            required=True)
    listing = tasks.add_parser("list", help="the suites' tasks (or one suite's)")
    listing.add_argument("--suite", choices=list(ALL_SUITE_NAMES))
    listing.set_defaults(func=run_list)
    add = tasks.add_parser("add", help="save a custom task from JSON", description=ADD_EXAMPLE)
    add.add_argument("--json", required=True, help="task JSON, or a file holding it")
    add.add_argument("--replace", action="store_true",
                     help="replace a saved task of the same name (deletes the networks trained on its old "
                          "definition)")
    add.set_defaults(func=run_add)


def run_list(args) -> int:
    """Print each suite's tasks (custom: the workspace's)."""
    space = workspace(args)
    for name in [args.suite] if args.suite else list(SUITE_NAMES) + [CUSTOM_SUITE]:
        if name == CUSTOM_SUITE:
            tasks = space.load_tasks()
            print(f"[{CUSTOM_SUITE}] custom tasks saved in the workspace: {len(tasks)}")
            _print_tasks(tasks)
            continue
        available, reason = suite_availability(name)
        try:
            suite = resolve_suite(name, space)
        except TanasError as error:  # quickdraw's class names come from its data
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


def run_add(args) -> int:
    """Validate the task JSON, prove every output has images (as the Tasks page does), save it."""
    try:
        payload = json.loads(Path(args.json).read_text() if Path(args.json).is_file() else args.json)
    except json.JSONDecodeError as error:
        raise TanasError(f"--json is neither a file nor valid JSON ({error.msg} at position {error.pos})") from error
    task = Task.from_dict(payload)
    check_task_data(task, get_preset(ZooRequest.default("preset")).sizes)
    removed = workspace(args).save_task(task, replace=args.replace)
    print(f"saved custom task {task.name!r} ({task.num_outputs} outputs: {', '.join(task.output_names)})")
    if removed:
        print(f"removed {len(removed)} network(s) trained on its old definition")
    return 0
