"""Search: closest tasks -> related space -> FUSE or random search as a background job, with live alpha charts.

The page builds one ``SearchRequest`` from its widgets: the previews of the closest tasks and of the related space
read the store for that request (``nas.preview_closest`` / ``nas.preview_related_space``, never computing), and the
same object is validated and submitted when the search starts.
"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from tanas_core.app import ui
from tanas_core.app.figures import alpha_figure, comparison_figure, curves_figure
from tanas_core.data.suites import ALL_SUITE_NAMES, resolve_suite, split_target
from tanas_core.errors import TanasError
from tanas_core.jobs.estimates import CONFIRM_ABOVE_SECONDS, cell_step_seconds, search_estimate
from tanas_core.jobs.runner import clock, get_job, list_jobs
from tanas_core.networks import ARCHITECTURES
from tanas_core.requests import (
    METHODS,
    MIXTURES,
    SPACES,
    WEIGHT_STEPS,
    ClosestSettings,
    CompareRequest,
    SearchBudget,
    SearchRequest,
)
from tanas_core.search import comparison, nas
from tanas_core.search.fuse import decision_text
from tanas_core.search.space import Genotype, cell_dot, source_formula_cells, standard_space
from tanas_core.training.trainer import PRESETS

SEARCH_KINDS = ("search", "demo", "compare")  # the jobs whose search runs the live panel follows
BUDGET_LABELS = {"candidates": "FUSE candidates C", "rounds": "FUSE rounds", "epochs_per_round": "epochs per round",
                 "random_candidates": "random candidates", "random_epochs": "epochs per random candidate",
                 "final_epochs": "final training epochs"}

PAGE = "search"  # the URL parameters this page restores its form from
space = ui.page_header("Architecture search")


def target_widgets():
    """Suite, target task and preset: ``(suite, target name, preset)``."""
    columns = st.columns(3)
    suite_names = list(ALL_SUITE_NAMES)
    suite_name = columns[0].selectbox("Suite", suite_names, index=ui.index_of(
        suite_names, ui.restored(PAGE, "suite", suite_names[ui.suite_index(space, suite_names)])))
    with ui.user_errors():
        suite = resolve_suite(suite_name, space)
    names = [t.name for t in suite.tasks]
    target = columns[1].selectbox("Target task", names, index=ui.index_of(
        names, ui.restored(PAGE, "target", names[min(3, len(names) - 1)])))
    presets = list(PRESETS)
    preset = columns[2].selectbox("Preset", presets, index=ui.index_of(
        presets, ui.restored(PAGE, "preset", SearchRequest.default("preset"))), help=ui.preset_help())
    return suite, target, preset


def closest_widgets(suite, target: str) -> ClosestSettings:
    """Which distances rank the learned tasks, and among which baselines."""
    closest_arch = st.selectbox("Distances from", list(ARCHITECTURES), index=ui.index_of(
                                    list(ARCHITECTURES), ui.restored(PAGE, "distances_from", "vgg16")),
                                help=f"distances of this architecture in the default view "
                                     f"({ClosestSettings.default('view')}) and metric "
                                     f"({ClosestSettings.default('metric')}), default Fisher settings; compute them "
                                     "on the Distances page")
    others = [t.name for t in suite.tasks if t.name != target]
    chosen = [name for name in ui.restored(PAGE, "baselines", others) if name in others]
    baselines = st.multiselect("Baselines (learned tasks to choose from)", others, default=chosen or others)
    if not baselines:
        st.error("Choose at least one baseline task.")
        st.stop()
    top = ui.number_input(st, "k closest tasks that build the related space", ClosestSettings, "top",
                          value=ui.restored(PAGE, "top", ClosestSettings.default("top")))
    return ClosestSettings(archs=(closest_arch,), baselines=tuple(baselines), top=int(top))


def budget_widgets() -> tuple[str, str, SearchBudget, bool, bool]:
    """The launch form: space, method and the budget (each input's range, ``SearchBudget.LIMITS``, is checked by
    the request when the search starts)."""
    with st.form("search"):
        columns = st.columns(4)
        space_name = columns[0].radio("Space", list(SPACES), horizontal=True,
                                      index=ui.index_of(list(SPACES), ui.restored(PAGE, "space", list(SPACES)[0])))
        method = columns[1].radio("Method", list(METHODS), horizontal=True,
                                  index=ui.index_of(list(METHODS), ui.restored(PAGE, "method", list(METHODS)[0])))
        values = {}
        slots = columns[2:] + list(st.columns(4))
        for slot, (name, label) in zip(slots, BUDGET_LABELS.items()):
            values[name] = ui.number_input(slot, label, SearchBudget, name,
                                           value=ui.restored(PAGE, name, SearchBudget.default(name)))
        with st.expander("FUSE variants (the source's equations taken literally)"):
            variants = st.columns(2)
            values["mixture"] = variants[0].radio(
                "Relaxed output (eq. 16) mixes", list(MIXTURES), horizontal=True, index=ui.index_of(
                    list(MIXTURES), ui.restored(PAGE, "mixture", SearchBudget.default("mixture"))),
                help="probs: class probabilities (alpha converges toward the best candidate); logits: the logits")
            values["weight_step"] = variants[1].radio(
                "Weight step (eq. 17)", list(WEIGHT_STEPS), horizontal=True, index=ui.index_of(
                    list(WEIGHT_STEPS), ui.restored(PAGE, "weight_step", SearchBudget.default("weight_step"))),
                help="independent: each candidate on its own loss; relaxed: the relaxed loss as written, which "
                     "starves candidates that fall behind early (a crippled candidate can win)")
        confirmed = st.checkbox("Start even if the estimate is above 10 minutes", value=False)
        started = st.form_submit_button("Start the search", type="primary")
    return space_name, method, SearchBudget(**values), started, confirmed


def show_closest(request: SearchRequest) -> None:
    """The stored ranking of the baselines for the request's target (nothing is computed here)."""
    ranking = nas.preview_closest(space, request)
    if ranking is None:
        st.info("No stored distances for this suite, architecture and preset yet: compute them on the "
                "**Distances** page (or launch a related-space search: it computes what is missing).")
        return
    st.dataframe(pd.DataFrame([{k: v for k, v in row.items() if k != "per_seed"} for row in ranking]),
                 hide_index=True, width="stretch")
    first = ranking[0]
    tied = [row["baseline"] for row in ranking[1:] if row["tied_with_closest"]]
    st.caption(f"The related space comes from **{', '.join(row['baseline'] for row in ranking)}**: "
               f"{first['baseline']} is the closest in {first['rank_frequency']:.0%} of seeds × bootstrap resamples "
               f"(95 % interval of its distance {first['interval_low']:.3f} – {first['interval_high']:.3f})"
               + (f"; tied with it inside the noise: {', '.join(tied)}" if tied else "") + ".")


def budget_text(budget: SearchBudget) -> str:
    """How a stored genotype was found, e.g. "a 3-candidate × 1-round FUSE search (0.5 epochs per round)"."""
    return (f"a {budget.candidates}-candidate × {budget.rounds}-round FUSE search "
            f"({budget.epochs_per_round:g} epochs per round)")


def show_spaces(request: SearchRequest) -> None:
    """The standard space's size and the related space the stored genotypes of the closest task(s) give, saying
    which task(s) and which stored budget each genotype came from."""
    standard = standard_space()
    left, right = st.columns(2)
    left.metric("Standard space (genotypes)", f"{standard.size():.3e}")
    normal_cells, _ = standard.cell_counts()
    left.caption(f"{len(standard.operations)} operations, {standard.nodes} nodes per cell, skeleton "
                 f"{standard.skeleton}. Distinct cells: {normal_cells:.3e} per cell type (normal and reduction); the "
                 f"source document's formula m^(n(n−1)/2) for a densely connected {standard.nodes + 2}-node DAG "
                 f"gives {source_formula_cells(len(standard.operations), standard.nodes):.3e}.")
    preview = nas.preview_related_space(space, request)
    if preview is None:
        right.info("The related space needs the stored distances of step 1 to find the closest task(s).")
        return
    names, budgets = [row["baseline"] for row in preview.closest], preview.budgets()
    found = [f"{name}: genotype from {budget_text(budgets[name])}" for name in names if budgets.get(name)]
    if preview.space is not None:
        related = preview.space
        right.metric(f"Related space from {', '.join(names)}", f"{related.size():.3e}",
                     delta=f"{related.size() / standard.size():.1e} of the standard space", delta_color="off",
                     delta_arrow="off")
        right.caption("Operations: " + ", ".join(related.operations))
    else:
        right.info(f"No stored genotype yet for {', '.join(preview.missing)}: the related space is built from the "
                   "closest task's best genotype, searched (FUSE, standard space) the first time a related-space "
                   "search runs.")
    for line in found:
        right.caption(line)


def step_measurement(request: SearchRequest) -> dict:
    """This machine's cell-network step time for the request's preset and input, measured once in the background."""
    suite, _ = split_target(request.target)
    spec = resolve_suite(suite, space).spec
    return ui.background_value(f"cell-step:{request.preset}:{spec.channels}:{spec.size}",
                               lambda: cell_step_seconds(request.preset, spec.channels, spec.size))


def show_estimate(request: SearchRequest) -> float | None:
    """The estimated time of the request on this machine (measured step time x its steps); ``None`` while the step
    is being measured (the note refreshes itself until the measurement is in)."""
    def measuring() -> bool:
        if step_measurement(request)["done"]:
            return False
        st.caption("Measuring this machine's step time for the estimate...")
        return True

    if not step_measurement(request)["done"]:
        ui.live_fragment(measuring, True)
        return None
    request.validate(space)  # an input that will be refused gets its error, not an estimate beside it
    estimate = search_estimate(space, request)
    parts = "; ".join(f"{label} ≈ {clock(seconds)}" for label, seconds in estimate["parts"])
    text = (f"Estimated time here: **at least {clock(estimate['seconds'])}** ({parts}; measured "
            f"{estimate['step_s']:.2f} s per candidate step). Missing zoo networks and distances come on top.")
    (st.warning if estimate["seconds"] > CONFIRM_ABOVE_SECONDS else st.caption)(text)
    return estimate["seconds"]


def launch(request: SearchRequest, confirmed: bool, estimate: float | None) -> None:
    """Validate the page's request (an out-of-range value is a ``TanasError`` naming the range) and submit it;
    above 10 minutes of estimated time only when ``confirmed``."""
    request.validate(space)
    if estimate is None and not confirmed:  # clicked while the step was being measured: measure now
        estimate = search_estimate(space, request)["seconds"]
    if not confirmed and estimate > CONFIRM_ABOVE_SECONDS:
        raise TanasError(f"This search is estimated at {clock(estimate)} or more on this machine: tick “Start even "
                         "if the estimate is above 10 minutes” to start it, or lower the budget.")
    ui.submit(space, "search", request)


def show_candidates(latest: dict) -> None:
    """The current candidates' normal cells (with their softmax weights for FUSE)."""
    st.markdown("**Current candidates** (normal cells)")
    shown = latest["genotypes"][:4]
    # two per row: at four per row a cell's operation labels are too small to read on a laptop screen
    cells = [column for _ in range(0, len(shown), 2) for column in st.columns(2)]
    for index, text in enumerate(shown):
        weight = f" · weight {latest['weights'][index]:.3f}" if "weights" in latest else ""
        cells[index].caption(f"{latest['candidates'][index]}{weight}")
        cells[index].graphviz_chart(cell_dot(Genotype.from_json(text).normal, latest["candidates"][index]),
                                    width="stretch")


def show_winner(run_id: str) -> None:
    """The finished search's winner, from its typed record."""
    record = nas.get_search(space, run_id)
    if record is not None and record.status == "time limit":
        st.warning(f"Search ended on its time limit with no winner: {record.error}.")
    if record is None or record.genotype is None or record.test_accuracy is None:
        return
    st.success(f"winner {Genotype.from_json(record.genotype).id}: test accuracy {record.test_accuracy:.4f}, "
               f"{record.params / 1e6:.3f} M parameters, search {record.search_seconds:.1f} s on {record.device}")
    last = (record.rounds or [{}])[-1]
    if "decision" in last:  # records of FUSE searches since rounds were checked against their runner-up
        names, decision = [Genotype.from_json(c).id for c in last["candidates"]], last["decision"]
        text = "FUSE's last round: " + decision_text(decision, names[last["winner"]],
                                                     names[decision["runner_up"]] if decision else "")
        (st.info if decision and decision["verdict"] == "decided" else st.warning)(text)


def live() -> bool:
    """The chosen (or newest) search-ish job: its progress, alpha and loss charts, candidates and winner; ``True``
    while that job runs."""
    jobs = list_jobs(space, SEARCH_KINDS, 30)
    if not jobs:
        st.caption("No search yet.")
        return False
    job = get_job(space, st.session_state.get("last_search_job") or jobs[0].id)
    ui.render_job(space, job.id)
    run_id = job.info.get("run_id")
    if not run_id:
        return job.active
    events = nas.search_events(space, run_id)
    st.caption(f"search run `{run_id}`: {len(events)} events")
    updates = [e for e in events if e.get("type") in ("alpha", "candidate")]
    if updates and updates[-1]["type"] == "alpha" and job.active:
        last = updates[-1]
        st.progress(last["step"] / last.get("steps", last["step"]),
                    text=f"FUSE round {last['round']}: step {last['step']}/{last.get('steps', '?')}")
    if updates:
        left, right = st.columns(2)
        if updates[0]["type"] == "alpha":
            left.plotly_chart(alpha_figure(events), key="alpha-chart")
        right.plotly_chart(curves_figure(events), key="curves-chart")
        show_candidates(updates[-1])
    if any(e.get("type") == "finished" for e in events):
        show_winner(run_id)
    return job.active


def show_comparison(request: SearchRequest) -> None:
    """Launch the (repeated) comparison for the request's target (same closest settings) and show the newest stored
    one: the per-repeat table, means with intervals as a chart, and FUSE-related against each method (paired)."""
    repeats = ui.number_input(st, "Repeats (independent seeds per method)", CompareRequest, "repeats")
    def start() -> None:
        comparison_request = CompareRequest(target=request.target, preset=request.preset, closest=request.closest,
                                            repeats=int(repeats))
        comparison_request.validate(space)
        ui.submit(space, "compare", comparison_request)

    ui.attempt("compare", st.button("Run the comparison in the background",
                                    help="VGG-16, ResNet-18, DenseNet-121, random search, FUSE standard and related, "
                                         "each repeated: minutes per repeat on the demo preset"), start)
    ui.job_panel(space, "compare", "Comparison jobs", limit=3)
    suite_name, target = split_target(request.target)
    stored = comparison.latest_comparison(space, suite_name, target)
    if stored is None:
        st.caption("No comparison stored for this target yet.")
        return
    table = pd.DataFrame(stored.table_rows())
    st.dataframe(table, hide_index=True, width="stretch")
    ui.download_csv(table, f"comparison-{suite_name}-{target}.csv")
    st.plotly_chart(comparison_figure(stored.summary()), key="comparison-chart")
    paired = stored.paired()
    if paired:
        st.markdown("**FUSE, related space against each method** (test accuracy, paired over the same seeds; an "
                    "interval reaching 0 is a tie)")
        st.dataframe(pd.DataFrame(paired), hide_index=True, width="stretch")
    for warning in comparison.control_warnings(stored, space):
        st.warning(warning)


suite, target, preset = target_widgets()
st.header("1. Closest learned tasks")
closest = closest_widgets(suite, target)
closest_box = st.container()
st.header("2. Search space")
space_box = st.container()
st.header("3. Launch")
space_name, method, budget, started, confirmed = budget_widgets()
request = SearchRequest(target=f"{suite.name}:{target}", space=space_name, method=method, preset=preset,
                        budget=budget, closest=closest)
# the form in the URL: a reload (a new session) or the link reopens it as it was
ui.remember(suite=suite.name, target=target, preset=preset, distances_from=closest.archs[0],
            baselines=list(closest.baselines), top=closest.top, space=space_name, method=method,
            **{name: getattr(budget, name) for name in (*BUDGET_LABELS, "mixture", "weight_step")})
with closest_box, ui.user_errors(stop=False):
    show_closest(request)
with space_box, ui.user_errors(stop=False):
    show_spaces(request)
estimate = None  # stays None when the request is refused before an estimate (its error is shown instead)
with ui.user_errors(stop=False):
    estimate = show_estimate(request)
ui.attempt("search", started, lambda: launch(request, confirmed, estimate))
st.header("4. Live search")
followed = list_jobs(space, SEARCH_KINDS, 30)
ui.live_fragment(live, any(job.active for job in followed))
st.header("5. Comparison")
show_comparison(request)
