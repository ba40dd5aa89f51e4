"""Search: closest tasks -> related space -> FUSE or random search as a background job, with live alpha charts."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from tanas_core import ui
from tanas_core.fuse import SearchBudget
from tanas_core.jobs import get_job, list_jobs
from tanas_core.nas import COMPARISON_COLUMNS, latest_comparison, search_events, stored_genotype
from tanas_core.search_space import Genotype, cell_dot, related_space, source_formula_cells, standard_space
from tanas_core.task_distances import stored_distances
from tanas_core.tasks import SUITE_NAMES
from tanas_core.training import PRESETS
from tanas_core.zoo import CUSTOM_SUITE, resolve_suite

st.set_page_config(page_title="Search · TA-NAS Studio", layout="wide")
st.title("Architecture search")
space = ui.workspace()
ui.backend_settings()

columns = st.columns(3)
suite_names = list(SUITE_NAMES) + [CUSTOM_SUITE]
suite_name = columns[0].selectbox("Suite", suite_names, index=ui.suite_index(space, suite_names))
with ui.user_errors():
    suite = resolve_suite(suite_name, space)
target = columns[1].selectbox("Target task", [t.name for t in suite.tasks],
                              index=min(3, len(suite.tasks) - 1))
preset = columns[2].selectbox("Preset", list(PRESETS), format_func=lambda p: f"{p}: {PRESETS[p].description}")

st.header("1. Closest learned tasks")
closest_arch = st.selectbox("Distances from", ["vgg16", "resnet18", "densenet121"], index=0,
                            help="log-det distances of this architecture's zoo networks (1 seed, default Fisher "
                                 "settings); compute them on the Distances page")
others = [t.name for t in suite.tasks if t.name != target]
baselines = st.multiselect("Baselines (learned tasks to choose from)", others, default=others)
if not baselines:
    st.error("Choose at least one baseline task.")
    st.stop()
result = stored_distances(space, suite, closest_arch, "logdet", [0], preset)
closest = None
if result is None:
    st.info("No stored log-det distances for this suite, architecture and preset yet: compute them on the "
            "**Distances** page (or launch a related-space search: it computes what is missing).")
else:
    ranking = [row for row in result.closest(target, len(suite.tasks) - 1) if row["baseline"] in baselines]
    closest = ranking[0]["baseline"]
    st.dataframe(pd.DataFrame([{k: v for k, v in row.items() if k != "per_seed"} for row in ranking]),
                 hide_index=True, width="stretch")

st.header("2. Search space")
standard = standard_space()
left, right = st.columns(2)
left.metric("Standard space (genotypes)", f"{standard.size():.3e}")
normal_cells, _ = standard.cell_counts()
left.caption(f"{len(standard.operations)} operations, {standard.nodes} nodes per cell, skeleton {standard.skeleton}. "
             f"Distinct cells: {normal_cells:.3e} per cell type (normal and reduction); the source document's "
             f"formula m^(n(n−1)/2) for a densely connected {standard.nodes + 2}-node DAG gives "
             f"{source_formula_cells(len(standard.operations), standard.nodes):.3e}.")
genotype = stored_genotype(space, suite, suite.task(closest), preset) if closest else None
if genotype is not None:
    related = related_space([(closest, genotype)])
    right.metric(f"Related space from {closest}", f"{related.size():.3e}",
                 delta=f"{related.size() / standard.size():.1e} of the standard space", delta_color="off")
    right.caption("Operations: " + ", ".join(related.operations))
else:
    right.info("The related space is built from the closest task's best genotype, searched (FUSE, standard space) "
               "the first time a related-space search runs.")

st.header("3. Launch")
with st.form("search"):
    columns = st.columns(4)
    space_name = columns[0].radio("Space", ["related", "standard"], horizontal=True)
    method = columns[1].radio("Method", ["fuse", "random"], horizontal=True)
    defaults = SearchBudget()
    candidates = columns[2].number_input("FUSE candidates C", 2, 32, defaults.candidates)
    rounds = columns[3].number_input("FUSE rounds", 1, 100, defaults.rounds)
    columns = st.columns(4)
    epochs_per_round = columns[0].number_input("epochs per round", 0.05, 100.0, defaults.epochs_per_round)
    random_candidates = columns[1].number_input("random candidates", 1, 1000, defaults.random_candidates)
    random_epochs = columns[2].number_input("epochs per random candidate", 0.05, 100.0, defaults.random_epochs)
    final_epochs = columns[3].number_input("final training epochs", 0.05, 100.0, defaults.final_epochs)
    if st.form_submit_button("Start the search", type="primary"):
        budget = dict(candidates=int(candidates), rounds=int(rounds), epochs_per_round=float(epochs_per_round),
                      random_candidates=int(random_candidates), random_epochs=float(random_epochs),
                      final_epochs=float(final_epochs))
        ui.submit(space, "search", dict(target=f"{suite.name}:{target}", space=space_name, method=method,
                                        preset=preset, budget=budget,
                                        closest=dict(archs=[closest_arch], seeds=1, baselines=baselines)))

st.header("4. Live search")


@st.fragment(run_every=1.0)
def live():
    jobs = [job for job in list_jobs(space, None, 30) if job.kind in ("search", "demo", "compare")]
    if not jobs:
        st.caption("No search yet.")
        return
    chosen = st.session_state.get("last_search_job") or jobs[0].id
    job = get_job(space, chosen)
    ui.render_job(space, job.id)
    run_id = job.info.get("run_id")
    if not run_id:
        return
    events = search_events(space, run_id)
    st.caption(f"search run `{run_id}`: {len(events)} events")
    updates = [e for e in events if e.get("type") in ("alpha", "candidate")]
    if not updates:
        return
    left, right = st.columns(2)
    if updates[0]["type"] == "alpha":
        left.plotly_chart(ui.alpha_figure(events), key="alpha-chart")
    right.plotly_chart(ui.curves_figure(events), key="curves-chart")
    latest = updates[-1]
    st.markdown("**Current candidates** (normal cells)")
    cells = st.columns(min(4, len(latest["genotypes"])))
    for index, text in enumerate(latest["genotypes"][:4]):
        weight = f" · weight {latest['weights'][index]:.3f}" if "weights" in latest else ""
        cells[index].caption(f"{latest['candidates'][index]}{weight}")
        cells[index].graphviz_chart(cell_dot(Genotype.from_json(text).normal, latest["candidates"][index]))
    finished = [e for e in events if e.get("type") == "finished"]
    if finished and finished[-1].get("genotype"):
        record = space.get_result("search", run_id)[0]
        if record.get("test_accuracy") is not None:
            st.success(f"winner {Genotype.from_json(record['genotype']).id}: test accuracy "
                       f"{record['test_accuracy']:.4f}, {record['params'] / 1e6:.3f} M parameters, search "
                       f"{record['search_seconds']:.1f} s on {record['device']}")


live()

st.header("5. Comparison")
comparison = latest_comparison(space, suite.name, target)
if st.button("Run the comparison in the background",
             help="VGG-16, ResNet-18, DenseNet-121, random search, FUSE standard and related: minutes on the demo "
                  "preset"):
    ui.submit(space, "compare", dict(target=f"{suite.name}:{target}", preset=preset,
                                     closest=dict(archs=[closest_arch], seeds=1, baselines=baselines)))
ui.job_panel(space, "compare", "Comparison jobs", limit=3)
if comparison is None:
    st.caption("No comparison stored for this target yet.")
else:
    table = pd.DataFrame(comparison["rows"])[COMPARISON_COLUMNS]
    st.dataframe(table, hide_index=True, width="stretch")
    ui.download_csv(table, f"comparison-{suite.name}-{target}.csv")
