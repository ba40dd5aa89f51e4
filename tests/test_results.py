"""Results pages are generated from committed JSON: `validate table` renders a report, and every report committed
under docs/results/ renders to exactly the table its page shows."""
from __future__ import annotations

import json

import pytest

from conftest import REPO
from tanas_core.cli import main
from tanas_core.cli.validate import report_markdown

RESULTS = REPO / "docs" / "results"
COMMITTED = sorted(RESULTS.glob("*.json"))


def _report() -> dict:
    figures = dict(identity_top1=0.965, signal_to_noise=10.1, same_dataset_auc=1.0, closest_stability=0.806,
                   logdet_lift=None, seconds=12.0, rank_agreement=0.4,
                   intervals=dict(identity_top1=[0.92, 1.0], signal_to_noise=[8.73, 11.25]))
    missing = dict(figures, identity_top1=0.549, signal_to_noise=1.16,
                   intervals=dict(identity_top1=[0.5, 0.6], signal_to_noise=[1.11, 1.17]))
    return dict(suite="ld8", archs=["vgg16", "resnet18"], seeds=3, replicates=2, preset="demo",
                fisher=dict(samples=800), default_metric="probe:frechet",
                metrics={"frechet": missing, "probe:frechet": figures})


@pytest.mark.unit
def test_a_report_renders_every_row_with_its_figures_intervals_and_verdict():
    table = report_markdown(_report(), "docs/results/x.json")
    lines = table.splitlines()
    assert lines[0].startswith("`ld8`: vgg16, resnet18, 3 seed(s), 2 twin(s)") and "M = 800" in lines[0]
    assert "(from `docs/results/x.json`)" in lines[0]
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


@pytest.mark.unit
@pytest.mark.parametrize("report", COMMITTED, ids=lambda path: path.name)
def test_every_committed_report_renders_to_the_table_its_page_shows(report):
    table = report_markdown(json.loads(report.read_text()), str(report.relative_to(REPO)))
    pages = [page for page in RESULTS.glob("*.md") if table in page.read_text()]
    assert pages, (f"no page under docs/results shows the table of {report.name}; regenerate it with "
                   f"`python -m tanas_core validate table {report.relative_to(REPO)}`")
