"""Zoo: train epsilon-approximation networks as background jobs; the table of stored networks."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from tanas_core import ui
from tanas_core.networks import ARCHITECTURES
from tanas_core.tasks import SUITE_NAMES
from tanas_core.training import PRESETS
from tanas_core.zoo import CUSTOM_SUITE, zoo_table

st.set_page_config(page_title="Zoo · TA-NAS Studio", layout="wide")
st.title("Zoo of learned tasks")
st.caption("An ε-approximation network per task × architecture × seed: its Fisher information on a target's data "
           "is what task distances compare.")
space = ui.workspace()
ui.backend_settings()

with st.form("train"):
    columns = st.columns(4)
    suite = columns[0].selectbox("Suite", list(SUITE_NAMES) + [CUSTOM_SUITE])
    archs = columns[1].multiselect("Architectures", list(ARCHITECTURES), default=["vgg16"])
    seeds = columns[2].number_input("Seeds", min_value=1, max_value=20, value=1)
    preset = columns[3].selectbox("Preset", list(PRESETS), format_func=lambda p: f"{p}: {PRESETS[p].description}")
    if st.form_submit_button("Train in the background"):
        if not archs:
            st.error("Choose at least one architecture.")
        else:
            ui.submit(space, "zoo", dict(suite=suite, archs=archs, seeds=int(seeds), preset=preset))

ui.job_panel(space, "zoo", "Training jobs")

st.header("Stored networks")
networks = space.list_networks()
if not networks:
    st.info("No networks yet: train some above, or press **Run the demo** on the home page.")
else:
    table = pd.DataFrame(zoo_table(networks))
    st.metric("Networks", len(table))
    missing = [r for r in networks if not r.is_epsilon_approximation]
    if missing:
        st.warning(f"{len(missing)} network(s) miss their ε target (test accuracy < 1 − ε).")
    st.dataframe(table, hide_index=True, width="stretch")
    ui.download_csv(table, "zoo.csv")
