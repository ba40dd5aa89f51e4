"""A workspace as one file: prepare on a fast machine, show on a classroom laptop.

``export_workspace`` writes a zip holding ``manifest.json`` (the index rows of the chosen suites' networks, Fishers,
distance results, reports and searches, their event streams and the custom tasks, as JSON) and the safetensors files
those rows point to, each listed with its sha256. ``import_workspace`` checks everything before it touches the
workspace: the manifest's form, every file's path (inside ``artifacts/``, a safetensors name), size and sha256
(against the manifest and the rows that point to it). Files are written to a staging folder first, then moved into
place and the rows committed in one transaction; any failure removes what was staged and moved and leaves the
index as it was. Nothing in an archive is executed: JSON and safetensors only, never a pickle.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
import zipfile
from pathlib import Path, PurePosixPath

from tanas_core.errors import TanasError
from tanas_core.workspace.store import Workspace, sha256_file

FORMAT = "tanas-workspace-archive"
VERSION = 1
TABLES = ("tasks", "networks", "results", "events")
_MAX_MANIFEST_BYTES = 512 << 20


def _rows(workspace: Workspace, table: str) -> list[dict]:
    with workspace.connect() as conn:
        return [dict(row) for row in conn.execute(f"SELECT * FROM {table}")]


def _result_suite(row: dict) -> str | None:
    payload = json.loads(row["payload"])
    if not isinstance(payload, dict):
        return None
    return payload.get("suite") or (str(payload.get("target") or "").split(":")[0] or None)


def _selection(workspace: Workspace, suites: list[str] | None) -> dict[str, list[dict]]:
    """The rows to export: every row, or the networks of ``suites`` with the results that belong to them (by their
    suite, or the network their Fisher was taken with), the event streams of those searches and every custom
    task."""
    networks, results = _rows(workspace, "networks"), _rows(workspace, "results")
    events, tasks = _rows(workspace, "events"), _rows(workspace, "tasks")
    if suites is not None:
        networks = [row for row in networks if row["suite"] in suites]
        chosen = [row for row in results if _result_suite(row) in suites]
        keys = {row["key"] for row in networks} | {row["key"] for row in chosen if row["kind"] == "probe_network"}
        taken = {(row["kind"], row["key"]) for row in chosen}
        chosen += [row for row in results if row["kind"] == "fisher" and (row["kind"], row["key"]) not in taken
                   and json.loads(row["payload"]).get("network") in keys]
        results = chosen
        streams = {f"search:{row['key']}" for row in results if row["kind"] == "search"}
        events = [row for row in events if row["stream"] in streams]
    return dict(tasks=tasks, networks=networks, results=results, events=events)


def _files(rows: dict[str, list[dict]]) -> dict[str, str]:
    """``{path relative to the workspace: sha256}`` of every artifact the rows point to."""
    files = {row["checkpoint"]: row["sha256"] for row in rows["networks"]}
    files.update({row["artifact"]: row["sha256"] for row in rows["results"] if row["artifact"]})
    return files


def _mismatched(workspace: Workspace, files: dict[str, str]) -> list[str]:
    """The paths among ``files`` that are missing or whose bytes no longer match their sha256."""
    return [relative for relative, digest in files.items()
            if not (workspace.root / relative).is_file() or sha256_file(workspace.root / relative) != digest]


def verify_artifacts(workspace: Workspace) -> dict:
    """Check every artifact the index names (checkpoints, Fishers, results) against its recorded sha256:
    ``{checked, bad: [paths relative to the workspace]}``."""
    files = _files(_selection(workspace, None))
    return dict(checked=len(files), bad=_mismatched(workspace, files))


def export_workspace(workspace: Workspace, path: str | Path, suites: list[str] | None = None) -> dict:
    """Write the workspace (or the chosen ``suites``) to the zip ``path``; returns ``{networks, results, files,
    bytes}``. Every file is checked against its recorded sha256 first, so a corrupt workspace is not exported."""
    rows = _selection(workspace, suites)
    files = _files(rows)
    bad = _mismatched(workspace, files)
    if bad:
        raise TanasError(f"{workspace.root / bad[0]} is missing or does not match its recorded sha256; rebuild it "
                         "(re-run the command that made it) before exporting")
    manifest = dict(format=FORMAT, version=VERSION, created_at=time.time(), suites=suites, rows=rows,
                    files={relative: dict(sha256=digest, bytes=(workspace.root / relative).stat().st_size)
                           for relative, digest in files.items()})
    path = Path(path)
    temporary = path.with_name(f".{path.name}.partial")
    try:
        with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_STORED) as archive:
            archive.writestr("manifest.json", json.dumps(manifest))
            for relative in files:
                archive.write(workspace.root / relative, relative)
        os.replace(temporary, path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise TanasError(f"could not write {path} ({error.strerror}); choose a writable place with free space") \
            from error
    return dict(networks=len(rows["networks"]), results=len(rows["results"]), files=len(files),
                bytes=path.stat().st_size)


def _refuse(name: str, why: str) -> TanasError:
    return TanasError(f"{name} is not a workspace archive this project can import ({why}); nothing was imported. "
                      "Export it again with `python -m tanas_core workspace export FILE` (or the Home page)")


def _manifest(archive: zipfile.ZipFile, name: str) -> dict:
    """The archive's manifest, checked for its form: the format, the version, the tables and the file list."""
    try:
        info = archive.getinfo("manifest.json")
        if info.file_size > _MAX_MANIFEST_BYTES:
            raise _refuse(name, "its manifest is too large")
        manifest = json.loads(archive.read(info))
    except KeyError:
        raise _refuse(name, "no manifest.json") from None
    except (ValueError, zipfile.BadZipFile) as error:
        raise _refuse(name, f"its manifest is unreadable: {error}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise _refuse(name, "not a TA-NAS Studio workspace archive")
    if manifest.get("version") != VERSION:
        raise _refuse(name, f"archive version {manifest.get('version')!r}, this project reads {VERSION}")
    rows, files = manifest.get("rows"), manifest.get("files")
    if not isinstance(rows, dict) or set(rows) != set(TABLES) or not isinstance(files, dict) \
            or not all(isinstance(rows[t], list) and all(isinstance(r, dict) for r in rows[t]) for t in TABLES):
        raise _refuse(name, "its manifest lacks the tables or the file list")
    for relative, entry in files.items():
        parts = PurePosixPath(relative).parts
        if (PurePosixPath(relative).is_absolute() or ".." in parts or not parts or parts[0] != "artifacts"
                or not relative.endswith(".safetensors") or not isinstance(entry, dict)):
            raise _refuse(name, f"a file outside the workspace's artifacts: {relative!r}")
    pointed = _files(rows)
    if set(pointed) != set(files) or any(files[p]["sha256"] != digest for p, digest in pointed.items()):
        raise _refuse(name, "its rows and its file list disagree")
    return manifest


def _stage(archive: zipfile.ZipFile, manifest: dict, staging: Path, name: str) -> None:
    """Extract every listed file into ``staging``, checking its size and sha256 on the way."""
    for relative, entry in manifest["files"].items():
        target = staging / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        digest, size = hashlib.sha256(), 0
        try:
            with archive.open(relative) as source, open(target, "wb") as out:
                for block in iter(lambda: source.read(1 << 20), b""):
                    digest.update(block)
                    size += len(block)
                    out.write(block)
        except KeyError:
            raise _refuse(name, f"{relative} is listed but missing") from None
        except (zipfile.BadZipFile, EOFError, OSError) as error:
            raise _refuse(name, f"{relative} cannot be read: {error}") from None
        if digest.hexdigest() != entry.get("sha256") or size != entry.get("bytes"):
            raise _refuse(name, f"{relative} does not match its sha256 (truncated or altered)")


def _insert(conn, table: str, rows: list[dict]) -> int:
    """Insert ``rows`` that are not in ``table`` yet (same primary key: the workspace's row is kept)."""
    columns = {row["name"] for row in conn.execute(f"PRAGMA table_info({table})")}
    added = 0
    for row in rows:
        unknown = set(row) - columns
        if unknown:
            raise TanasError(f"the archive's {table} rows have columns this workspace does not know: "
                             f"{sorted(unknown)}; nothing was imported")
        names = ", ".join(row)
        cursor = conn.execute(f"INSERT OR IGNORE INTO {table} ({names}) VALUES ({', '.join('?' for _ in row)})",
                              tuple(row.values()))
        added += cursor.rowcount
    return added


def import_workspace(workspace: Workspace, path: str | Path) -> dict:
    """Check the archive ``path`` in full, then add its rows and files to ``workspace`` (rows the workspace already
    holds are kept as they are); returns ``{table: rows added, files}``. ``TanasError`` naming the problem, with
    nothing imported, when the archive is not one, is truncated, or a file or row does not match."""
    path, name = Path(path), Path(path).name
    if not path.is_file():
        raise TanasError(f"no archive at {path}; give a file written by `python -m tanas_core workspace export`")
    staging = Path(tempfile.mkdtemp(prefix=".import-", dir=workspace.root))
    moved: list[Path] = []
    try:
        try:
            with zipfile.ZipFile(path) as archive:
                manifest = _manifest(archive, name)
                _stage(archive, manifest, staging, name)
        except zipfile.BadZipFile as error:
            raise _refuse(name, f"not a readable zip file: {error}") from None
        with workspace.connect() as conn:
            kept = set(_files(dict(
                networks=[dict(r) for r in conn.execute("SELECT checkpoint, sha256 FROM networks")],
                results=[dict(r) for r in conn.execute("SELECT artifact, sha256 FROM results")])))
            added = {table: _insert(conn, table, manifest["rows"][table]) for table in TABLES}
            for relative in manifest["files"]:
                if relative in kept:  # the workspace's own row and file for this key stay as they are
                    continue
                final = workspace.root / relative
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(staging / relative, final)  # over a file without a row, which is never trusted
                moved.append(final)
        added["files"] = len(moved)
        return added
    except BaseException:
        for final in moved:
            final.unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
