"""The workspace: one directory holding a SQLite index (WAL) and the artifact files it points to.

Layout of ``$TANAS_HOME`` (default ``~/.tanas``)::

    tanas.db                      SQLite index: tasks, networks (and later Fisher results, distances, searches)
    artifacts/<kind>/<key>.safetensors
    data/                         default data directory (see data.py)

Writes are atomic and ordered: the artifact goes to a temporary file, is fsync'ed and renamed into place, and only
then is its row (with the file's sha256) committed. A crash at any point leaves either nothing or a file without a
row, and a file without a row is never trusted: the next request rebuilds it. Reads check the sha256, so a truncated
or modified file is reported (``CorruptArtifactError``) instead of silently used. Weights are safetensors only:
loading them never executes code.
"""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Iterator

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from tanas_core.data.datasets import workspace_home
from tanas_core.data.suites import builtin_suite_of
from tanas_core.errors import TanasError
from tanas_core.workspace.checks import check_request
from tanas_core.workspace.records import NetworkRecord
from tanas_core.workspace.schema import ADDED_NETWORK_COLUMNS, SCHEMA, SCHEMA_VERSION


class CorruptArtifactError(TanasError):
    """An artifact file is missing, truncated or altered: its sha256 no longer matches the index."""


@dataclass(frozen=True)
class ArtifactRef:
    """Where an artifact lives (path relative to the workspace) and the sha256 of its bytes."""

    path: str
    sha256: str


class Workspace:
    """A workspace directory (default ``TANAS_HOME`` or ``~/.tanas``) with its SQLite index.

    Raises ``ValueError`` when ``root`` is a file or cannot be created / written.
    """

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root).expanduser() if root is not None else workspace_home()
        if self.root.exists() and not self.root.is_dir():
            raise TanasError(f"workspace path {self.root} is a file; set TANAS_HOME (or pass a path) to a directory")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            (self.root / "artifacts").mkdir(exist_ok=True)
        except OSError as error:
            raise TanasError(f"cannot create the workspace at {self.root} ({error.strerror}); choose a writable "
                             "directory with TANAS_HOME") from error
        if not os.access(self.root, os.W_OK):
            raise TanasError(f"workspace {self.root} is not writable; fix its permissions or choose another TANAS_HOME")
        self.db_path = self.root / "tanas.db"
        # artifacts whose sha256 this object checked: path -> (sha256, size, mtime_ns) at the time
        self._verified: dict[Path, tuple[str, int, int]] = {}
        with self.connect() as conn:
            conn.executescript(SCHEMA)
            columns = {row["name"] for row in conn.execute("PRAGMA table_info(networks)")}
            for name, definition in ADDED_NETWORK_COLUMNS.items():  # a workspace written before they existed
                if name not in columns:
                    conn.execute(f"ALTER TABLE networks ADD COLUMN {name} {definition}")
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))

    def __repr__(self) -> str:
        return f"Workspace({str(self.root)!r})"

    def check(self, request) -> None:
        """``TanasError`` naming what this workspace lacks for ``request`` (``checks.check_request``)."""
        check_request(request, self)

    # ------------------------------------------------------------------------------------------ database

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """A connection in WAL mode that commits on success and rolls back on error; closed afterwards."""
        conn = sqlite3.connect(self.db_path, timeout=60.0)
        try:
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=60000")
            with conn:
                yield conn
        finally:
            conn.close()

    # ------------------------------------------------------------------------------------------ artifacts

    def artifact_path(self, kind: str, key: str, digest: str = "") -> Path:
        """Absolute path of artifact ``key`` of ``kind`` (both plain identifiers, never paths) whose bytes have sha256
        ``digest``. The name holds the digest, so two processes that write one key at once (with bytes that differ
        in the last bits) write two files, and each index row names the file it was written with."""
        for part in (kind, key):
            if not part or not all(ch.isalnum() or ch in "-_" for ch in part):
                raise TanasError(f"artifact names must be letters, digits, '-' or '_', got {part!r}")
        return self.root / "artifacts" / kind / (f"{key}-{digest[:16]}.safetensors" if digest else
                                                 f"{key}.safetensors")

    def write_tensors(self, kind: str, key: str, tensors: dict[str, torch.Tensor],
                      metadata: dict[str, str] | None = None) -> ArtifactRef:
        """Atomically write ``tensors`` as safetensors; returns the path and sha256 to put in the index row."""
        final = self.artifact_path(kind, key)
        tmp_name = None
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(prefix=f".{key}.", suffix=".tmp", dir=final.parent)
            os.close(fd)
            contiguous = {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}
            save_file(contiguous, tmp_name, metadata=metadata or {})
            with open(tmp_name, "rb") as handle:
                os.fsync(handle.fileno())
            digest = sha256_file(Path(tmp_name))
            final = self.artifact_path(kind, key, digest)
            os.replace(tmp_name, final)
        except OSError as error:
            if tmp_name:
                Path(tmp_name).unlink(missing_ok=True)
            raise TanasError(f"could not write {final} ({error.strerror}): free disk space or fix permissions; "
                             "earlier results are untouched") from error
        except BaseException:
            if tmp_name:
                Path(tmp_name).unlink(missing_ok=True)
            raise
        return ArtifactRef(str(final.relative_to(self.root)), digest)

    def read_tensors(self, ref: ArtifactRef) -> dict[str, torch.Tensor]:
        """Load a safetensors artifact after checking its sha256; ``CorruptArtifactError`` when it does not match.

        A file this object already checked against the same sha256 is not hashed again while its size and
        modification time are unchanged (a report reads each Fisher once per metric; rewriting or truncating a file
        changes them)."""
        # Checked on the recorded path itself, not on where links lead: a user may keep `artifacts/` on another
        # disk through a symbolic link, and writes go through it too.
        relative = Path(ref.path)
        if relative.is_absolute() or ".." in relative.parts:
            raise CorruptArtifactError(f"artifact path {ref.path!r} points outside the workspace {self.root}; the "
                                       "index was tampered with: refusing to read it")
        path = self.root / relative
        if not path.is_file():
            replacement = self._replacement(ref)
            if replacement is not None:  # the row was replaced (and this file removed) after the caller read it
                return self.read_tensors(replacement)
            raise CorruptArtifactError(f"artifact {path} is missing; rebuild it (re-run the command that made it)")
        status = path.stat()
        if self._verified.get(path) != (ref.sha256, status.st_size, status.st_mtime_ns):
            actual = sha256_file(path)
            if actual != ref.sha256:
                raise CorruptArtifactError(
                    f"artifact {path} is corrupt: sha256 {actual[:12]}... differs from the recorded "
                    f"{ref.sha256[:12]}...; it was truncated or modified. Rebuild it (re-run the command that made "
                    "it; the bad entry is replaced) or delete it from the workspace")
            self._verified[path] = (ref.sha256, status.st_size, status.st_mtime_ns)
        try:
            return load_file(path)
        except (SafetensorError, OSError) as error:
            raise CorruptArtifactError(f"artifact {path} is not a valid safetensors file ({error})") from error

    # ------------------------------------------------------------------------------------------ tasks

    def save_task(self, task, replace: bool = False) -> list[str]:
        """Save a (custom) task definition; returns the keys of the networks removed with an old definition.

        A name already saved with another definition is refused (``TanasError``) unless ``replace``: then the
        networks trained on the old definition (their rows and checkpoints) are removed in the same step, so no
        network of the old definition is ever listed under the new one. Saving the same definition again is a no-op.
        """
        if (suite := builtin_suite_of(task.name)) is not None:
            raise TanasError(f"{task.name!r} is a task of the built-in suite {suite!r}: a custom task needs a name of "
                             "its own, so the zoo and the tables never list two tasks under one name; choose another")
        definition = json.dumps(task.to_dict())
        with self.connect() as conn:
            row = conn.execute("SELECT definition FROM tasks WHERE name = ?", (task.name,)).fetchone()
            if row is not None and row["definition"] == definition:
                return []
            if row is not None and not replace:
                raise TanasError(f"a custom task named {task.name!r} already exists with another definition; choose "
                                 "another name, or replace it (Tasks page: tick 'replace'; CLI: tasks add --replace), "
                                 "which deletes the networks trained on the old definition")
            stale = [r["key"] for r in conn.execute(
                "SELECT key FROM networks WHERE suite = 'custom' AND task = ? AND task_definition != ?",
                (task.name, definition))]
            conn.execute("INSERT OR REPLACE INTO tasks VALUES (?, ?, ?)", (task.name, definition, time.time()))
        for key in stale:
            self.forget_network(key)
        return stale

    def load_tasks(self) -> list:
        """All saved tasks, validated again (a definition that no longer validates raises ``ValueError``)."""
        from tanas_core.data.tasks import Task

        with self.connect() as conn:
            rows = conn.execute("SELECT definition FROM tasks ORDER BY name").fetchall()
        return [Task.from_dict(json.loads(row["definition"])) for row in rows]

    def delete_task(self, name: str) -> bool:
        with self.connect() as conn:
            return conn.execute("DELETE FROM tasks WHERE name = ?", (name,)).rowcount > 0

    # ------------------------------------------------------------------------------------------ networks

    def record_network(self, record: NetworkRecord) -> None:
        """Index a trained network whose checkpoint is already written (the row comes last)."""
        row = asdict(record)
        row["history"] = json.dumps(record.history)
        row["created_at"] = record.created_at or time.time()
        columns = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        with self.connect() as conn:
            old = conn.execute("SELECT checkpoint FROM networks WHERE key = ?", (record.key,)).fetchone()
            conn.execute(f"INSERT OR REPLACE INTO networks ({columns}) VALUES ({marks})", tuple(row.values()))
            superseded = _unnamed(conn, old and old["checkpoint"])
        self._unlink(superseded)

    def find_network(self, key: str) -> NetworkRecord | None:
        """The indexed network with configuration hash ``key``, or ``None``."""
        with self.connect() as conn:
            row = conn.execute("SELECT * FROM networks WHERE key = ?", (key,)).fetchone()
        return _network_from_row(row) if row else None

    def list_networks(self, suite: str | None = None, preset: str | None = None) -> list[NetworkRecord]:
        """Indexed networks, optionally filtered, ordered by suite, task, architecture and seed."""
        query, args = "SELECT * FROM networks WHERE 1=1", []
        if suite:
            query, args = query + " AND suite = ?", args + [suite]
        if preset:
            query, args = query + " AND preset = ?", args + [preset]
        with self.connect() as conn:
            rows = conn.execute(query + " ORDER BY suite, task, arch, seed, replicate", args).fetchall()
        return [_network_from_row(row) for row in rows]

    def network_count(self) -> int:
        """How many networks are indexed (one count query: cheap enough to poll)."""
        with self.connect() as conn:
            return conn.execute("SELECT COUNT(*) FROM networks").fetchone()[0]

    def forget_network(self, key: str) -> None:
        """Drop a network's row, then its checkpoint file (row first: a file without a row is never trusted)."""
        with self.connect() as conn:
            row = conn.execute("SELECT checkpoint FROM networks WHERE key = ?", (key,)).fetchone()
            conn.execute("DELETE FROM networks WHERE key = ?", (key,))
        if row is not None:
            (self.root / row["checkpoint"]).unlink(missing_ok=True)


    # ------------------------------------------------------------------------------------------ other results

    def put_result(self, kind: str, key: str, payload: dict, artifact: ArtifactRef | None = None) -> None:
        """Index a result (JSON ``payload``, optionally with an already written artifact); the row comes last."""
        with self.connect() as conn:
            old = conn.execute("SELECT artifact FROM results WHERE kind = ? AND key = ?", (kind, key)).fetchone()
            conn.execute("INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?, ?)",
                         (kind, key, json.dumps(payload), artifact.path if artifact else None,
                          artifact.sha256 if artifact else None, time.time()))
            superseded = _unnamed(conn, old and old["artifact"])
        self._unlink(superseded)

    def _replacement(self, ref: ArtifactRef) -> ArtifactRef | None:
        """The artifact that now stands where ``ref``'s file did: another file of the same key (``KEY-DIGEST``) that
        a row names and that exists, e.g. written by a second process that trained the same network while a reader
        held the first row; ``None`` otherwise."""
        path = PurePosixPath(ref.path)
        pattern = f"{path.parent}/{path.stem.rpartition('-')[0]}-*{path.suffix}"
        with self.connect() as conn:
            rows = [*conn.execute("SELECT checkpoint, sha256 FROM networks WHERE checkpoint GLOB ?", (pattern,)),
                    *conn.execute("SELECT artifact, sha256 FROM results WHERE artifact GLOB ?", (pattern,))]
        found = [ArtifactRef(*row) for row in rows if row[0] != ref.path and (self.root / row[0]).is_file()]
        return found[0] if found and "-" in path.stem else None

    def _unlink(self, path: str | None) -> None:
        """Delete a superseded artifact file (after its row's replacement is committed)."""
        if path:
            (self.root / path).unlink(missing_ok=True)

    def get_result(self, kind: str, key: str) -> tuple[dict, ArtifactRef | None] | None:
        """``(payload, artifact ref or None)`` of a stored result, or ``None``."""
        with self.connect() as conn:
            row = conn.execute("SELECT payload, artifact, sha256 FROM results WHERE kind = ? AND key = ?",
                               (kind, key)).fetchone()
        if row is None:
            return None
        ref = ArtifactRef(row["artifact"], row["sha256"]) if row["artifact"] else None
        return json.loads(row["payload"]), ref

    def list_results(self, kind: str) -> list[dict]:
        """Payloads of every stored result of ``kind``, newest first."""
        with self.connect() as conn:
            rows = conn.execute("SELECT payload FROM results WHERE kind = ? ORDER BY created_at DESC",
                                (kind,)).fetchall()
        return [json.loads(row["payload"]) for row in rows]


    # ------------------------------------------------------------------------------------------ event streams

    def append_event(self, stream: str, payload: dict) -> int:
        """Append a JSON event to ``stream``; returns its sequence number (0, 1, ...)."""
        with self.connect() as conn:
            # One statement, so two writers appending to one stream cannot pick the same number.
            cursor = conn.execute("INSERT INTO events SELECT ?, COALESCE(MAX(seq) + 1, 0), ?, ? FROM events "
                                  "WHERE stream = ?", (stream, json.dumps(payload), time.time(), stream))
            return conn.execute("SELECT seq FROM events WHERE rowid = ?", (cursor.lastrowid,)).fetchone()[0]

    def read_events(self, stream: str, after: int = -1) -> list[dict]:
        """Events of ``stream`` with sequence number > ``after``, in order, each with its ``seq``."""
        with self.connect() as conn:
            rows = conn.execute("SELECT seq, payload FROM events WHERE stream = ? AND seq > ? ORDER BY seq",
                                (stream, after)).fetchall()
        return [dict(json.loads(row["payload"]), seq=row["seq"]) for row in rows]

    def clear_events(self, stream: str) -> None:
        """Drop every event of ``stream`` (before a run is started again from scratch)."""
        with self.connect() as conn:
            conn.execute("DELETE FROM events WHERE stream = ?", (stream,))


def _unnamed(conn: sqlite3.Connection, path: str | None) -> str | None:
    """``path`` when it is a file a replaced row named and no row names it now (a rebuilt checkpoint, or the loser of
    two processes that wrote one key at once), else ``None``; asked in the transaction that replaced the row."""
    if not path:
        return None
    named = (conn.execute("SELECT 1 FROM networks WHERE checkpoint = ?", (path,)).fetchone()
             or conn.execute("SELECT 1 FROM results WHERE artifact = ?", (path,)).fetchone())
    return None if named else path


def _network_from_row(row: sqlite3.Row) -> NetworkRecord:
    values = dict(row)
    values["history"] = json.loads(values["history"])
    return NetworkRecord(**values)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def config_key(payload: dict) -> str:
    """Stable 24-hex-digit key of a JSON-serialisable configuration."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]
