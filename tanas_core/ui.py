"""Streamlit building blocks shared by the pages: the workspace and job runner, error display, job panels, figures.

View code only: every number shown comes from ``tanas_core``'s functions or the workspace store.
"""
from __future__ import annotations

import contextlib
import threading
import time
from typing import Callable

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from .jobs import JobRunner, get_job, list_jobs
from .store import Workspace


def workspace() -> Workspace:
    """The workspace (``TANAS_HOME``); a clear ``st.error`` and a stopped page when it cannot be opened."""
    try:
        return Workspace()
    except ValueError as error:
        st.error(str(error))
        st.stop()


@st.cache_resource
def _runner(root: str) -> JobRunner:
    return JobRunner(Workspace(root))


def runner(space: Workspace) -> JobRunner:
    """One job runner per workspace and server process (created once: it marks dead processes' jobs interrupted)."""
    return _runner(str(space.root))


@contextlib.contextmanager
def user_errors():
    """Show a library ``ValueError`` as ``st.error`` with its message (no traceback) and stop the page."""
    try:
        yield
    except ValueError as error:
        st.error(str(error))
        st.stop()


@st.cache_resource(ttl=300, show_spinner=False)
def _background(key: str, _function: Callable[[], object]) -> dict:
    state = {"value": None, "error": None, "done": False}

    def work():
        try:
            state["value"] = _function()
        except Exception as error:  # shown by the page that asked
            state["error"] = f"{type(error).__name__}: {error}"
        state["done"] = True

    threading.Thread(target=work, daemon=True, name=f"tanas-background-{key}").start()
    return state


def background_value(key: str, function: Callable[[], object]) -> dict:
    """Compute ``function()`` once per ``key`` (for 5 minutes) in a thread, so a page renders at once:
    ``{"value", "error", "done"}``; a fragment polls it until ``done``."""
    return _background(key, function)


def dataset_check() -> dict:
    """The background check of every dataset in the data directory (``background_value`` state, rows in ``value``)."""
    from .data import check_datasets, default_data_dir

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


BACKEND_HELP = ("local: jobs run in this server's process. ray: zoo networks, Fisher matrices, distances and "
                "random-search candidates run as Ray tasks (FUSE itself runs here); results are written to this "
                "workspace by the server.")


def backend_settings() -> dict:
    """The sidebar's compute-backend choice, kept for the whole browser session across pages:
    ``{"backend": "local" | "ray", "ray_address": str | None}``. ``submit`` adds it to every job's parameters."""
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
    return {"backend": backend, "ray_address": address.strip() or None}


def submit(space: Workspace, kind: str, params: dict) -> str | None:
    """Launch a background job on the session's compute backend, remember it in the session, and say so;
    ``st.error`` for bad parameters."""
    choice = st.session_state.get("backend_choice", {"backend": "local", "ray_address": ""})
    params = dict(params, backend=choice["backend"], ray_address=choice["ray_address"] or None)
    try:
        job_id = runner(space).submit(kind, params)
    except ValueError as error:
        st.error(str(error))
        return None
    st.session_state[f"last_{kind}_job"] = job_id
    st.toast(f"Started {kind} job {job_id}")
    return job_id


def job_panel(space: Workspace, kind: str, title: str = "Jobs", limit: int = 5) -> None:
    """The recent jobs of ``kind`` with progress bars, errors and cancel / relaunch buttons, refreshed every second
    while one is active."""

    @st.fragment(run_every=1.0)
    def panel():
        jobs = list_jobs(space, kind, limit)
        if not jobs:
            st.caption(f"No {kind} jobs yet.")
            return
        st.markdown(f"**{title}**")
        for job in jobs:
            render_job(space, job.id)

    panel()


def render_job(space: Workspace, job_id: str) -> None:
    """One job: status, progress bar, message, error, and the buttons that make sense for its state."""
    job = get_job(space, job_id)
    label = f"`{job.id}` · {job.status}" + (" · on Ray" if job.params.get("backend") == "ray" else "")
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
        if job.status == "interrupted" and st.button("Relaunch", key=f"relaunch-{job.id}"):
            runner(space).relaunch(job.id)


def heatmap_figure(matrix: np.ndarray, tasks: list[str], title: str, closest: bool = True,
                   colorbar: str = "distance") -> go.Figure:
    """Heatmap of ``matrix [baselines, targets]`` with hover values; the closest baseline of each target column
    (off the diagonal) is marked with a star."""
    figure = go.Figure(go.Heatmap(z=np.asarray(matrix).tolist(), x=tasks, y=tasks, colorscale="Viridis", colorbar=dict(title=colorbar),
                                  hovertemplate="baseline %{y}<br>target %{x}<br>d = %{z:.4f}<extra></extra>"))
    if closest and len(tasks) > 1:
        masked = np.where(np.eye(len(tasks), dtype=bool), np.inf, matrix)
        rows = np.argmin(masked, axis=0)
        figure.add_trace(go.Scatter(x=tasks, y=[tasks[r] for r in rows], mode="markers", name="closest baseline",
                                    marker=dict(symbol="star", size=14, color="white",
                                                line=dict(color="black", width=1)),
                                    hovertemplate="closest baseline to %{x}: %{y}<extra></extra>"))
    figure.update_layout(title=title, xaxis_title="target t (column)", yaxis_title="baseline b (row)",
                         yaxis_autorange="reversed", height=520, margin=dict(l=10, r=10, t=50, b=10),
                         legend=dict(orientation="h", y=-0.25))
    return figure


def atlas_figure(coordinates: np.ndarray, tasks: list[str], datasets: list[str]) -> go.Figure:
    """Scatter of 2-D task coordinates, coloured by dataset."""
    frame = pd.DataFrame(dict(x=coordinates[:, 0], y=coordinates[:, 1], task=tasks, dataset=datasets))
    figure = go.Figure()
    for dataset, group in frame.groupby("dataset"):
        figure.add_trace(go.Scatter(x=group.x, y=group.y, mode="markers+text", text=group.task, name=dataset,
                                    textposition="top center", marker=dict(size=12)))
    figure.update_layout(title="Task atlas (classical MDS of the symmetrised mean distances)", height=460,
                         xaxis_title="MDS 1", yaxis_title="MDS 2", margin=dict(l=10, r=10, t=50, b=10))
    return figure


def alpha_figure(events: list[dict]) -> go.Figure:
    """Softmax weight of each candidate over the FUSE steps (one line per candidate of each round)."""
    figure = go.Figure()
    rows = [e for e in events if e.get("type") == "alpha"]
    offsets, total = {}, 0
    for event in rows:  # consecutive x across rounds
        offsets.setdefault(event["round"], total)
        total = max(total, offsets[event["round"]] + event["step"])
    for round_index in sorted(offsets):
        in_round = [e for e in rows if e["round"] == round_index]
        for c, candidate in enumerate(in_round[0]["candidates"]):
            figure.add_trace(go.Scatter(x=[offsets[round_index] + e["step"] for e in in_round],
                                        y=[e["weights"][c] for e in in_round], mode="lines",
                                        name=f"round {round_index}: {candidate}"))
    figure.update_layout(title="softmax(α) per candidate", xaxis_title="step", yaxis_title="weight",
                         yaxis_range=[0, 1], height=380, margin=dict(l=10, r=10, t=50, b=10))
    return figure


def curves_figure(events: list[dict]) -> go.Figure:
    """Training / validation loss and validation accuracy over steps (FUSE) or candidates (random search)."""
    figure = go.Figure()
    rows = [e for e in events if e.get("type") in ("alpha", "candidate")]
    x = list(range(1, len(rows) + 1))
    if rows and rows[0]["type"] == "alpha":
        figure.add_trace(go.Scatter(x=x, y=[e["train_loss"] for e in rows], name="train loss (c̄)"))
        figure.add_trace(go.Scatter(x=x, y=[e["val_loss"] for e in rows], name="val loss (c̄)"))
    figure.add_trace(go.Scatter(x=x, y=[e["val_accuracy"] for e in rows], name="val accuracy", yaxis="y2"))
    figure.update_layout(title="losses and validation accuracy", xaxis_title="update", height=380,
                         yaxis=dict(title="loss"), yaxis2=dict(title="accuracy", overlaying="y", side="right",
                                                               range=[0, 1]),
                         margin=dict(l=10, r=10, t=50, b=10))
    return figure


def download_csv(frame: pd.DataFrame, name: str, label: str = "Download CSV") -> None:
    st.download_button(label, frame.to_csv(index=True).encode(), file_name=name, mime="text/csv", key=f"dl-{name}")
