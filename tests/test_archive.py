"""A workspace exported on one machine and imported on another holds the same networks, Fishers, distances and
pages; an archive that was tampered with, truncated or points outside the workspace is refused with nothing
imported."""
from __future__ import annotations

import json
import os
import zipfile

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from conftest import REPO
from tanas_core.cli import main
from tanas_core.data.tasks import make_task
from tanas_core.distances.matrices import distance_matrices
from tanas_core.distances.stored import stored_distances
from tanas_core.errors import TanasError
from tanas_core.requests import DistanceRequest, FisherConfig
from tanas_core.workspace.archive import export_workspace, import_workspace
from tanas_core.workspace.context import quiet_context
from tanas_core.workspace.store import ArtifactRef, Workspace

TASKS = (make_task("digits-zero", "digits", [["0"]], other=True),
         make_task("digits-10class", "digits", [[str(d)] for d in range(10)]))
REQUEST = DistanceRequest(suite="custom", archs=("vgg16",), seeds=1, metric="frechet", preset="tiny", replicates=1,
                          bootstrap=4, view="tanas", fisher=FisherConfig(samples=24, head_samples=48, chunks=4))


@pytest.fixture
def prepared(tmp_path, tiny_preset) -> tuple[Workspace, str]:
    """A workspace with a custom suite's zoo, its Fishers and a distance result, exported to an archive."""
    space = Workspace(tmp_path / "prepared")
    for task in TASKS:
        space.save_task(task)
    for view in ("tanas", "probe"):  # zoo networks and their replicates; the probe network (a stored result)
        distance_matrices(REQUEST.replace(view=view), quiet_context(space, "cpu"))
    archive = str(tmp_path / "lesson.zip")
    counts = export_workspace(space, archive)
    assert counts["networks"] >= 2 and counts["files"] >= counts["networks"] and counts["results"] >= 1
    return space, archive


def _index(space: Workspace) -> dict:
    with space.connect() as conn:
        return {table: sorted(json.dumps(dict(row), sort_keys=True, default=str)
                              for row in conn.execute(f"SELECT * FROM {table}"))
                for table in ("tasks", "networks", "results", "events")}


@pytest.mark.integration
def test_an_imported_workspace_holds_the_same_results_and_shows_the_same_pages(prepared, tmp_path, monkeypatch):
    source, archive = prepared
    fresh = Workspace(tmp_path / "classroom")
    added = import_workspace(fresh, archive)
    assert added["networks"] == len(source.list_networks()) and added["files"] > 0
    assert _index(fresh) == _index(source)
    # the stored distances are found, not recomputed, and equal the source's
    [mine], [theirs] = stored_distances(fresh, REQUEST), stored_distances(source, REQUEST)
    assert mine is not None and np.array_equal(mine.matrices, theirs.matrices)
    assert np.array_equal(mine.bootstrap, theirs.bootstrap)
    # every network's weights load (sha256 checked on read)
    for record in fresh.list_networks():
        assert fresh.read_tensors(ArtifactRef(record.checkpoint, record.sha256))
    # importing again adds nothing and keeps everything
    assert import_workspace(fresh, archive) == dict(tasks=0, networks=0, results=0, events=0, files=0)
    # the same pages: the Zoo page's table on both workspaces
    tables = []
    for space in (source, fresh):
        monkeypatch.setenv("TANAS_HOME", str(space.root))
        app = AppTest.from_file(str(REPO / "app_pages/2_Zoo.py"), default_timeout=120).run()
        assert not app.exception
        tables.append([frame.value.to_json() for frame in app.dataframe])
    assert tables[0] == tables[1] and tables[0]


def _rewrite(archive: str, out: str, change) -> None:
    """Copy ``archive`` to ``out`` with ``change(name, data) -> data`` applied to each member."""
    with zipfile.ZipFile(archive) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            target.writestr(info.filename, change(info.filename, source.read(info)))


@pytest.mark.integration
def test_a_tampered_truncated_or_escaping_archive_is_refused_and_nothing_is_imported(prepared, tmp_path):
    _, archive = prepared
    fresh = Workspace(tmp_path / "classroom")
    before = _index(fresh)
    tampered = str(tmp_path / "tampered.zip")
    _rewrite(archive, tampered, lambda name, data: data if name == "manifest.json" or not name.endswith(
        ".safetensors") else data[:-1] + bytes([data[-1] ^ 1]))
    truncated = str(tmp_path / "truncated.zip")
    with open(archive, "rb") as handle, open(truncated, "wb") as out:
        out.write(handle.read()[: os.path.getsize(archive) // 2])

    def escape(name, data):
        if name != "manifest.json":
            return data
        manifest = json.loads(data)
        first = next(iter(manifest["files"]))
        manifest["files"]["../../outside.safetensors"] = manifest["files"].pop(first)
        return json.dumps(manifest).encode()

    escaping = str(tmp_path / "escaping.zip")
    _rewrite(archive, escaping, escape)
    not_zip = tmp_path / "notes.zip"
    not_zip.write_text("not an archive")
    for bad, why in ((tampered, "does not match its sha256"), (truncated, "not a readable zip"),
                     (escaping, "outside the workspace"), (str(not_zip), "not a readable zip")):
        with pytest.raises(TanasError, match=why) as refused:
            import_workspace(fresh, bad)
        assert "nothing was imported" in str(refused.value)
        assert _index(fresh) == before
        assert not list((fresh.root / "artifacts").rglob("*.safetensors"))
        assert not [p for p in fresh.root.iterdir() if p.name.startswith(".import-")]


@pytest.mark.integration
def test_workspace_export_and_import_on_the_command_line(prepared, tmp_path, capsys):
    source, archive = prepared
    out = tmp_path / "again.zip"
    assert main(["--workspace", str(source.root), "workspace", "export", str(out), "--suites", "custom"]) == 0
    assert "networks" in capsys.readouterr().out
    assert main(["--workspace", str(tmp_path / "other"), "workspace", "import", str(out)]) == 0
    assert f"imported {out}" in capsys.readouterr().out
    assert main(["--workspace", str(tmp_path / "other"), "workspace", "export", str(out), "--suites", "nope"]) == 2
    assert "unknown suite" in capsys.readouterr().err
    assert main(["--workspace", str(tmp_path / "other"), "workspace", "import", str(tmp_path / "missing.zip")]) == 2
    assert "no archive" in capsys.readouterr().err


@pytest.mark.integration
def test_a_search_winner_is_verified_exported_and_imported_with_its_sha256(tmp_path, real_data, tiny_preset):
    from tanas_core.requests import SearchBudget, SearchRequest
    from tanas_core.search import nas
    from tanas_core.workspace.archive import verify_artifacts

    source = Workspace(tmp_path / "prepared")
    request = SearchRequest(target="mnist4:mnist-digit0", space="standard", preset="tiny",
                            budget=SearchBudget(candidates=2, rounds=1, epochs_per_round=0.3, final_epochs=1))
    record = nas.run_search(request, quiet_context(source, "cpu"))
    assert record.status == "done" and record.checkpoint
    assert verify_artifacts(source) == dict(checked=1, bad=[])
    archive = tmp_path / "search.zip"
    assert export_workspace(source, archive, ["mnist4"])["files"] == 1
    fresh = Workspace(tmp_path / "classroom")
    assert import_workspace(fresh, archive)["files"] == 1
    assert nas.get_search(fresh, record.run_id) == record
    assert fresh.read_tensors(ArtifactRef(record.checkpoint, record.checkpoint_sha256))
    # a winner's weights altered on disk are named, and the workspace is not exported
    path = source.root / record.checkpoint
    data = path.read_bytes()
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    assert verify_artifacts(source)["bad"] == [record.checkpoint]
    with pytest.raises(TanasError, match="does not match its recorded sha256"):
        export_workspace(source, tmp_path / "again.zip")
