"""Tasks: browse the datasets with sample images, and the source document's suites with their task definitions."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from tanas_core.data import DATASETS, DatasetUnavailableError, check_datasets, load_dataset, sample_grid
from tanas_core.tasks import SUITE_NAMES, get_suite, suite_availability

st.set_page_config(page_title="Tasks · TA-NAS Studio", layout="wide")
st.title("Tasks")


@st.cache_resource(show_spinner="Loading dataset...")
def dataset(name: str):
    return load_dataset(name, download=False)


st.header("Datasets")
available = [row["dataset"] for row in check_datasets() if row["available"]]
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
    except ValueError as error:
        st.warning(f"{suite_name}: {error}")
        continue
    with st.expander(f"{suite_name} — {suite.title}" + ("" if ok else "  (unavailable)"), expanded=ok):
        if not ok:
            st.info(reason)
        st.dataframe(pd.DataFrame([dict(task=t.name, dataset=t.dataset, outputs=t.num_outputs,
                                        classes=" | ".join(t.output_names), description=t.description)
                                   for t in suite.tasks]), hide_index=True, width="stretch")
