"""The lesson: the method walked through on the demo's own results, one step per screen.

``lesson_steps`` reads what the demo stored (its tasks, zoo, probe Fishers, distances, verdict, search) and returns
one ``Step`` per stage of the method, each with its formula, one sentence and a figure; ``figure_bytes`` renders a
figure as PNG or SVG for slides. Matplotlib draws the figures (without pyplot): it writes both formats on the
server, without a browser. Nothing here computes what the demo did not store; a missing piece is said in the
step's sentence.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.figure import Figure

from tanas_core.data.suites import resolve_suite
from tanas_core.data.tasks import make_splits
from tanas_core.distances.metrics import frechet_distance
from tanas_core.distances.metrics.frechet import unit_trace_root
from tanas_core.distances.stored import stored_distances
from tanas_core.distances.validation import latest_validation, row_name, verdict
from tanas_core.fisher.target import FisherSource, fisher_segments, stored_fisher
from tanas_core.requests import DemoRequest
from tanas_core.training.probe_network import find_probe_network, probe_network_key
from tanas_core.training.trainer import get_preset
from tanas_core.workspace.context import quiet_context
from tanas_core.workspace.store import Workspace


@dataclass
class Step:
    """One screen of the lesson: a title, the formula (LaTeX), one sentence and a figure (``None``: nothing to
    draw yet, the sentence says why)."""

    title: str
    formula: str
    sentence: str
    figure: Figure | None


def _figure(width: float, height: float, rows: int = 1, columns: int = 1):
    """A figure and its axes, outside pyplot's global registry (so figures are freed and threads do not share
    state)."""
    figure = Figure(figsize=(width, height), layout="constrained")
    return figure, figure.subplots(rows, columns, squeeze=rows == columns == 1)


def figure_bytes(figure: Figure, kind: str) -> bytes:
    """``figure`` as ``"png"`` (150 dpi) or ``"svg"`` bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format=kind, dpi=150, bbox_inches="tight")
    return buffer.getvalue()


def _tasks_step(suite, preset) -> Step:
    tasks = suite.tasks
    figure, axes = _figure(7, 1.3 * len(tasks), len(tasks), 6)
    for row, task in enumerate(tasks):
        images, labels = make_splits(task, preset.sizes, seed=0, spec=suite.spec).tensors("train")
        for column in range(6):
            axis = axes[row][column]
            image = images[column].permute(1, 2, 0).squeeze(-1).numpy()
            image = (image - image.min()) / max(float(image.max() - image.min()), 1e-8)  # normalised inputs
            axis.imshow(image, cmap="gray" if image.ndim == 2 else None)
            axis.set_xticks([]), axis.set_yticks([])
            axis.set_title(task.output_names[int(labels[column])], fontsize=7)
        axes[row][0].set_ylabel(task.name, fontsize=7, rotation=0, ha="right", va="center")
    figure.suptitle(f"the tasks of {suite.name}: the same images, other labels")
    return Step("1. The tasks", r"t = \{(x_i, y_i)\}_{i=1}^{N}",
                f"A task is a dataset with a labelling: the {len(tasks)} tasks of `{suite.name}` label the same "
                "kind of images in different ways, and the method asks how far apart these labellings are.", figure)


def _networks_step(workspace: Workspace, request: DemoRequest, preset) -> Step:
    records = [r for r in workspace.list_networks(request.suite, request.preset)
               if r.replicate == 0 and r.arch in request.archs]
    formula = r"\mathrm{accuracy}(N_t) \ge 1 - \varepsilon"
    if not records:
        return Step("2. ε-approximation networks", formula, "The demo has not trained its zoo yet.", None)
    figure, axis = _figure(7, 3)
    names = [f"{r.task}\n{r.arch} s{r.seed}" for r in records]
    axis.bar(range(len(records)), [r.test_accuracy for r in records], color="#4c78a8")
    axis.axhline(1 - preset.epsilon, color="#e45756", linestyle="--", label=f"1 − ε = {1 - preset.epsilon:.2f}")
    axis.set_xticks(range(len(records)), names, fontsize=7)
    axis.set_ylim(0, 1), axis.set_ylabel("test accuracy"), axis.legend(loc="lower right")
    met = sum(r.test_accuracy >= 1 - r.epsilon for r in records)
    return Step("2. ε-approximation networks", formula,
                f"The source compares tasks through networks that learned them well (ε-approximations): {met} of "
                f"the demo's {len(records)} networks reach test accuracy 1 − ε = {1 - preset.epsilon:.2f}.", figure)


def _probe_fishers(workspace: Workspace, request: DemoRequest, suite, preset, first: str, second: str):
    """The probe network's stored Fisher diagonals on the two tasks' images (seed 0, draw 0) and the parameter
    tensor sizes they concatenate; ``None`` when the demo has not stored them."""
    distances = request.distances()
    record = find_probe_network(workspace, probe_network_key(suite, request.archs[0], preset, 0))
    if record is None:
        return None
    source = FisherSource(quiet_context(workspace, "cpu"), suite, preset, "diagonal", distances.fisher)
    diagonals = [stored_fisher(workspace, source.key(record, suite.task(name))) for name in (first, second)]
    if any(diagonal is None for diagonal in diagonals):
        return None
    segments = fisher_segments(record.arch, record.width, record.in_channels, suite.task(first).num_outputs,
                               distances.fisher.params)
    return diagonals, segments


def _segment_sums(vector: torch.Tensor, segments) -> np.ndarray:
    return np.array([float(part.sum()) for part in torch.split(vector, list(segments))])


def _fisher_step(fishers, first: str, second: str) -> Step:
    formula = (r"F = \frac{1}{M}\sum_{i=1}^{M} \nabla_\theta \log p_\theta(y_i \mid x_i)\, "
               r"\nabla_\theta \log p_\theta(y_i \mid x_i)^\top")
    if fishers is None:
        return Step("3. Fisher information", formula, "The demo has not stored its Fisher matrices yet.", None)
    (diag_a, diag_b), segments = fishers
    figure, axis = _figure(7, 3)
    positions = np.arange(len(segments))
    for offset, diagonal, name, colour in ((-0.2, diag_a, first, "#4c78a8"), (0.2, diag_b, second, "#f58518")):
        shares = _segment_sums(diagonal / diagonal.sum(), segments)
        axis.bar(positions + offset, shares, width=0.4, label=name, color=colour)
    axis.set_yscale("log"), axis.set_xlabel("parameter tensor of the probe network (input → output)")
    axis.set_ylabel("share of the trace"), axis.legend()
    return Step("3. Fisher information", formula,
                "The Fisher's diagonal says how much each weight matters to a task's predictions; the same network "
                f"gives a different profile on `{first}` and on `{second}` (each layer's share of the trace).",
                figure)


def _equation_step(fishers, first: str, second: str, shown: float | None) -> Step:
    formula = (r"d[b,t] = \frac{1}{\sqrt2}\left\|\sqrt{f_{b}} - \sqrt{f_{t}}\right\|_2, \qquad "
               r"f = \frac{\mathrm{diag}\,F}{\mathrm{tr}\,F}")
    if fishers is None:
        return Step("4. Equation 8: one number", formula, "The demo has not stored its Fisher matrices yet.", None)
    (diag_a, diag_b), segments = fishers
    value = frechet_distance(diag_a, diag_b)
    contributions = _segment_sums((unit_trace_root(diag_a) - unit_trace_root(diag_b)) ** 2 / 2, segments)
    figure, axis = _figure(7, 3)
    axis.bar(np.arange(len(segments)), contributions, color="#54a24b")
    axis.set_xlabel("parameter tensor (input → output)"), axis.set_ylabel("its part of d²")
    axis.set_title(f"d = {value:.4f}: the parts sum to d² = {value ** 2:.4f}")
    same = "" if shown is None else f" (the heatmap's cell: {shown:.4f})"
    return Step("4. Equation 8: one number", formula,
                f"Normalised to unit trace, the two diagonals' square roots are compared weight by weight: "
                f"d[{first}, {second}] = {value:.4f}{same}; the bars show which layers make the difference.",
                figure)


def _matrix_step(workspace: Workspace, request: DemoRequest, result) -> Step:
    distances = request.distances()
    row = row_name(distances.view, distances.metric)
    report = latest_validation(workspace, request.suite, request.preset, distances.fisher, row)
    answer, why = verdict(report, row)
    formula = r"\text{closest}(t) = \arg\min_{b \ne t} d[b,t] \quad \text{beats its twin } r[t]\,?"
    if result is None:
        return Step("5. The matrix and its noise", formula, "The demo has not stored its distances yet.", None)
    figure, axis = _figure(6, 5)
    matrix = result.mean
    image = axis.imshow(matrix, cmap="viridis")
    for (b, t), value in np.ndenumerate(matrix):
        axis.text(t, b, f"{value:.2f}", ha="center", va="center", fontsize=8,
                  color="white" if value < matrix.max() / 2 else "black")
    axis.set_xticks(range(len(result.tasks)), result.tasks, rotation=30, ha="right", fontsize=7)
    axis.set_yticks(range(len(result.tasks)), result.tasks, fontsize=7)
    axis.set_xlabel("target t"), axis.set_ylabel("baseline b"), figure.colorbar(image, label="d[b, t]")
    noise = ", ".join(f"{t} {r:.3f}" for t, r in zip(result.tasks, result.reference))
    return Step("5. The matrix and its noise", formula,
                f"Each column ranks the baselines of one target; a ranking means something only if the target's "
                f"twin r[t] ({noise}) is closer than every other task. The verdict ({row}): **{answer}** — {why}.",
                figure)


def _search_step(workspace: Workspace, run_id: str | None) -> Step:
    formula = r"\bar c(X)=\sum_{c\in C}\frac{e^{\alpha_c}}{\sum_{c'}e^{\alpha_{c'}}}\,c(X)"
    events = [e for e in workspace.read_events(f"search:{run_id}") if e.get("type") == "alpha"] if run_id else []
    stored = workspace.get_result("search", run_id) if run_id else None
    if not events or stored is None:
        return Step("7. The related space and FUSE", formula, "The demo's search has not run yet.", None)
    figure, axis = _figure(7, 3)
    weights = np.array([e["weights"] for e in events])
    for index, name in enumerate(events[-1]["candidates"]):
        axis.plot(range(1, len(weights) + 1), weights[:, index], marker="o", markersize=3, label=name)
    axis.set_xlabel("update"), axis.set_ylabel("softmax(α)"), axis.legend(fontsize=7)
    record = stored[0]
    accuracy = record.get("test_accuracy")
    result = "not tested yet" if accuracy is None else f"test accuracy {accuracy:.3f}"
    return Step("7. The related space and FUSE", formula,
                f"The closest task's architectures make a small search space; FUSE trains its candidates together "
                f"and lets softmax(α) pick one: the winner of `{record['target']}` reached {result}.", figure)


def lesson_steps(workspace: Workspace, request: DemoRequest, run_id: str | None = None) -> list[Step]:
    """The lesson's seven steps on the demo's stored results (``run_id``: the demo's search run)."""
    suite, preset = resolve_suite(request.suite, workspace), get_preset(request.preset)
    [result] = stored_distances(workspace, request.distances().replace(archs=request.archs[:1]))
    target = request.target
    closest = result.closest(target, 1)[0]["baseline"] if result is not None else suite.tasks[0].name
    fishers = _probe_fishers(workspace, request, suite, preset, closest, target)
    shown = None if result is None else float(result.matrices[0, result.tasks.index(closest),
                                                               result.tasks.index(target)])
    transfer = Step("6. What close buys: transfer", r"\mathrm{gain}[b,t] = \mathrm{acc}(N_b \to t) - "
                    r"\mathrm{acc}(\text{scratch} \to t)",
                    "A distance is valid if a closer task transfers better. The demo does not measure transfer "
                    "(it takes longer); `python -m tanas_core validate distances --transfer finetune` does, and the "
                    "fair trial (docs/results/fair-trial.md) reports it.", None)
    return [_tasks_step(suite, preset), _networks_step(workspace, request, preset),
            _fisher_step(fishers, closest, target), _equation_step(fishers, closest, target, shown),
            _matrix_step(workspace, request, result), transfer, _search_step(workspace, run_id)]
