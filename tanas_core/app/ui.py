"""Streamlit building blocks shared by the pages: the page header, the workspace and job runner, user errors, job
panels, the background dataset check. The figures are in ``figures`` (no Streamlit there).

View code only: every number shown comes from ``tanas_core``'s functions or the workspace store. A page builds one
request object from its widgets (``requests``), validates it and hands it to ``submit``, both inside ``attempt`` (its
errors stay on screen until the next click).
"""
from __future__ import annotations

import atexit
import contextlib
import re
import threading
import time
from typing import Callable

import pandas as pd
import streamlit as st

from tanas_core.errors import TanasError
from tanas_core.jobs.kinds import JOB_KINDS
from tanas_core.jobs.runner import JobRunner, clock, get_job, list_jobs
from tanas_core.registry import PRESETS
from tanas_core.requests import Request
from tanas_core.workspace.context import RunSettings
from tanas_core.workspace.store import Workspace

APP_TITLE = "TA-NAS Studio"


def workspace() -> Workspace:
    """The workspace (``TANAS_HOME``); a clear ``st.error`` and a stopped page when it cannot be opened."""
    try:
        return Workspace()
    except TanasError as error:
        st.error(str(error))
        st.stop()


_STARTED = "started-job-message"


def page_header(title: str | None, caption: str | None = None, backend: bool = True) -> Workspace:
    """Every page's top: page config, title, caption (``title=None``: the page drew them itself), the workspace and
    (``backend``) the sidebar's compute-backend selector. Returns the workspace."""
    if title is not None:
        st.set_page_config(page_title=f"{title} · {APP_TITLE}", layout="wide")
        st.title(title)
    if caption:
        st.caption(caption)
    st.session_state[_LABELS] = {}  # this page's inputs register their labels as they are drawn
    space = workspace()
    if backend:
        backend_settings()
    started = st.session_state.pop(_STARTED, None)  # a job ``submit`` launched just before this rerun
    if started:
        st.toast(started)
    return space


@st.cache_resource
def _runner(root: str) -> JobRunner:
    return JobRunner(Workspace(root), JOB_KINDS)


def runner(space: Workspace) -> JobRunner:
    """One job runner per workspace and server process (created once: it marks dead processes' jobs interrupted)."""
    return _runner(str(space.root))


_LABELS = "field_labels"  # session state: {request field: the label of its input on this page}


def label_field(name: str, label: str) -> None:
    """Remember that the input labelled ``label`` sets the request field ``name``, so an error about the field names
    the input the user sees (``on_screen``)."""
    st.session_state.setdefault(_LABELS, {})[name] = label


def on_screen(message: str) -> str:
    """``message`` with each request field the page has an input for named by that input's label: "Fisher settings:
    samples must be in 2..8192" becomes "Fisher settings: “M: images per Fisher” must be in 2..8192"."""
    for name, label in st.session_state.get(_LABELS, {}).items():
        message = re.sub(rf"\b{re.escape(name)}\b(?= must)", f"“{label}”", message)
    return message


@contextlib.contextmanager
def user_errors(stop: bool = True):
    """Show a library ``TanasError`` (bad input, missing prerequisite) as ``st.error`` with its message, no
    traceback; then stop the page (``stop``), or skip the rest of the ``with`` block and go on rendering. Any other
    exception is a bug and keeps its traceback."""
    try:
        yield
    except TanasError as error:
        st.error(on_screen(str(error)))
        if stop:
            st.stop()


BACKEND_HELP = ("local: jobs run in this server's process. ray: zoo networks, Fisher matrices, distances and "
                "random-search candidates run as Ray tasks (FUSE itself runs here); results are written to this "
                "workspace by the server.")


def backend_settings() -> None:
    """The sidebar's compute-backend choice, kept for the whole browser session across pages (``run_settings``
    reads it)."""
    choice = st.session_state.setdefault("backend_choice", {"backend": "local", "ray_address": ""})
    with st.sidebar:
        st.markdown("**Compute backend**")
        backend = st.radio("Run jobs on", ["local", "ray"], index=["local", "ray"].index(choice["backend"]),
                           horizontal=True, help=BACKEND_HELP)
        address = choice["ray_address"]
        if backend == "ray":
            address = st.text_input("Ray address", value=address, placeholder="empty: start a local Ray",
                                    help="a running cluster, e.g. ray://head-node:10001 (every node needs this "
                                         "project's requirements and the datasets)")
    st.session_state["backend_choice"] = {"backend": backend, "ray_address": address.strip()}


def run_settings() -> RunSettings:
    """The session's ``RunSettings`` (backend and Ray address from the sidebar; device chosen by each job)."""
    choice = st.session_state.get("backend_choice", {"backend": "local", "ray_address": ""})
    return RunSettings(backend=choice["backend"], ray_address=choice["ray_address"] or None)


def submit(space: Workspace, kind: str, request: Request) -> None:
    """Launch a background job of ``kind`` for ``request`` on the session's backend (or attach to the same request
    already running, started from another tab), remember it in the session and rerun the page, which then says which
    of the two happened. Raises ``TanasError`` when the request is refused (call it inside
    ``attempt``).

    The rerun is what makes the page follow the job: a job panel drawn above the button was drawn before the job
    existed, so without it a page whose button sits below its panel showed "no jobs" and never refreshed."""
    running = {job.id for job in list_jobs(space, kind, 200) if job.active}
    job_id = runner(space).submit(kind, request, run_settings())
    st.session_state[f"last_{kind}_job"] = job_id
    st.session_state[_STARTED] = (
        f"The same {kind} was already running (started from another tab or session): attached to job {job_id}, "
        "nothing new started" if job_id in running else f"Started {kind} job {job_id}")
    st.rerun()


def attempt(key: str, pressed: bool, action: Callable[[], object]) -> None:
    """Run a button's ``action`` when ``pressed``. The ``TanasError`` it raises (bad input, a refused job, a cost
    that needs confirming) is shown as ``st.error`` and stays on screen on the reruns that follow, until the next
    press: a live fragment's full rerun (a job or a measurement finishing) would otherwise wipe it a moment after
    the click. ``key`` names the button (one remembered message per button and session)."""
    remembered = f"attempt-error:{key}"
    if pressed:
        st.session_state.pop(remembered, None)
        try:
            action()
        except TanasError as error:
            st.session_state[remembered] = on_screen(str(error))
    if remembered in st.session_state:
        st.error(st.session_state[remembered])


def live_fragment(render: Callable[[], bool], active: bool, every: float = 1.0) -> None:
    """Run ``render`` (which returns whether what it shows is still running) as a fragment that refreshes every
    ``every`` seconds only while ``active``: an idle page costs nothing. When the work it follows ends, one full
    rerun shows the results and stops the polling."""
    @st.fragment(run_every=every if active else None)
    def fragment() -> None:
        if not render() and active:
            st.rerun()

    fragment()


def job_panel(space: Workspace, kinds: str | tuple[str, ...], title: str = "Jobs", limit: int = 5) -> None:
    """The recent jobs of ``kinds`` with progress bars, errors and cancel / relaunch buttons, refreshed every second
    while one is active (and not at all otherwise)."""
    label = kinds if isinstance(kinds, str) else " / ".join(kinds)

    def panel() -> bool:
        jobs = list_jobs(space, kinds, limit)
        if not jobs:
            st.caption(f"No {label} jobs yet.")
            return False
        st.markdown(f"**{title}**")
        for job in jobs:
            render_job(space, job.id)
        return any(job.active for job in jobs)

    live_fragment(panel, any(job.active for job in list_jobs(space, kinds, limit)))


def render_job(space: Workspace, job_id: str) -> None:
    """One job: status, progress bar, message, error, and the buttons that make sense for its state."""
    job = get_job(space, job_id)
    left = job.remaining()
    timing = f"elapsed {clock(job.elapsed())}" + (f", about {clock(left)} left" if left is not None else "")
    label = f"`{job.id}` · {job.kind} · {job.status} · {timing}" + (" · on Ray" if job.on_ray else "")
    if job.active:
        st.progress(job.progress, text=f"{label} · {job.message}")
        if st.button("Cancel", key=f"cancel-{job.id}"):
            runner(space).cancel(job.id)
    elif job.status == "done":
        st.success(f"{label} · finished")
    elif job.status == "failed":
        st.error(f"{label} · {job.error.splitlines()[0] if job.error else 'failed'}")
    else:
        st.warning(f"{label} · {job.message}")
        if job.status == "interrupted":
            attempt(f"relaunch-{job.id}", st.button("Relaunch", key=f"relaunch-{job.id}"),
                    lambda: runner(space).relaunch(job.id))


_BACKGROUND_THREADS: list[threading.Thread] = []


@atexit.register
def _join_background_threads() -> None:
    """At exit, let background work finish: a thread torn down in the middle of torch work aborts the whole process
    ("terminate called without an active exception"). Each piece is bounded (a dataset check, a measured step)."""
    for thread in _BACKGROUND_THREADS:
        thread.join(timeout=300)


@st.cache_resource(ttl=300, show_spinner=False)
def _background(key: str, _function: Callable[[], object]) -> dict:
    state = {"value": None, "error": None, "done": False}

    def work():
        try:
            state["value"] = _function()
        except Exception as error:  # shown by the page that asked
            state["error"] = f"{type(error).__name__}: {error}"
        state["done"] = True

    thread = threading.Thread(target=work, daemon=True, name=f"tanas-background-{key}")
    _BACKGROUND_THREADS[:] = [t for t in _BACKGROUND_THREADS if t.is_alive()] + [thread]
    thread.start()
    return state


def background_value(key: str, function: Callable[[], object]) -> dict:
    """Compute ``function()`` once per ``key`` (for 5 minutes) in a thread, so a page renders at once:
    ``{"value", "error", "done"}``; a fragment polls it until ``done``."""
    return _background(key, function)


def dataset_check() -> dict:
    """The background check of every dataset in the data directory (``background_value`` state, rows in ``value``)."""
    from tanas_core.data.datasets import check_datasets, default_data_dir

    data_dir = str(default_data_dir())
    return background_value(f"datasets:{data_dir}", lambda: check_datasets(data_dir, download=False))


def dataset_rows() -> list[dict]:
    """``check_datasets`` rows, waiting (with a spinner) for the shared background check on a first visit."""
    check = dataset_check()
    if not check["done"]:
        with st.spinner("Checking the datasets..."):
            while not check["done"]:
                time.sleep(0.1)
    if check["error"]:
        st.error(check["error"])
        st.stop()
    return check["value"]


def suite_index(space: Workspace, names: list[str]) -> int:
    """Index in ``names`` of the suite of the newest stored distance matrices (so a page opens on what the user
    computed last, e.g. the demo's suite); 0 when there is none."""
    newest = space.list_results("distances")
    suite = newest[0]["suite"] if newest else None
    return names.index(suite) if suite in names else 0


def restored(page: str, name: str, default):
    """The value of ``name`` that ``page``'s URL carried when this session first drew the page (a reload or a shared
    link), parsed like ``default``, else ``default``. The same value on every rerun of the session, so a widget
    built from it keeps its identity (and the user's edits)."""
    snapshot = st.session_state.setdefault(f"restored:{page}", {key: st.query_params[key] for key in st.query_params})
    text = snapshot.get(name)
    if text is None:
        return default
    try:
        if isinstance(default, bool):
            return text == "True"
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
        if isinstance(default, (list, tuple)):
            return [part for part in text.split(",") if part]
    except ValueError:
        return default
    return text


def remember(**values) -> None:
    """Write the page's choices into its URL (lists comma-separated), so a reload or the link reopens the same form."""
    st.query_params.update({name: ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
                            for name, value in values.items()})


def number_input(container, label: str, request_type: type, name: str, value=None, **kwargs):
    """A number input for the field ``name`` of ``request_type``: ``value`` (or the type's default) as the value and
    its range (the type's ``LIMITS``) in the help, but not enforced by the browser, which would silently refuse a
    typed value: an out-of-range value reaches the request, whose validation names the allowed range in an
    ``st.error`` (with this input's label, ``on_screen``)."""
    label_field(name, label)
    low, high = request_type.limits(name)
    help_text = f"allowed: {low:g} to {high:g}" + (f". {kwargs.pop('help')}" if "help" in kwargs else "")
    value = request_type.default(name) if value is None else value
    return container.number_input(label, value=value, help=help_text, **kwargs)


def preset_help() -> str:
    """Every training preset's description, for a preset select box's help: the box shows the name alone (a
    description would be cut off on a 1366 px screen)."""
    return "; ".join(f"**{name}**: {preset.description}" for name, preset in PRESETS.items())


def index_of(options: list, value) -> int:
    """Position of ``value`` (typically a request's default) in a selectbox's ``options``; 0 when absent."""
    return options.index(value) if value in options else 0


def download_csv(frame: pd.DataFrame, name: str, label: str = "Download CSV") -> None:
    """A download button for ``frame`` as CSV."""
    st.download_button(label, frame.to_csv(index=True).encode(), file_name=name, mime="text/csv", key=f"dl-{name}")
