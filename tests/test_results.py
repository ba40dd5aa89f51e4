"""Results pages are generated from committed JSON: `validate table` renders a report, and every report committed
under docs/results/ renders to exactly the table its page shows."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from conftest import REPO
from tanas_core.bench.coverage import coverage_markdown
from tanas_core.bench.transcript import Transcript, is_transcript, transcript_markdown
from tanas_core.cli import main
from tanas_core.cli.validate import curve_markdown, report_markdown

RESULTS = REPO / "docs" / "results"
COMMITTED = sorted(RESULTS.glob("*.json"))


def _report() -> dict:
    figures = dict(identity_top1=0.965, signal_to_noise=10.1, same_dataset_auc=1.0, closest_stability=0.806,
                   logdet_lift=None, seconds=12.0, rank_agreement=0.4,
                   intervals=dict(identity_top1=[0.92, 1.0], signal_to_noise=[8.73, 11.25]))
    missing = dict(figures, identity_top1=0.549, signal_to_noise=1.16,
                   intervals=dict(identity_top1=[0.5, 0.6], signal_to_noise=[1.11, 1.17]))
    return dict(suite="ld8", archs=["vgg16", "resnet18"], seeds=3, replicates=2, preset="demo",
                fisher=dict(samples=800, head="refit", head_weight_decay=0.3), default_metric="probe:frechet",
                metrics={"frechet": missing, "probe:frechet": figures},
                epsilon=dict(networks=3, met=2, by_dataset=dict(mnist=dict(networks=3, met=2, epsilon=0.2,
                                                                            min_accuracy=0.71, mean_accuracy=0.9))))


@pytest.mark.unit
def test_a_report_renders_every_row_with_its_figures_intervals_and_verdict():
    table = report_markdown(_report(), "docs/results/x.json")
    lines = table.splitlines()
    assert lines[0].startswith("`ld8`: vgg16, resnet18, 3 seed(s), 2 twin(s)") and "M = 800" in lines[0]
    assert "(from `docs/results/x.json`)" in lines[0]
    assert lines[2].startswith("ε-approximations (test accuracy ≥ 1 − ε), zoo networks of the TA-NAS rows: 2 of 3;")
    assert "mnist 2/3 (ε = 0.2, test accuracy 0.710-0.900 min-mean)" in lines[2]
    rows = {line.split(" | ")[0].strip("| *"): line for line in lines if line.startswith("| ") and "---" not in line}
    assert "0.549 [0.50, 0.60]" in rows["frechet"] and rows["frechet"].endswith("| no |")
    # the default row in bold; its identity interval reaches below 0.95: a yes that is not settled
    assert rows["probe:frechet"].startswith("| **probe:frechet** |")
    assert "0.965 [0.92, 1.00]" in rows["probe:frechet"] and "10.100 [8.73, 11.25]" in rows["probe:frechet"]
    assert rows["probe:frechet"].endswith("| yes, not settled |") and "| n/a |" in rows["probe:frechet"]


@pytest.mark.unit
def test_validate_table_prints_the_reports_and_refuses_a_file_that_is_not_one(tmp_path, capsys):
    path = tmp_path / "report.json"
    path.write_text(json.dumps(_report()))
    assert main(["validate", "table", str(path)]) == 0
    assert capsys.readouterr().out == report_markdown(_report(), str(path))
    out = tmp_path / "table.md"
    assert main(["validate", "table", str(path), "--out", str(out)]) == 0
    assert out.read_text() == report_markdown(_report(), str(path))
    (tmp_path / "other.json").write_text(json.dumps({"suite": "ld8"}))
    assert main(["validate", "table", str(tmp_path / "other.json")]) == 2
    assert "is not a validation report" in capsys.readouterr().err


def _rendered(path) -> tuple[str, str]:
    """The table a committed JSON file renders to, and the command that prints it."""
    data, name = json.loads(path.read_text()), str(path.relative_to(REPO))
    if isinstance(data, dict) and "metrics" in data:
        return report_markdown(data, name), f"python -m tanas_core validate table {name}"
    if is_transcript(data):
        return transcript_markdown(data, name), f"python -m tanas_core bench show {name}"
    return coverage_markdown(data), f"python -m tanas_core bench coverage --from {name}"


@pytest.mark.unit
def test_the_curve_table_has_a_line_per_report_and_row_with_what_each_preset_trains_for(tmp_path, capsys):
    averaged = dict(_report(), preset="epsilon-avg", metrics={"frechet": _report()["metrics"]["frechet"],
                                                               "frechet@redraw": _report()["metrics"]["probe:frechet"],
                                                               "probe:frechet": _report()["metrics"]["probe:frechet"]})
    table = curve_markdown([_report(), averaged])
    lines = [line for line in table.splitlines()[2:]]
    assert len(lines) == 3  # the probe row is not a row of the source's view: left out
    assert lines[0].startswith("| `ld8` | `demo` | 3 epochs (densenet121: 2) on 2,000 training images | 2/3 | 0.900 | "
                               "refit (0.3) | frechet | retrained | "
                               "0.549 [0.50, 0.60]")
    assert lines[0].endswith("| no |")
    assert "until epsilon = 0.05 (at most 12 epochs), averaged over 1 more epoch(s)" in lines[1]
    assert "| frechet | redraw | 0.965 [0.92, 1.00] | 10.100 [8.73, 11.25] | yes, not settled |" in lines[2]
    path = tmp_path / "report.json"
    path.write_text(json.dumps(averaged))
    assert main(["validate", "curve", str(path)]) == 0 and capsys.readouterr().out == curve_markdown([averaged])


@pytest.mark.unit
def test_the_curve_fits_each_rows_trend_against_the_training_budget_and_says_what_budget_its_goal_needs():
    from tanas_core.distances.curve import budget_trend, images_seen
    from tanas_core.training.trainer import get_preset

    demo = _report()
    longer = dict(_report(), preset="long")
    longer["metrics"] = {name: dict(figures, signal_to_noise=figures["signal_to_noise"] + 1.0, identity_top1=0.5)
                         for name, figures in demo["metrics"].items()}
    policy = dict(_report(), preset="epsilon-avg")  # epochs differ per network: no fixed budget
    assert images_seen(get_preset("demo"), ["vgg16", "resnet18"]) == 6000
    assert images_seen(get_preset("long-avg"), ["vgg16", "densenet121"]) == 8000 * 9
    assert images_seen(get_preset("epsilon-avg"), ["vgg16"]) is None
    [trend] = budget_trend([demo, policy, longer])  # only the source's rows: probe:frechet is left out
    assert (trend["row"], trend["twins"], trend["averaged"], trend["budgets"]) == ("frechet", "retrained", False,
                                                                                   [6000, 64000])
    noise = trend["figures"]["signal_to_noise"]
    per_tenfold = 1.0 / np.log10(64000 / 6000)
    assert noise["values"] == [1.16, 2.16] and noise["per_tenfold"] == pytest.approx(per_tenfold)
    assert noise["goal"] == pytest.approx(np.log10(64000) + (3.0 - 2.16) / per_tenfold)  # where the line meets 3
    assert trend["figures"]["identity_top1"]["goal"] == "never"  # 0.549 -> 0.5: the line falls
    met = dict(longer, metrics={"frechet": dict(longer["metrics"]["frechet"], signal_to_noise=3.5)})
    assert budget_trend([demo, met])[0]["figures"]["signal_to_noise"]["goal"] == "met"
    assert budget_trend([demo, policy]) == []  # one fixed budget: no trend
    assert budget_trend([demo, dict(demo)]) == []  # two zoos at one budget: still no trend
    another_zoo = dict(demo, metrics={"frechet": dict(demo["metrics"]["frechet"], signal_to_noise=1.36)})
    [both] = budget_trend([demo, longer, another_zoo])  # two reports at the demo's budget: two points of the line
    assert both["budgets"] == [6000, 6000, 64000]
    assert both["figures"]["signal_to_noise"]["values"] == [1.16, 1.36, 2.16]
    assert both["figures"]["signal_to_noise"]["per_tenfold"] == pytest.approx(
        np.polyfit(np.log10([6000, 6000, 64000]), [1.16, 1.36, 2.16], 1)[0])
    other_head = dict(longer, fisher=dict(demo["fisher"], head_weight_decay=1e-4))
    assert budget_trend([demo, other_head]) == []  # other Fisher settings: another line, of one budget
    table = curve_markdown([demo, longer])
    assert ("| `ld8` | refit (0.3), M = 800 | frechet | retrained | no | 6,000 → 64,000 | 0.549 → 0.500 | -0.048 | "
            "never (the line falls) | 1.160 → 2.160 | +0.973 | ~10^5.7 images (10^0.9 x the largest) |") in table
    assert "Trend" not in curve_markdown([demo, policy])


def _curve_files() -> list:
    """The committed curve reports in the order their page shows them: by suite, then preset registration order."""
    from tanas_core.registry import PRESETS

    files = [(json.loads(path.read_text()), path) for path in RESULTS.glob("curve-*.json")]
    return [path for _, path in sorted(files, key=lambda item: (item[0]["suite"], list(PRESETS).index(
        item[0]["preset"])))]


@pytest.mark.unit
def test_the_committed_curve_renders_to_the_table_its_page_shows():
    files = _curve_files()
    if not files:
        pytest.skip("no curve reports committed")
    table = curve_markdown([json.loads(path.read_text()) for path in files])
    command = "python -m tanas_core validate curve " + " ".join(str(p.relative_to(REPO)) for p in files)
    assert table in (RESULTS / "preconditions.md").read_text(), f"regenerate it with `{command}`"


@pytest.mark.unit
@pytest.mark.parametrize("result", COMMITTED, ids=lambda path: path.name)
def test_every_committed_result_renders_to_the_table_its_page_shows(result):
    table, command = _rendered(result)
    pages = [page for page in RESULTS.glob("*.md") if table in page.read_text()]
    assert pages, f"no page under docs/results shows the table of {result.name}; regenerate it with `{command}`"


@pytest.mark.unit
def test_a_benchmark_transcript_keeps_what_it_printed_and_renders_it_as_markdown(tmp_path, capsys):
    out = Transcript("cells", argv=["bench", "cells", "--runs", "2", "--json", "somewhere.json"])
    out.line("cell network step benchmark: batch 64\nsecond line")
    out.table([dict(network="VGG | 16", ms_per_image=0.48, x_vgg="1.00x"), dict(network="cells", ms_per_image=4.05)])
    out.line("")
    out.line("goals: met")
    printed = capsys.readouterr().out
    assert "cell network step benchmark: batch 64" in printed and "VGG | 16" in printed
    path = tmp_path / "bench-cells.json"
    out.save(str(path))
    assert capsys.readouterr().out == f"wrote {path}\n"
    data = json.loads(path.read_text())
    assert data["command"] == "python -m tanas_core bench cells --runs 2"
    markdown = transcript_markdown(data, "docs/results/bench-cells.json")
    lines = markdown.splitlines()
    assert lines[0].startswith("`python -m tanas_core bench cells --runs 2` on ") and "(from `docs/results/" in lines[0]
    assert lines[2:4] == ["cell network step benchmark: batch 64\\", "second line"]
    # a table takes the union of its rows' columns; a missing cell is empty and a pipe is escaped
    assert lines[5:9] == ["| network | ms_per_image | x_vgg |", "| --- | --- | --- |",
                          "| VGG \\| 16 | 0.48 | 1.00x |", "| cells | 4.05 |  |"]
    assert lines[-1] == "goals: met"
    assert main(["bench", "show", str(path)]) == 0
    assert capsys.readouterr().out == transcript_markdown(data, str(path))
    (tmp_path / "other.json").write_text(json.dumps({"suite": "ld8"}))
    assert main(["bench", "show", str(tmp_path / "other.json")]) == 2
    assert "is not a benchmark transcript" in capsys.readouterr().err


def _tables(page) -> list[str]:
    """The Markdown tables of a page: runs of lines starting with ``|``."""
    tables, current = [], []
    for line in page.read_text().splitlines() + [""]:
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append("\n".join(current))
            current = []
    return tables


@pytest.mark.unit
def test_every_table_of_a_results_page_is_generated_from_a_committed_file():
    """No typed tables: each table of a results page (but the index and the history, which hold none) is part of
    what a committed file renders to, or of a `validate curve` the page names with its files."""
    renders = [_rendered(path)[0] for path in COMMITTED]
    for page in RESULTS.glob("*.md"):
        for command in re.findall(r"`python -m tanas_core validate curve ([^`]+)`", page.read_text()):
            renders.append(curve_markdown([json.loads((REPO / name).read_text()) for name in command.split()]))
    for page in sorted(RESULTS.glob("*.md")):
        if page.name in ("README.md", "history.md"):
            continue
        for table in _tables(page):
            assert any(table in render for render in renders), \
                f"{page.name}: a table no committed file renders to: {table.splitlines()[0][:120]}"
