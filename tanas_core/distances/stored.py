"""Where distance results live in the workspace: their store keys, the stored result of a request, and the nearest
stored result when the asked-for one is missing (read-only: nothing here computes)."""
from __future__ import annotations

from tanas_core.data.suites import Suite, resolve_suite
from tanas_core.distances.metrics import get_metric
from tanas_core.distances.views import get_view
from tanas_core.requests import DistanceRequest, FisherConfig
from tanas_core.training.trainer import Preset, get_preset
from tanas_core.training.zoo import network_key
from tanas_core.workspace.records import DistanceResult
from tanas_core.workspace.store import Workspace, config_key


def distances_key(suite: Suite, arch: str, metric: str, seeds: list[int], preset: Preset, sigma: float,
                   config: FisherConfig) -> str:
    """The store key of one architecture's matrices: its networks, the metric (``sigma`` only where the metric uses
    it) and the Fisher settings."""
    return config_key(dict(kind="distances", networks=[network_key(suite, t, arch, preset, s) for s in seeds
                                                       for t in suite.tasks],
                           metric=metric, sigma=sigma if get_metric(metric).uses_sigma else None,
                           config=config.identity()))


def request_key(request: DistanceRequest, suite: Suite, arch: str) -> str:
    """The store key of ``request``'s result for ``arch``: the matrices' key with the reference, bootstrap and the
    view's key fields (none for the view results were first stored under, so earlier results keep their keys)."""
    key = distances_key(suite, arch, request.metric, list(range(request.seeds)), get_preset(request.preset),
                         request.sigma, request.fisher)
    view = get_view(request.view)
    extras = dict(replicates=request.replicates, bootstrap=request.bootstrap)
    extras.update(view.key)
    if request.twin_kind != view.own_reference:  # the view's own reference adds nothing: stored results keep keys
        extras["twins"] = request.twin_kind
    return config_key(dict(matrices=key, **extras)) if any(extras.values()) else key


def stored_distances(workspace: Workspace, request: DistanceRequest) -> list[DistanceResult | None]:
    """Per architecture of ``request.archs``, the stored result of ``distance_matrices`` for this request, or
    ``None`` (never computes anything; checks the request's shape, not what computing it would need)."""
    request.validate()
    suite = resolve_suite(request.suite, workspace)
    results = []
    for arch in request.archs:
        stored = workspace.get_result("distances", request_key(request, suite, arch))
        results.append(None if stored is None else DistanceResult.from_payload(stored[0], cached=True))
    return results


def _differences(asked: dict, stored: dict, prefix: str = "") -> list[str]:
    """``"name stored (asked: value)"`` for every setting in which ``stored`` differs from ``asked``."""
    out = []
    for name, value in asked.items():
        other = stored.get(name)
        if isinstance(value, dict) and isinstance(other, dict):
            out += _differences(value, other, f"{prefix}{name}.")
        elif name not in ("workers", "archs") and other != value:
            out.append(f"{prefix}{name} {other} (asked: {value})")
    return out


def nearest_stored(workspace: Workspace, request: DistanceRequest,
                   arch: str) -> tuple[DistanceResult, list[str]] | None:
    """The stored result of ``arch`` on ``request``'s suite (and view) whose settings differ from the request's in
    the fewest fields (the newest on a tie), with those differences; ``None`` when there is none. Shown while the
    asked-for result is missing, so changing a setting does not hide what exists."""
    asked, best = request.for_arch(arch).to_dict(), None
    for payload in workspace.list_results("distances"):
        stored = payload.get("request")
        if (stored is None or payload["suite"] != request.suite or payload["arch"] != arch
                or payload.get("view", "tanas") != request.view):
            continue
        # read as an earlier version stored it: a field added since at the value it ran with (``ADDED_AT``)
        differences = _differences(asked, DistanceRequest.from_stored(stored).to_dict())
        if best is None or len(differences) < len(best[1]):
            best = (payload, differences)
    return None if best is None else (DistanceResult.from_payload(best[0], cached=True), best[1])
