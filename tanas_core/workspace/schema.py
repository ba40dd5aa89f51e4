"""The workspace index's SQLite schema: tasks, zoo networks, results (Fishers, distances, searches) and event
streams, with the columns added since workspaces were first written (``Workspace`` adds them to an older file)."""
from __future__ import annotations

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tasks (
    name TEXT PRIMARY KEY,
    definition TEXT NOT NULL,          -- Task.to_dict() as JSON
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS networks (
    key TEXT PRIMARY KEY,              -- hash of everything that determines the trained weights
    suite TEXT NOT NULL,
    task TEXT NOT NULL,
    task_definition TEXT NOT NULL,
    arch TEXT NOT NULL,
    width REAL NOT NULL,
    in_channels INTEGER NOT NULL,
    num_classes INTEGER NOT NULL,
    preset TEXT NOT NULL,
    seed INTEGER NOT NULL,
    test_accuracy REAL NOT NULL,
    val_accuracy REAL NOT NULL,
    epsilon REAL NOT NULL,
    params INTEGER NOT NULL,
    seconds REAL NOT NULL,
    device TEXT NOT NULL,
    checkpoint TEXT NOT NULL,          -- path relative to the workspace
    sha256 TEXT NOT NULL,
    history TEXT NOT NULL,             -- per-epoch metrics as JSON
    created_at REAL NOT NULL,
    replicate INTEGER NOT NULL DEFAULT 0,  -- same-initialisation replicate number (0: the zoo network)
    stopped TEXT NOT NULL DEFAULT ''       -- why training ended under the epsilon policy ('': a fixed budget)
);
CREATE INDEX IF NOT EXISTS networks_by_task ON networks (suite, task, arch, seed);
CREATE TABLE IF NOT EXISTS results (
    kind TEXT NOT NULL,                -- "fisher", "distances", ...
    key TEXT NOT NULL,                 -- hash of the configuration that produced it
    payload TEXT NOT NULL,             -- JSON: the result itself or its description
    artifact TEXT,                     -- optional safetensors file, relative to the workspace
    sha256 TEXT,
    created_at REAL NOT NULL,
    PRIMARY KEY (kind, key)
);
CREATE TABLE IF NOT EXISTS events (
    stream TEXT NOT NULL,              -- e.g. "search:<run id>": one ordered stream per run
    seq INTEGER NOT NULL,
    payload TEXT NOT NULL,             -- JSON event
    created_at REAL NOT NULL,
    PRIMARY KEY (stream, seq)
);
"""


# Columns of ``networks`` added after workspaces were first written, with their definitions.
ADDED_NETWORK_COLUMNS = dict(replicate="INTEGER NOT NULL DEFAULT 0", stopped="TEXT NOT NULL DEFAULT ''")
