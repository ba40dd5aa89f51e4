"""Distances: asymmetric task-distance heatmaps d[b, t] per architecture and across architectures, from the store."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from tanas_core import ui
from tanas_core.networks import ARCHITECTURES
from tanas_core.task_distances import FisherConfig, across_architectures, stored_distances, task_atlas
from tanas_core.tasks import SUITE_NAMES
from tanas_core.training import PRESETS
from tanas_core.zoo import CUSTOM_SUITE, resolve_suite

METRIC_LABELS = {"logdet": "log-determinant (eq. 5)", "frechet": "Fréchet, diagonal (eq. 8)",
                 "frechet-full": "Fréchet, full matrices (eq. 7)"}

st.set_page_config(page_title="Distances · TA-NAS Studio", layout="wide")
st.title("Task distances")
st.caption("d[b, t]: row = baseline task b, column = target task t. Asymmetric: d[b, t] ≠ d[t, b]. The star marks "
           "the closest baseline of each target.")
space = ui.workspace()
ui.backend_settings()

columns = st.columns(5)
suite_names = list(SUITE_NAMES) + [CUSTOM_SUITE]
suite_name = columns[0].selectbox("Suite", suite_names, index=ui.suite_index(space, suite_names))
archs = columns[1].multiselect("Architectures", list(ARCHITECTURES), default=["vgg16"])
seeds = int(columns[2].number_input("Seeds", min_value=1, max_value=20, value=1))
metric = columns[3].selectbox("Metric", list(METRIC_LABELS), format_func=METRIC_LABELS.get)
preset = columns[4].selectbox("Preset", list(PRESETS), format_func=lambda p: p)
with st.expander("Fisher settings"):
    settings = st.columns(3)
    sigma = settings[0].number_input("σ (log-det)", value=1e-3, format="%.0e", disabled=metric != "logdet")
    samples = int(settings[1].number_input("M: images per Fisher", min_value=2, value=256))
    head_samples = int(settings[2].number_input("images for the refitted head", min_value=2, value=512))

if not archs:
    st.error("Choose at least one architecture.")
    st.stop()
with ui.user_errors():
    if sigma <= 0:
        raise ValueError(f"σ must be positive, got {sigma}")
    suite = resolve_suite(suite_name, space)
    config = FisherConfig(samples=samples, head_samples=max(samples, head_samples))
    config.validate()
    results = {arch: stored_distances(space, suite, arch, metric, list(range(seeds)), preset, sigma, config)
               for arch in archs}

missing = [arch for arch, result in results.items() if result is None]
if missing:
    st.info(f"Not in the workspace yet: {', '.join(missing)} ({metric}, {seeds} seed(s), preset {preset}). "
            "Missing zoo networks are trained first.")
    if st.button("Compute in the background", type="primary"):
        ui.submit(space, "distances", dict(suite=suite.name, archs=missing, seeds=seeds, metric=metric, sigma=sigma,
                                           preset=preset, samples=samples, head_samples=head_samples))
ui.job_panel(space, "distances", "Distance jobs")

ready = {arch: result for arch, result in results.items() if result is not None}
if not ready:
    st.stop()
views = dict(ready)
if len(ready) > 1:
    views["across architectures"] = across_architectures(list(ready.values()))
for tab, (name, result) in zip(st.tabs(list(views)), views.items()):
    with tab:
        left, right = st.columns(2)
        left.plotly_chart(ui.heatmap_figure(result.mean, result.tasks, f"{name}: mean over {len(result.seeds)} "
                                            f"network(s)"), key=f"mean-{name}")
        right.plotly_chart(ui.heatmap_figure(result.std, result.tasks, f"{name}: standard deviation", closest=False,
                                             colorbar="std"), key=f"std-{name}")
        noise = pd.DataFrame(dict(task=result.tasks, noise_floor=result.noise_floor))
        closest = pd.DataFrame([dict(target=t, **{k: v for k, v in result.closest(t, 1)[0].items()
                                                  if k != "per_seed"}) for t in result.tasks])
        left, right = st.columns(2)
        left.markdown("**Closest baseline per target**")
        left.dataframe(closest, hide_index=True, width="stretch")
        right.markdown("**Seed-to-seed noise floor** (same task, different seeds; NaN with one seed)")
        right.dataframe(noise, hide_index=True, width="stretch")
        frame = pd.DataFrame(result.mean, index=pd.Index(result.tasks, name="baseline \\ target"),
                             columns=result.tasks)
        ui.download_csv(frame, f"distances-{suite.name}-{name.replace(' ', '_')}-{metric}.csv",
                        "Download the mean matrix (CSV)")
        datasets = [suite.task(t).dataset for t in result.tasks]
        st.plotly_chart(ui.atlas_figure(task_atlas(result.mean), result.tasks, datasets), key=f"atlas-{name}")
st.caption("PNG: use the camera button in each chart's toolbar.")
