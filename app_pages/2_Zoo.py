"""Zoo: train epsilon-approximation networks as background jobs; the table of stored networks."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from tanas_core.app import ui
from tanas_core.data.suites import ALL_SUITE_NAMES, resolve_suite
from tanas_core.errors import TanasError
from tanas_core.jobs.estimates import zoo_network_estimate
from tanas_core.networks import ARCHITECTURES
from tanas_core.networks.devices import resolve_device
from tanas_core.requests import DistanceSettings, ZooRequest
from tanas_core.training.probe_network import list_probe_networks
from tanas_core.training.trainer import PRESETS
from tanas_core.training.zoo import zoo_jobs, zoo_table

space = ui.page_header("Zoo of learned tasks", "An ε-approximation network per task × architecture × seed: its "
                       "Fisher information on a target's data is what task distances compare.")

def check_preset_cost(request: ZooRequest, confirmed: bool) -> None:
    """The GPU-scale ``paper`` preset on a CPU: say what one network costs here (a measured training step x its
    steps); ``TanasError`` unless ``confirmed``. Any other preset or device: nothing to say."""
    if request.preset != "paper" or resolve_device("auto").type != "cpu":
        return
    with st.spinner("Measuring a full-width training step on this CPU..."):
        costs = {arch: zoo_network_estimate("paper", arch, request.suite, workspace=space) for arch in request.archs}
    per_arch = len(zoo_jobs(request, resolve_suite(request.suite, space))) / len(request.archs)
    hours = sum(cost["seconds"] for cost in costs.values()) / 3600 * per_arch
    details = ", ".join(f"{arch}: {cost['seconds'] / 3600:.1f} h per network ({cost['steps']:.0f} steps × "
                        f"{cost['step_s']:.2f} s)" for arch, cost in costs.items())
    message = (f"The paper preset is sized for a GPU. On this CPU: {details}; this zoo ≈ {hours:,.0f} hours.")
    if not confirmed:
        raise TanasError(message + " Tick the box to train anyway, or choose the demo preset.")
    st.warning(message)


def train(request: ZooRequest, confirmed: bool) -> None:
    """Validate the form's request and start the zoo job (``TanasError`` naming what to change otherwise)."""
    if not request.archs:
        raise TanasError("Choose at least one architecture.")
    request.validate(space)
    check_preset_cost(request, confirmed)
    ui.submit(space, "zoo", request)


def show_networks(table: pd.DataFrame, records: list, file_name: str) -> None:
    """``table`` without its device and ε columns, which fit a laptop's width only with the ε named below it; the
    CSV holds every column."""
    st.dataframe(table, hide_index=True, width="stretch",
                 column_order=[c for c in table.columns if c not in ("device", "epsilon")])
    epsilons = sorted({(r.preset, r.epsilon) for r in records})
    st.caption("epsilon_ok: test accuracy ≥ 1 − ε, with ε of each preset: "
               + ", ".join(f"{preset} {epsilon:g}" for preset, epsilon in epsilons)
               + "; the CSV has every column (the device too).")
    ui.download_csv(table, file_name, label=f"Download {file_name}")


with st.form("train"):
    columns = st.columns(4)
    suite = columns[0].selectbox("Suite", list(ALL_SUITE_NAMES))
    # preselected: the architectures the distance defaults use, so a zoo trained as offered feeds the Distances page
    archs = columns[1].multiselect("Architectures", list(ARCHITECTURES),
                                   default=list(DistanceSettings.default("archs")))
    seeds = ui.number_input(columns[2], "Seeds", ZooRequest, "seeds")
    presets = list(PRESETS)
    preset = columns[3].selectbox("Preset", presets, index=ui.index_of(presets, ZooRequest.default("preset")),
                                  help=ui.preset_help())
    kinds = list(ZooRequest.CHOICES["networks"])
    networks = st.selectbox("Networks", kinds, index=ui.index_of(kinds, ZooRequest.default("networks")),
                            help="tasks: one network per task (the TA-NAS view compares these); probe: the suite's "
                                 "common probe network per architecture and seed (the probe view's, trained on "
                                 "every class of the suite's datasets); both")
    confirmed = st.checkbox("Train with the paper preset on this machine even if it takes hours", value=False)
    pressed = st.form_submit_button("Train in the background")
    ui.attempt("zoo", pressed, lambda: train(ZooRequest(suite=suite, archs=tuple(archs), seeds=int(seeds),
                                                         preset=preset, networks=networks), confirmed))

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
    show_networks(table, networks, "zoo.csv")

probes = list_probe_networks(space)
if probes:
    st.subheader("Probe networks")
    st.caption("The probe view's common network per architecture and seed (replicates: its retrained twins), "
               "trained on every class of the suite's datasets at once: its accuracy is over all those classes "
               "(e.g. 20 for ld8), so it is not comparable with a task network's, and its ε status uses the "
               "preset's ε all the same.")
    show_networks(pd.DataFrame(zoo_table(probes)), probes, "probe-networks.csv")
