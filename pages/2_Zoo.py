"""Zoo: train epsilon-approximation networks as background jobs; the table of stored networks."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from tanas_core import ui
from tanas_core.networks import ARCHITECTURES
from tanas_core.requests import DistanceSettings, ZooRequest
from tanas_core.suites import ALL_SUITE_NAMES
from tanas_core.training import PRESETS
from tanas_core.zoo import zoo_table

space = ui.page_header("Zoo of learned tasks", "An ε-approximation network per task × architecture × seed: its "
                       "Fisher information on a target's data is what task distances compare.")

with st.form("train"):
    columns = st.columns(4)
    suite = columns[0].selectbox("Suite", list(ALL_SUITE_NAMES))
    # preselected: the architectures the distance defaults use, so a zoo trained as offered feeds the Distances page
    archs = columns[1].multiselect("Architectures", list(ARCHITECTURES),
                                   default=list(DistanceSettings.default("archs")))
    seeds = ui.number_input(columns[2], "Seeds", ZooRequest, "seeds")
    presets = list(PRESETS)
    preset = columns[3].selectbox("Preset", presets, index=ui.index_of(presets, ZooRequest.default("preset")),
                                  format_func=lambda p: f"{p}: {PRESETS[p].description}")
    if st.form_submit_button("Train in the background"):
        if not archs:
            st.error("Choose at least one architecture.")
        else:
            request = ZooRequest(suite=suite, archs=tuple(archs), seeds=int(seeds), preset=preset)
            with ui.user_errors(stop=False):
                request.validate(space)
                ui.submit(space, "zoo", request)

ui.job_panel(space, ("zoo", "demo"), "Training jobs (and demo runs, which train the demo zoo)")

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
