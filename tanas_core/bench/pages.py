"""Page benchmarks: every page rendered with AppTest on a populated workspace (``bench pages``)."""
from __future__ import annotations

import statistics
import time

from streamlit.testing.v1 import AppTest

from tanas_core.distances.matrices import distance_matrices
from tanas_core.errors import TanasError
from tanas_core.requests import DistanceRequest, SearchBudget, SearchRequest
from tanas_core.search.nas import run_search
from tanas_core.workspace.context import quiet_context

APP_PAGES = ("app.py", "app_pages/1_Tasks.py", "app_pages/2_Zoo.py", "app_pages/3_Distances.py",
             "app_pages/4_Search.py")
# Widget values that point a page at the results the benchmark stored (label -> value).
_PAGE_SETTINGS = {"app_pages/3_Distances.py": {"Suite": "mnist4", "Preset": "smoke"},
                  "app_pages/4_Search.py": {"Suite": "mnist4", "Preset": "smoke"}}


def populate_for_pages(workspace) -> None:
    """Store what the pages show: the ``mnist4`` VGG zoo (smoke preset, 1 seed), its distances (default metric) with the
    pages' default Fisher settings, and a tiny finished FUSE search with its event stream."""
    context = quiet_context(workspace)
    distance_matrices(DistanceRequest(suite="mnist4", archs=("vgg16",), seeds=1, preset="smoke"), context)
    run_search(SearchRequest(target="mnist4:mnist-10class", space="standard", method="fuse", preset="smoke",
                             budget=SearchBudget(candidates=2, rounds=1, epochs_per_round=1, final_epochs=1)), context)


def bench_pages(repo, repeats: int = 5) -> list[dict]:
    """Time AppTest runs of every page on the current workspace: a new session's first render (with the page's
    widgets pointed at stored results) and a rerun of it; medians over ``repeats`` sessions. ``ValueError`` when a
    page raises."""
    rows = []
    for page in APP_PAGES:
        first, rerun = [], []
        for _ in range(repeats):
            app = AppTest.from_file(str(repo / page), default_timeout=120)
            started = time.perf_counter()
            app.run()
            settings = _PAGE_SETTINGS.get(page, {})
            for widget in app.selectbox:
                if widget.label in settings:
                    widget.set_value(settings[widget.label])
            if settings:
                started = time.perf_counter()  # the render that shows the stored results
                app.run()
            first.append(time.perf_counter() - started)
            started = time.perf_counter()
            app.run()
            rerun.append(time.perf_counter() - started)
            if app.exception:
                raise TanasError(f"{page} raised: {app.exception[0].message}")
        rows.append(dict(page=page, first_render_s=statistics.median(first), rerun_s=statistics.median(rerun),
                         slowest_s=max(first + rerun), goal_s=2.0, within_goal=max(first + rerun) <= 2.0))
    return rows
