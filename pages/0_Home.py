"""TA-NAS Studio's home page: the method in three steps (each formula under its own heading), the demo, the datasets
and their sources, the workspace."""
from __future__ import annotations

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
from tanas_core.jobs.runner import list_jobs  # noqa: E402
from tanas_core.requests import DemoRequest  # noqa: E402
from tanas_core.training.zoo import zoo_table  # noqa: E402

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


st.header("Run the demo")
demo = DemoRequest()
st.markdown(f"Trains the demo zoo for the `{demo.suite}` suite ({', '.join(demo.archs)}, {demo.zoo().seeds} seed, "
            f"`{demo.preset}` preset), computes its {demo.distances().metric} distances, and runs a short FUSE search "
            f"({demo.budget.candidates} candidates × {demo.budget.rounds} round(s)) for `{demo.target}` on the space "
            "of its closest task: a few minutes on a 2-core CPU, in the background (you can leave this page).")
ui.attempt("demo", st.button("Run the demo", type="primary"), lambda: ui.submit(workspace, "demo", demo))
ui.job_panel(workspace, "demo", "Demo runs", limit=3)
demo_runs = list_jobs(workspace, "demo", 1)
if demo_runs and demo_runs[0].status == "done":
    links = st.columns(3)
    links[0].page_link("pages/2_Zoo.py", label="The zoo it trained", icon=":material/hub:")
    links[1].page_link("pages/3_Distances.py", label="Its distance heatmap", icon=":material/grid_on:")
    links[2].page_link("pages/4_Search.py", label="The FUSE search", icon=":material/search:")


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
    st.dataframe(pd.DataFrame([{k: r[k] for k in ("dataset", "title", "available", "classes", "train", "test",
                                                  "image", "source")} for r in rows]), hide_index=True,
                 width="stretch")
    for row in rows:
        if not row["available"]:
            st.info(row["reason"])
    return False


ui.live_fragment(datasets_panel, not ui.dataset_check()["done"])

st.header("Workspace")
st.caption(f"`{workspace.root}` (set `TANAS_HOME` to change it)")
networks = workspace.list_networks()
custom_tasks = workspace.load_tasks()
cols = st.columns(2)
cols[0].metric("Trained networks", len(networks))
cols[1].metric("Custom tasks", len(custom_tasks))
if networks:
    st.dataframe(pd.DataFrame(zoo_table(networks)), hide_index=True, width="stretch")
else:
    st.write("No networks yet: press **Run the demo** above, use the Zoo page, or train from a terminal: "
             "`python -m tanas_core zoo train --suite ld8 --seeds 1 --preset demo`.")
