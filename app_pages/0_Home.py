"""TA-NAS Studio's home page: the method in three steps (each formula under its own heading), the demo, the datasets
and their sources, the workspace."""
from __future__ import annotations

import tempfile
from pathlib import Path

import streamlit as st

# Drawn before the library (and torch) is imported, so a first visit shows the page at once.
TITLE, INTRO = "TA-NAS Studio", ("Task-aware neural architecture search: compare tasks by the Fisher information of "
                                 "networks trained on them, search architectures only where related tasks found good "
                                 "ones.")
st.set_page_config(page_title=TITLE, layout="wide")
st.title(TITLE)
st.caption(INTRO)

import pandas as pd  # noqa: E402  (after the first paint, on purpose)

from tanas_core.app import ui  # noqa: E402
from tanas_core.data.datasets import default_data_dir  # noqa: E402
from tanas_core.distances.validation import latest_validation, row_name, verdict  # noqa: E402
from tanas_core.jobs.runner import list_jobs  # noqa: E402
from tanas_core.requests import DemoRequest  # noqa: E402
from tanas_core.training.zoo import zoo_table  # noqa: E402
from tanas_core.workspace.archive import export_workspace, import_workspace  # noqa: E402

workspace = ui.page_header(None)

st.image(str(Path(__file__).resolve().parents[1] / "assets" / "pipeline.svg"),
         caption="The pipeline, one tanas_core package per stage (blue: the zoo of learned tasks; red: task "
                 "similarity; green: architecture search)")

st.header("1. Task similarity")
st.markdown("Train an ε-approximation network per learned task. In the source's view (TA-NAS), for a baseline task b "
            "and a target task t, F[b, t] is the Fisher information of b's network on t's images (F[t, t]: t's own "
            "network), and the two distances below compare F[b, t] with F[t, t], so d[b, t] ≠ d[t, b]. The demo "
            "and the Distances page start in the common-probe view (Task2Vec's design): one probe network embeds "
            "every task, each Fisher on its own task's images, so there d[b, t] = d[t, b].")
st.markdown("**Log-determinant distance** (equation 5; n, m: the parameters of N_b and N_t, σ: a small constant)")
st.latex(r"d[b,t]=\left|\frac{1}{n}\log\det\left(F_{b,t}+\sigma^2 I\right)"
         r"-\frac{1}{m}\log\det\left(F_{t,t}+\sigma^2 I\right)\right|")
st.markdown("**Fréchet distance** (equation 7; equation 8 is its diagonal form)")
st.latex(r"d_f[b,t]=\frac{1}{\sqrt2}\,\mathrm{tr}\left(F_{b,t}+F_{t,t}-2\left(F_{b,t}F_{t,t}\right)^{1/2}\right)^{1/2}")
st.header("2. Related search space")
st.markdown("The closest learned task(s) define a small cell-based search space: their operations, skeleton and "
            "mutations of their best cells, instead of every cell of the standard space.")
st.header("3. FUSE")
st.markdown("Mix the candidates' outputs with softmax(α) weights, train the weights and α alternately, keep the "
            "candidate of the largest α: the best of the space without training each candidate fully.")
st.latex(r"\bar c(X)=\sum_{c\in C}\frac{e^{\alpha_c}}{\sum_{c'\in C}e^{\alpha_{c'}}}\,c(X)")


def show_demo_verdict(request: DemoRequest) -> None:
    """What the demo's own validation report says about its distances (the Distances page opens with it)."""
    validation = request.validation()
    row = row_name(validation.views[0], validation.metrics[0])
    report = latest_validation(workspace, request.suite, request.preset, validation.fisher, row)
    answer, why = verdict(report, row)
    text = (f"**Do the demo's distances ({row}) separate its tasks from noise? {answer}** — {why} "
            f"({validation.seeds} seeds of {', '.join(validation.archs)}; the Distances page shows the report).")
    (st.success if answer == "yes" else st.warning if answer == "no" else st.info)(text)


st.header("Run the demo")
demo = DemoRequest()
st.markdown(f"Trains the demo zoo for the `{demo.suite}` suite ({', '.join(demo.archs)}, {demo.zoo().seeds} seed, "
            f"`{demo.preset}` preset), computes its {demo.distances().metric} distances and their verdict (do they "
            f"beat their noise? {demo.verdict_seeds} seeds, the view's own twins), and runs a short FUSE search "
            f"({demo.budget.candidates} candidates × {demo.budget.rounds} round(s)) for `{demo.target}` on the space "
            "of its closest task: a few minutes on a 2-core CPU, in the background (you can leave this page).")
ui.attempt("demo", st.button("Run the demo", type="primary"), lambda: ui.submit(workspace, "demo", demo))
ui.job_panel(workspace, "demo", "Demo runs", limit=3)
demo_runs = list_jobs(workspace, "demo", 1)
if demo_runs and demo_runs[0].status == "done":
    show_demo_verdict(DemoRequest.from_dict(demo_runs[0].request))
    links = st.columns(4)
    links[0].page_link("app_pages/2_Zoo.py", label="The zoo it trained", icon=":material/hub:")
    links[1].page_link("app_pages/3_Distances.py", label="Its distance heatmap", icon=":material/grid_on:")
    links[2].page_link("app_pages/4_Search.py", label="The FUSE search", icon=":material/search:")
    links[3].page_link("app_pages/5_Lesson.py", label="The lesson on its results", icon=":material/school:")


st.header("Datasets")
data_dir = str(default_data_dir())
st.caption(f"Data directory: `{data_dir}` (set `TANAS_DATA_DIR` to change it)")


def datasets_panel() -> bool:
    """The datasets table; ``True`` while the background check (seconds on a first visit) is still reading."""
    check = ui.dataset_check()
    if not check["done"]:
        st.caption("Checking the datasets...")
        return True
    if check["error"]:
        st.error(check["error"])
        return False
    rows = check["value"]
    # a pack by its file name in the data directory named above (its full path would not fit a laptop)
    st.dataframe(pd.DataFrame([{**{k: r[k] for k in ("dataset", "title", "available", "classes", "train", "test",
                                                     "image")}, "source": r["source"].replace(f"pack {data_dir}/", "")}
                               for r in rows]), hide_index=True, width="stretch")
    for row in rows:
        if not row["available"]:
            st.info(row["reason"])
    return False


ui.live_fragment(datasets_panel, not ui.dataset_check()["done"])

st.header("Workspace")
st.caption(f"`{workspace.root}` (set `TANAS_HOME` to change it)")


def workspace_counts() -> bool:
    """The workspace's counts; ``True`` while a job in it runs (from any tab, session or the command line of this
    machine), so the counts follow the job."""
    cols = st.columns(2)
    cols[0].metric("Trained networks", workspace.network_count())
    cols[1].metric("Custom tasks", len(workspace.load_tasks()))
    return any(job.active for job in list_jobs(workspace, limit=20))


polling_fast = any(job.active for job in list_jobs(workspace, limit=20))


# Every 2 s while a job runs, otherwise every 15 s to notice a job started from another tab or the command line:
# two count queries, the cheapest view that follows a job (the table below is redrawn once, when the state changes,
# by the rerun that also switches the pace and refreshes the demo's links).
@st.fragment(run_every=2.0 if polling_fast else 15.0)
def counts_fragment() -> None:
    if workspace_counts() != polling_fast:
        st.rerun()


counts_fragment()
networks = workspace.list_networks()
if networks:
    # the overview's columns (they fit a 1366 px screen); the Zoo page has every column
    overview = pd.DataFrame(zoo_table(networks))[["suite", "task", "arch", "seed", "preset", "test_accuracy",
                                                   "epsilon_ok"]]
    st.dataframe(overview, hide_index=True, width="stretch")
    st.caption("Validation accuracy, size, time, device and how training stopped: the Zoo page.")
else:
    st.write("No networks yet: press **Run the demo** above, use the Zoo page, or train from a terminal: "
             "`python -m tanas_core zoo train --suite ld8 --seeds 1 --preset demo`.")


def transfer_panel() -> None:
    """Export the workspace (or some suites) as one archive, and import one: prepare a lesson on a fast machine,
    show it on a classroom laptop."""
    with st.expander("Move results between machines: export / import the workspace"):
        left, right = st.columns(2)
        stored = sorted({record.suite for record in networks})
        chosen = left.multiselect("Suites to export", stored, default=stored,
                                  help="their networks, Fishers, distances, reports and searches, and every custom "
                                       "task; each file with its sha256, checked on import")
        if left.button("Prepare the archive", disabled=not chosen):
            with ui.user_errors(stop=False):
                st.session_state["export_archive"] = export_archive(chosen)
        prepared = st.session_state.get("export_archive")
        if prepared:
            left.download_button(f"Download {prepared['name']} ({prepared['size'] / 1e6:.1f} MB)", prepared["data"],
                                 file_name=prepared["name"], mime="application/zip")
        upload = right.file_uploader("Import an archive written by export", type=["zip"])
        if upload is not None and right.button("Import it"):
            with ui.user_errors(stop=False):
                added = import_archive(upload.getvalue())
                right.success("Imported: " + ", ".join(f"{count} {name}" for name, count in added.items())
                              + " added (what the workspace already held is kept).")


def export_archive(suites: list[str]) -> dict:
    """The archive of ``suites`` as bytes (written to a temporary file by ``export_workspace``)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"tanas-{'-'.join(suites)[:60]}.zip"
        export_workspace(workspace, path, suites)
        return dict(name=path.name, data=path.read_bytes(), size=path.stat().st_size)


def import_archive(data: bytes) -> dict:
    """Import uploaded archive bytes (checked in full before anything is added)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "upload.zip"
        path.write_bytes(data)
        return import_workspace(workspace, path)


transfer_panel()
