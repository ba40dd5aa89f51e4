"""Tasks: browse the datasets with sample images, the source document's suites, and define custom tasks."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from tanas_core.app import ui
from tanas_core.data.datasets import DATASETS, DatasetUnavailableError, load_dataset, sample_grid
from tanas_core.data.suites import SUITE_NAMES, get_suite, suite_availability
from tanas_core.data.tasks import check_task_data, make_task
from tanas_core.errors import TanasError
from tanas_core.training.trainer import PRESETS

# Custom tasks are checked at the demo preset's sizes: the smallest splits the app trains on by default.
CHECK_SIZES = PRESETS["demo"].sizes

space = ui.page_header("Tasks", backend=False)


@st.cache_resource(show_spinner="Loading dataset...")
def dataset(name: str):
    return load_dataset(name, download=False)


st.header("Datasets")
available = [row["dataset"] for row in ui.dataset_rows() if row["available"]]
if not available:
    st.error("No dataset is available: set TANAS_DATA_DIR to a directory holding the .npz packs (see README).")
    st.stop()
name = st.selectbox("Dataset", available, format_func=lambda n: f"{n} — {DATASETS[n].title}")
try:
    data = dataset(name)
except DatasetUnavailableError as error:
    st.error(str(error))
    st.stop()
shown = list(range(min(len(data.class_names), 20)))
st.caption(f"{len(data.class_names)} classes, {len(data.y_train):,} training and {len(data.y_test):,} test images, "
           f"from {data.source}. One row per class" + (" (first 20 shown)." if len(data.class_names) > 20 else "."))
columns = st.columns([1, 4])
columns[0].dataframe(pd.DataFrame({"label": shown, "class": [data.class_names[i] for i in shown]}),
                     hide_index=True)
sheet = sample_grid(data, per_class=10, classes=shown)
columns[1].image(sheet[..., 0] if sheet.shape[-1] == 1 else sheet, width=min(600, sheet.shape[1] * 3),
                 clamp=True)

st.header("Suites of the source document")
for suite_name in SUITE_NAMES:
    ok, reason = suite_availability(suite_name)
    try:
        suite = get_suite(suite_name)
    except TanasError as error:
        st.warning(f"{suite_name}: {error}")
        continue
    with st.expander(f"{suite_name} — {suite.title}" + ("" if ok else "  (unavailable)"), expanded=ok):
        if not ok:
            st.info(reason)
        # a static table wraps its text: the classes and descriptions fit a laptop's screen (as a scrolling
        # dataframe they took 975-1,133 px of 870)
        st.table(pd.DataFrame([dict(task=t.name, dataset=t.dataset, outputs=t.num_outputs,
                                    classes=" | ".join(t.output_names), description=t.description)
                               for t in suite.tasks]), hide_index=True)

st.header("Define a custom task")
st.caption("Put classes into groups: each group becomes one output. Tick *anything else* to add an output for every "
           "class left out. Classes by name or label, comma-separated, one group per line.")


def save_custom_task(name_text: str, dataset_name: str, groups_text: str, other: bool, replace: bool) -> None:
    """Build the task from the form, check every output has images, save it (``replace``: over an existing
    definition of that name, removing the networks trained on it) and say what happened."""
    groups = [[c.strip() for c in line.split(",") if c.strip()] for line in groups_text.splitlines() if line.strip()]
    with ui.user_errors(stop=False):
        task = make_task(name_text.strip(), dataset_name, groups, other=other)
        check_task_data(task, CHECK_SIZES)
        previous = next((saved for saved in space.load_tasks() if saved.name == task.name), None)
        removed = space.save_task(task, replace=replace)
        st.success(f"Saved {task.name}: {task.num_outputs} outputs ({' | '.join(task.output_names)}).")
        if previous is not None and previous.to_dict() != task.to_dict():
            st.info(f"Replaced the earlier definition of {task.name}: removed {len(removed)} network(s) trained on "
                    "it.")


with st.form("custom-task"):
    columns = st.columns([2, 2, 1])
    task_name = columns[0].text_input("Name", placeholder="e.g. mnist-small-vs-large")
    task_dataset = columns[1].selectbox("Dataset", available, key="custom-dataset")
    other = columns[2].checkbox("anything else", value=False)
    groups_text = st.text_area("Groups (one per line)", placeholder="0, 1, 2, 3, 4\n5, 6, 7, 8, 9")
    replace = st.checkbox("replace an existing task of that name",
                          help="a name already saved with another definition is refused unless this is ticked; "
                               "replacing deletes the networks trained on the old definition")
    if st.form_submit_button("Save the task"):
        save_custom_task(task_name, task_dataset, groups_text, other, replace)

saved = space.load_tasks()
if saved:
    st.subheader("Custom tasks in the workspace")
    chosen = st.selectbox("Preview", [t.name for t in saved])
    task = next(t for t in saved if t.name == chosen)
    with ui.user_errors():
        splits = check_task_data(task, CHECK_SIZES)
    counts = splits.counts()
    st.dataframe(pd.DataFrame({"output": task.output_names, **{split: counts[split] for split in counts}}),
                 hide_index=True)
    sheet = splits.sample_sheet(8)
    st.image(sheet[..., 0] if sheet.shape[-1] == 1 else sheet, caption="one row per output (training images)",
             width=min(600, sheet.shape[1] * 3), clamp=True)
