"""The work functions behind each background job kind: JSON parameters in, a JSON result out, progress reported.

Each one only translates parameters and progress; the work itself is the library's (zoo, task_distances, nas).
"""
from __future__ import annotations

from .backends import make_backend
from .fuse import SearchBudget
from .jobs import JobContext, register
from .nas import ClosestSettings, compare, parse_target, run_search
from .task_distances import FisherConfig, across_architectures, distance_matrices
from .zoo import parse_archs, resolve_suite, train_zoo

# A demo that shows every stage within a few minutes on a 2-core CPU.
DEMO = dict(suite="mnist4", target="mnist-10class", archs=["vgg16"], preset="demo",
            budget=dict(candidates=3, rounds=1, epochs_per_round=0.5, final_epochs=1.0))


def _search_progress(context: JobContext, budget: SearchBudget):
    announced = []

    def on_event(event: dict) -> None:
        if "run_id" in event and event["run_id"] not in announced:
            announced.append(event["run_id"])
            context.info(run_id=event["run_id"])
        if event.get("type") == "alpha":
            context.progress(f"round {event['round']}/{budget.rounds}, step {event['step']}",
                             min(0.95, (event["round"] - 1) / budget.rounds))
        elif event.get("type") == "candidate":
            context.progress(f"candidate {event['step']}/{budget.random_candidates}",
                             min(0.95, event["step"] / budget.random_candidates))
    return on_event


@register("zoo")
def zoo_job(context: JobContext, params: dict) -> dict:
    """``{suite, archs, seeds, preset, tasks?}`` -> ``{networks: [keys]}``."""
    workspace = context.workspace
    suite = resolve_suite(params["suite"], workspace)
    seeds = int(params.get("seeds", 1))
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")

    def on_event(event) -> None:
        inner = event.progress.fraction if event.progress is not None else (1.0 if event.record else 0.0)
        context.progress(f"{event.task} / {event.arch} / seed {event.seed}: {event.status}",
                         (event.index + inner) / event.total)

    records = train_zoo(workspace, suite, parse_archs(params["archs"]), list(range(seeds)),
                        params.get("preset", "demo"), device=params.get("device", "auto"), tasks=params.get("tasks"),
                        on_event=on_event, should_stop=context.should_stop, backend=job_backend(params))
    return dict(networks=[r.key for r in records], count=len(records))


def job_backend(params: dict):
    """The backend a job's parameters name: ``{backend: "local" | "ray", ray_address}`` (default local)."""
    return make_backend(params.get("backend") or "local", params.get("ray_address") or None)


@register("distances")
def distances_job(context: JobContext, params: dict) -> dict:
    """``{suite, archs, seeds, metric, sigma, preset, samples, head_samples}`` -> the matrices are in the store."""
    workspace = context.workspace
    suite = resolve_suite(params["suite"], workspace)
    archs = parse_archs(params["archs"])
    config = FisherConfig(samples=int(params.get("samples", 256)), head_samples=int(params.get("head_samples", 512)))
    results = []
    for index, arch in enumerate(archs):
        def on_progress(message: str, fraction: float, index=index, arch=arch) -> None:
            if context.should_stop():
                raise InterruptedError("cancelled; finished Fisher results are kept")
            context.progress(f"{arch}: {message}", (index + fraction) / len(archs))

        results.append(distance_matrices(workspace, suite, arch, params.get("metric", "logdet"),
                                         list(range(int(params.get("seeds", 1)))), params.get("preset", "demo"),
                                         sigma=float(params.get("sigma", 1e-3)), config=config,
                                         device=params.get("device", "auto"), on_progress=on_progress,
                                         backend=job_backend(params)))
    return dict(archs=archs, seconds=sum(r.seconds for r in results))


@register("search")
def search_job(context: JobContext, params: dict) -> dict:
    """``{target: "SUITE:TASK", space, method, preset, budget: {...}, seed, closest: {...}}`` -> the search record."""
    workspace = context.workspace
    suite, target = parse_target(params["target"], lambda name: resolve_suite(name, workspace))
    budget = SearchBudget.from_dict(params.get("budget"))
    record = run_search(workspace, suite, target, space=params.get("space", "related"),
                        method=params.get("method", "fuse"), preset=params.get("preset", "demo"), budget=budget,
                        seed=int(params.get("seed", 0)), device=params.get("device", "auto"),
                        closest=ClosestSettings.from_dict(params.get("closest")),
                        on_event=_search_progress(context, budget),
                        should_stop=context.should_stop,
                        on_progress=lambda message, fraction: context.progress(message, 0.0),
                        backend=job_backend(params))
    context.info(run_id=record["run_id"])
    if record["status"] == "stopped":
        raise InterruptedError("search stopped; its partial history is kept")
    return dict(run_id=record["run_id"], status=record["status"], test_accuracy=record.get("test_accuracy"))


@register("compare")
def compare_job(context: JobContext, params: dict) -> dict:
    """``{target, preset, budget, seed, closest}`` -> ``{rows, csv}`` (also stored as a ``comparison`` result)."""
    workspace = context.workspace
    suite, target = parse_target(params["target"], lambda name: resolve_suite(name, workspace))
    budget = SearchBudget.from_dict(params.get("budget"))
    result = compare(workspace, suite, target, params.get("preset", "demo"), budget, int(params.get("seed", 0)),
                     params.get("device", "auto"), ClosestSettings.from_dict(params.get("closest")),
                     on_event=_search_progress(context, budget),
                     on_progress=lambda message, fraction: context.progress(message, fraction),
                     should_stop=context.should_stop, backend=job_backend(params))
    return dict(rows=result["rows"], csv=result["csv"])


@register("demo")
def demo_job(context: JobContext, params: dict) -> dict:
    """The home page's demo: a small zoo, its log-det distances, a short FUSE search on the related space."""
    settings = dict(DEMO, **params)
    workspace = context.workspace
    suite = resolve_suite(settings["suite"], workspace)
    stages = 3

    def staged(stage: int, label: str):
        def report(message: str, fraction: float) -> None:
            if context.should_stop():
                raise InterruptedError("demo cancelled; finished stages are kept")
            context.progress(f"{label}: {message}", (stage + min(1.0, fraction)) / stages)
        return report

    backend = job_backend(settings)
    report = staged(0, "1/3 zoo")
    train_zoo(workspace, suite, settings["archs"], [0], settings["preset"], should_stop=context.should_stop,
              backend=backend,
              on_event=lambda e: report(f"{e.task} / {e.arch}: {e.status}",
                                        (e.index + (e.progress.fraction if e.progress else 0)) / e.total))
    report = staged(1, "2/3 distances")
    results = [distance_matrices(workspace, suite, arch, "logdet", [0], settings["preset"], on_progress=report,
                                 backend=backend) for arch in settings["archs"]]
    combined = results[0] if len(results) == 1 else across_architectures(results)
    closest = combined.closest(settings["target"], 1)
    report = staged(2, "3/3 FUSE")
    budget = SearchBudget.from_dict(settings["budget"])
    search_progress = _search_progress(context, budget)

    def on_event(event: dict) -> None:
        search_progress(event)
        if event.get("type") == "alpha":
            report(f"round {event['round']} step {event['step']}", 0.5)

    record = run_search(workspace, suite, suite.task(settings["target"]), space="related", method="fuse",
                        preset=settings["preset"], budget=budget,
                        closest=ClosestSettings(archs=tuple(settings["archs"]), seeds=1),
                        on_event=on_event, should_stop=context.should_stop, on_progress=report, backend=backend)
    context.info(run_id=record["run_id"])
    return dict(suite=suite.name, target=settings["target"], closest=closest, run_id=record["run_id"],
                test_accuracy=record.get("test_accuracy"))
