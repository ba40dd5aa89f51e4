"""Distances: task-distance heatmaps d[b, t] per architecture and across architectures, from the store.

One ``DistanceRequest`` built from the widgets is validated, looked up (``stored_distances``) and, for the
architectures not stored yet, submitted as a job: what is shown is exactly what the job computes.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from tanas_core.app import ui
from tanas_core.app.figures import atlas_figure, heatmap_figure
from tanas_core.data.probe_images import fewer_than_asked
from tanas_core.data.suites import ALL_SUITE_NAMES, resolve_suite
from tanas_core.distances.matrices import across_architectures, task_atlas
from tanas_core.distances.report_table import other_rows, split_half_text, verdict_rows
from tanas_core.distances.stored import nearest_stored, stored_distances
from tanas_core.distances.validation import GOALS, latest_validation, rank_agreement, row_name, unsettled, verdict
from tanas_core.distances.views import reference_text
from tanas_core.jobs.estimates import validation_estimate
from tanas_core.jobs.runner import clock
from tanas_core.networks import ARCHITECTURES
from tanas_core.registry import METRICS, VIEWS
from tanas_core.requests import REFERENCES, DistanceRequest, FisherConfig, ValidateRequest
from tanas_core.training.trainer import PRESETS

VIEW_TEXT = {
    "probe": "**Common probe network** (Task2Vec's design, not the source document's): per architecture and seed one "
             "network trained on every class of the suite's datasets; its head is refitted per task and d[b, t] "
             "compares its Fisher on X_b with its Fisher on X_t, so d[b, t] = d[t, b]. Its own reference r[t] "
             f"compares {VIEWS['probe'].reference}; a retrained probe network is the other reference.",
    "tanas": "**TA-NAS** (the source document's): d[b, t] compares task b's network with task t's network, both with "
             "a head refitted on t and both on X_t, so d[b, t] ≠ d[t, b] in general. Its own reference r[t] "
             f"compares t's network with {VIEWS['tanas'].reference}; another draw of t's data under t's own network "
             "is the other reference."}
REFERENCE_LABELS = {"view": "the view's own", "redraw": "redraw: other data, same network",
                    "retrained": "retrained: same initial weights, other data"}


def view_label(view: str) -> str:
    """The registered label of ``view`` (for select boxes and tabs)."""
    return VIEWS[view].label


def metric_label(metric: str) -> str:
    """The registered label of ``metric``."""
    return METRICS[metric].label


space = ui.page_header("Task distances", "d[b, t]: row = baseline task b, column = target task t. The star marks "
                       "the closest baseline of each target.")


def request_from_widgets() -> DistanceRequest:
    """The page's one ``DistanceRequest``: every limit and default comes from the request types."""
    # two rows, so every select box shows its whole label on a 1366 px screen
    columns = st.columns([1, 1.5, 1.5]) + st.columns([2, 1, 1.2])
    suite_names = list(ALL_SUITE_NAMES)
    suite = columns[0].selectbox("Suite", suite_names, index=ui.suite_index(space, suite_names))
    view = columns[1].selectbox("View", list(VIEWS), format_func=view_label,
                                index=ui.index_of(list(VIEWS), DistanceRequest.default("view")),
                                help="Which networks' Fishers d[b, t] compares; the validation report names the "
                                     "view and metric that beat their noise (docs/distances.md)")
    metric = columns[2].selectbox("Metric", list(METRICS), format_func=metric_label,
                                  index=ui.index_of(list(METRICS), DistanceRequest.default("metric")))
    archs = columns[3].multiselect("Architectures", list(ARCHITECTURES),
                                   default=list(DistanceRequest.default("archs")))
    seeds = ui.number_input(columns[4], "Seeds", DistanceRequest, "seeds")
    presets = list(PRESETS)
    preset = columns[5].selectbox("Preset", presets, index=ui.index_of(presets, DistanceRequest.default("preset")))
    with st.expander("Fisher settings and reference"):
        settings = st.columns(5)
        # σ, M and the head's images are checked by the request (with the range in the message), not the widget
        ui.label_field("sigma", "σ (log-det)")
        sigma = settings[0].number_input("σ (log-det)", value=DistanceRequest.default("sigma"), format="%.0e",
                                         disabled=not METRICS[metric].uses_sigma)
        samples = ui.number_input(settings[1], "M: images per Fisher", FisherConfig, "samples")
        head_samples = ui.number_input(settings[2], "images for the refitted head", FisherConfig, "head_samples")
        head_weight_decay = ui.number_input(settings[3], "the head's L2 penalty", FisherConfig, "head_weight_decay",
                                            format="%.0e", help="a strong penalty steadies the refitted heads "
                                                                "(docs/results/history.md)")
        reference = settings[4].selectbox(
            "Twins r[t] compares with", list(REFERENCES), format_func=lambda kind: REFERENCE_LABELS[kind],
            index=ui.index_of(list(REFERENCES), DistanceRequest.default("reference")),
            help="The reference a baseline must beat: the view's own, or either twin, so both views can be judged "
                 "under the same one")
    if not archs:
        st.error("Choose at least one architecture.")
        st.stop()
    return DistanceRequest(suite=suite, archs=tuple(archs), seeds=int(seeds), metric=metric, sigma=float(sigma),
                           preset=preset, view=view, reference=reference,
                           fisher=FisherConfig(samples=int(samples), head_samples=int(head_samples),
                                               head_weight_decay=float(head_weight_decay)))


def closest_row(target: str, best: dict) -> dict:
    """A table row of ``DistanceResult.closest_summary``: the closest baseline of ``target``, how often it wins
    (seeds x bootstrap), its 95 % interval and the runners-up inside the noise (ties, not a ranking)."""
    return {"target": target, "closest baseline": best["baseline"], "distance": best["distance"],
            "95 % interval": f"{best['interval_low']:.3f} – {best['interval_high']:.3f}",
            "rank frequency": best["rank_frequency"],
            "tied with it (inside the noise)": ", ".join(best["ties"]) or "none"}


def show_result(name: str, result, suite, metric: str) -> None:
    """Mean (ties with the closest circled) and std heatmaps, closest baselines, reference, CSV and atlas."""
    left, right = st.columns(2)
    closest = {t: result.closest_summary(t) for t in result.tasks}
    left.plotly_chart(heatmap_figure(result.mean, result.tasks, f"{name}: mean over {len(result.seeds)} "
                                     "network(s)", ties=[[result.tasks.index(b) for b in closest[t]["ties"]]
                                                         for t in result.tasks]), key=f"mean-{name}")
    if len(result.seeds) > 1:
        right.plotly_chart(heatmap_figure(result.std, result.tasks, f"{name}: standard deviation over seeds",
                                          closest=False, colorbar="std"), key=f"std-{name}")
    else:
        right.info("The spread over seeds needs ≥ 2 seeds: raise **Seeds** to see it. The reference r[t] and the "
                   "bootstrap intervals below are measured with one seed too.")
    noise = pd.DataFrame({"task": result.tasks, "reference r[t]": result.reference,
                          "cross-initialisation spread": result.noise_floor if len(result.seeds) > 1 else
                          ["needs ≥ 2 seeds"] * len(result.tasks)})
    if METRICS[result.metric].lift is not None:
        noise["log-det lift of F[t, t]"] = result.lift.mean(axis=0)
    table = pd.DataFrame([closest_row(t, closest[t]) for t in result.tasks])
    # full width: the table's six columns (rank frequency last) fit a 1366 px screen
    st.markdown("**Closest baseline per target** (rank frequency over seeds × bootstrap resamples of the probe "
                "images; baselines whose paired difference to it reaches 0 are ties, ringed on the heatmap; the "
                "interval is centred on the distance: each seed's resamples centred on their median)")
    st.dataframe(table, hide_index=True, width="stretch")
    st.markdown(f"**Reference per target**: r[t], the distance of {VIEWS[result.view].reference} (a baseline closer "
                "than r[t] cannot be told apart from t); the spread between different seeds; for log-det, how far "
                "F[t, t] rises above σ² (near 0: the distance measures σ)")
    st.dataframe(noise, hide_index=True, width="stretch")
    frame = pd.DataFrame(result.mean, index=pd.Index(result.tasks, name="baseline \\ target"), columns=result.tasks)
    ui.download_csv(frame, f"distances-{suite.name}-{name.replace(' ', '_')}-{result.view}-{metric}.csv",
                    "Download the mean matrix (CSV)")
    datasets = [suite.task(t).dataset for t in result.tasks]
    st.plotly_chart(atlas_figure(task_atlas(result.mean), result.tasks, datasets), key=f"atlas-{name}")


def show_other_view(request: DistanceRequest, other_view: str, suite, shown) -> None:
    """The tab of ``other_view``, the view not chosen: its description, verdict and matrices, and how far its
    rankings agree with the chosen view's (``shown``: the chosen view's combined result, or ``None`` while part of it
    is missing)."""
    other = request.replace(view=other_view)
    st.markdown(VIEW_TEXT[other.view])
    show_verdict(other, offer_report=False)  # the chosen view's verdict offers the report, which covers both views
    stored = stored_distances(space, other)
    missing = tuple(arch for arch, result in zip(request.archs, stored) if result is None)
    if missing:
        st.info(f"The {view_label(other.view)} view is not in the workspace yet for {', '.join(missing)}.")
        ui.attempt("other-view", st.button(f"Compute the {view_label(other.view)} view", key="other-view"),
                   lambda: ui.submit(space, "distances", other.replace(archs=missing)))
        return
    result = stored[0] if len(stored) == 1 else across_architectures(stored)
    if shown is not None:
        agreement = rank_agreement([shown], [result])  # symmetric: either view may be the chosen one
        st.metric("Rank agreement of the two views (mean Spearman over target columns)",
                  "n/a (needs ≥ 3 baselines)" if np.isnan(agreement) else f"{agreement:.2f}")
    show_result(view_label(other.view), result, suite, request.metric)


def identity_table(columns: dict) -> pd.DataFrame:
    """One row per target column of a validation report's identity test (``validation.identity_columns``)."""
    return pd.DataFrame([{
        "target": target, "twin ranks first": f"{c['hits']}/{c['cases']}", "share": round(c["share"], 2),
        "95 % interval": f"{c['low']:.2f}–{c['high']:.2f}",
        "beaten by (cases)": ", ".join(f"{name}{' ★' if name in c['refined_by'] else ''} ({count})"
                                       for name, count in c["beaten_by"].items()) or "—"}
        for target, c in columns.items()])


def offer_validation(request: DistanceRequest) -> None:
    """A button that runs the validation report of the page's settings as a background job, and what it costs."""
    report = ValidateRequest.judging(request)
    tasks = len(resolve_suite(request.suite, space).tasks)
    cost = validation_estimate(space, report, tasks)
    if cost["seconds"] is None:
        time_text = (f"its time is not known yet: no Fisher of {', '.join(cost['unmeasured'])} was computed in this "
                     "workspace (computing this page's distances measures one)")
    else:
        time_text = (f"about {clock(cost['seconds'])} here at most for the Fishers (the median time of this "
                     "workspace's Fishers: " + ", ".join(f"{arch} {s:.1f} s" for arch, s in cost["per_arch"].items())
                     + "), plus training what is missing")
    st.caption(f"The report of {', '.join(report.archs)} with {report.seeds} seed(s) and {report.replicates} "
               f"twin(s) per task: every metric in both views under both references (redraw and retrained twins), "
               f"from up to {cost['fishers']} Fisher matrices (stored ones are reused; missing networks, replicates "
               f"and probe networks are trained first): {time_text}.")
    ui.attempt("validate", st.button("Run the validation report in the background", key="validate"),
               lambda: ui.submit(space, "validate", report))


def show_verdict(request: DistanceRequest, offer_report: bool = True) -> None:
    """The validation report's plain answer for this suite, preset, view and metric: does it beat its noise?
    Not measured yet: ``offer_report`` offers to run the report."""
    row = row_name(request.view, request.metric, request.reference)
    report = latest_validation(space, request.suite, request.preset, request.fisher, row)
    answer, why = verdict(report, row)
    settled = answer == "not measured" or not unsettled(report["metrics"][row])
    text = f"**Separates these tasks from noise ({row}): {answer}{'' if settled else ', not settled'}** — {why}."
    if answer == "yes" and settled:
        st.success(text)
    elif answer == "yes":  # another zoo of as many seeds could turn it: not shown as a plain success
        st.info(text + " Another zoo of as many seeds could turn this answer; more seeds would narrow its "
                "seed-resampling range.")
    elif answer == "no":
        st.warning(text + " Read the closest baselines below as ties within the noise, not as findings.")
    else:
        st.info(text + " Measure it here, or with `python -m tanas_core validate distances --suite "
                f"{request.suite} --preset {request.preset}`.")
        if offer_report:
            offer_validation(request)
    columns = (report or {}).get("columns", {}).get(row)
    if columns:
        with st.expander(f"Column by column ({row}): does each target's twin rank closest?"):
            st.dataframe(identity_table(columns), hide_index=True, width="stretch")
            unrefined = report["metrics"][row].get("identity_top1_unrefined")
            st.caption(f"Twin of a target t: {reference_text(request)}, placed among t's baselines; a column "
                       "whose twin rarely ranks first cannot rank its baselines either. Interval: "
                       "Wilson 95 %, too narrow (two twins share a network). ★: the baseline's labels refine the "
                       "target's (a network trained on a finer labelling of the same dataset)"
                       + ("" if unrefined is None else f"; without those baselines the twin ranks first in "
                                                       f"{unrefined:.0%} of cases (a diagnostic, not the verdict)")
                       + ".")
    if report is not None:
        with st.expander("Every metric of the report (those that fail included)"):
            # two tables, so each fits a laptop's screen: the verdict's figures, then the others
            st.dataframe(pd.DataFrame(verdict_rows(report)), hide_index=True, width="stretch")
            st.dataframe(pd.DataFrame(other_rows(report)), hide_index=True, width="stretch")
            st.caption(f"Report of {', '.join(report['archs'])}, {report['seeds']} seed(s), {report['replicates']} "
                       f"twin(s) per task (a row's @redraw or @retrained: twins other than its view's own; "
                       f"[low, high]: the figure's seed-resampling range); goals: "
                       f"{', '.join(f'{k} ≥ {v:g}' for k, v in GOALS.items())}; the default "
                       f"metric by its rule: {report['default_metric']}.")
        if report.get("transfer"):
            show_transfer(report, row)


def show_transfer(report: dict, row: str) -> None:
    """What "close" buys: the report's transfer gains (rows: source b, columns: target t) beside its figures (shown
    under the verdict of ``row``)."""
    transfer = report["transfer"]
    gains = np.mean([np.asarray(matrix) for matrix in transfer["gains"].values()], axis=0)
    with st.expander("What close buys: transfer from each baseline's network to each target"):
        st.plotly_chart(heatmap_figure(gains, transfer["tasks"],
                                       f"{transfer['kind']} transfer gain over a network that learned nothing",
                                       closest=False, colorbar="gain", value="gain"), width="stretch",
                        key=f"transfer-{row}")
        st.caption("A valid distance is small where the gain is large: the report's transfer_rank_correlation "
                   "(negative is good) and closest_is_best_source measure it per row."
                   + split_half_text(transfer.get("split_half")))


request = request_from_widgets()
with ui.user_errors():
    request.validate(space)  # before any lookup or job: a task with too few images, σ out of range
    suite = resolve_suite(request.suite, space)
    results = dict(zip(request.archs, stored_distances(space, request)))
if lowered := fewer_than_asked(suite.tasks, request.fisher.samples):
    st.caption(f"M = {request.fisher.samples} is the most images per Fisher: "
               + ", ".join(f"{name} holds {count}" for name, count in lowered.items())
               + ", so its Fishers and its twins' use that many.")

missing = tuple(arch for arch, result in results.items() if result is None)
if missing:
    st.info(f"Not in the workspace yet: {', '.join(missing)} ({request.metric}, {request.seeds} seed(s), preset "
            f"{request.preset}). Missing zoo networks are trained first.")
    ui.attempt("distances", st.button("Compute in the background", type="primary"),
               lambda: ui.submit(space, "distances", request.replace(archs=missing)))
ui.job_panel(space, ("distances", "validate", "demo"),
             "Distance and validation jobs (and demo runs, which compute the demo distances)")
st.markdown(VIEW_TEXT[request.view])
show_verdict(request)

ready = {arch: result for arch, result in results.items() if result is not None}
nearest = {arch: found for arch in missing for found in [nearest_stored(space, request, arch)] if found}
for arch, (result, differences) in nearest.items():
    st.info(f"{arch}: showing the nearest stored result while the one asked for is missing; it differs in "
            f"{'; '.join(differences)}.")
    ready[arch] = result
views = dict(ready)
if len(ready) > 1 and not nearest:  # stand-ins may have other metrics: combine only what was asked for
    views["across architectures"] = across_architectures(list(ready.values()))
other_view = next(view for view in VIEWS if view != request.view)
tabs = st.tabs([*views, f"the other view: {view_label(other_view)}"])
for tab, (name, result) in zip(tabs, views.items()):
    with tab:
        show_result(name, result, suite, request.metric)
with tabs[-1], ui.user_errors(stop=False):
    show_other_view(request, other_view, suite, list(views.values())[-1] if not missing else None)
st.caption("PNG: use the camera button in each chart's toolbar.")
