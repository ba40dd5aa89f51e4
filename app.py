"""TA-NAS Studio home page: the method in three steps, the demo, the datasets and their sources, the workspace."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from tanas_core import ui
from tanas_core.data import default_data_dir
from tanas_core.jobs import list_jobs
from tanas_core.requests import DemoRequest
from tanas_core.zoo import zoo_table

workspace = ui.page_header(ui.APP_TITLE, "Task-aware neural architecture search: compare tasks by the Fisher "
                           "information of networks trained on them, search architectures only where related tasks "
                           "found good ones.")

st.image(str(Path(__file__).parent / "assets" / "pipeline.svg"),
         caption="The pipeline, one tanas_core module per stage (blue: the zoo of learned tasks; red: task "
                 "similarity; green: architecture search)")
steps = st.columns(3)
with steps[0]:
    st.subheader("1. Task similarity")
    st.markdown("Train an ε-approximation network per learned task; compare tasks by the Fisher information of those "
                "networks on the target data.")
    st.latex(r"d[b,t]=\left|\tfrac{1}{n}\log\det(F_{b,t}+\sigma^2 I)-\tfrac{1}{m}\log\det(F_{t,t}+\sigma^2 I)\right|")
with steps[1]:
    st.subheader("2. Related search space")
    st.markdown("The closest learned task(s) define a small cell-based search space: their operations, skeleton and "
                "mutations of their best cells.")
    st.latex(r"d_f[b,t]=\tfrac{1}{\sqrt2}\,\mathrm{tr}\!\left(F_{b,t}+F_{t,t}-2(F_{b,t}F_{t,t})^{1/2}\right)^{1/2}")
with steps[2]:
    st.subheader("3. FUSE")
    st.markdown("Mix the candidates' outputs with softmax(α) weights, train weights and α alternately, keep "
                "argmax α.")
    st.latex(r"\bar c(X)=\sum_{c\in C}\frac{e^{\alpha_c}}{\sum_{c'}e^{\alpha_{c'}}}\,c(X)")


st.header("Run the demo")
demo = DemoRequest()
st.markdown(f"Trains the demo zoo for the `{demo.suite}` suite ({', '.join(demo.archs)}, {demo.zoo().seeds} seed, "
            f"`{demo.preset}` preset), computes its {demo.distances().metric} distances, and runs a short FUSE search "
            f"({demo.budget.candidates} candidates × {demo.budget.rounds} round(s)) for `{demo.target}` on the space "
            "of its closest task: a few minutes on a 2-core CPU, in the background (you can leave this page).")
if st.button("Run the demo", type="primary"):
    ui.submit(workspace, "demo", demo)
ui.job_panel(workspace, "demo", "Demo runs", limit=3)
demo_runs = list_jobs(workspace, "demo", 1)
if demo_runs and demo_runs[0].status == "done":
    links = st.columns(3)
    links[0].page_link("pages/2_Zoo.py", label="The zoo it trained", icon="🧠")
    links[1].page_link("pages/3_Distances.py", label="Its distance heatmap", icon="🗺️")
    links[2].page_link("pages/4_Search.py", label="The FUSE search", icon="🔎")


st.header("Datasets")
data_dir = str(default_data_dir())
st.caption(f"Data directory: `{data_dir}` (set `TANAS_DATA_DIR` to change it)")


@st.fragment(run_every=1.0)
def datasets_panel():
    # Reading every data pack takes seconds on a first visit: a thread does it, the page renders at once.
    check = ui.dataset_check()
    if not check["done"]:
        st.caption("Checking the datasets...")
        return
    if check["error"]:
        st.error(check["error"])
        return
    rows = check["value"]
    st.dataframe(pd.DataFrame([{k: r[k] for k in ("dataset", "title", "available", "classes", "train", "test",
                                                  "image", "source")} for r in rows]), hide_index=True,
                 width="stretch")
    for row in rows:
        if not row["available"]:
            st.info(row["reason"])


datasets_panel()

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
