"""Typed records of what the workspace holds: zoo networks (rows of the ``networks`` table), search runs and
comparisons (``results`` rows of kind ``search`` and ``comparison``, kept as ``to_payload()`` JSON). Pages and the CLI
read attributes, never string keys."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

COMPARISON_COLUMNS = ["method", "architecture", "test_accuracy", "val_accuracy", "params_m", "search_seconds",
                      "train_seconds", "train_epochs", "device", "space", "space_size", "closest_task"]


@dataclass
class NetworkRecord:
    """One trained network of the zoo, as indexed in the ``networks`` table."""

    key: str
    suite: str
    task: str
    task_definition: str
    arch: str
    width: float
    in_channels: int
    num_classes: int
    preset: str
    seed: int
    test_accuracy: float
    val_accuracy: float
    epsilon: float
    params: int
    seconds: float
    device: str
    checkpoint: str
    sha256: str
    history: list = field(default_factory=list)
    created_at: float = 0.0

    @property
    def is_epsilon_approximation(self) -> bool:
        """True when test accuracy >= 1 - epsilon (the source document's definition)."""
        return self.test_accuracy >= 1.0 - self.epsilon


def _known(cls, payload: dict) -> dict:
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in payload.items() if k in names}


@dataclass
class SearchRecord:
    """One search run. ``space``: ``{name, size, operations, sources, ...}`` (``SearchSpace.describe()``);
    ``status``: ``running``, ``done``, ``stopped`` (cancelled: partial history kept) or ``failed``; ``genotype``:
    the winner's JSON; accuracies in [0, 1]; seconds of wall time; ``rounds`` (FUSE) or ``evaluated`` (random
    search) hold what the search saw; ``final_training``: whether the winner was trained from scratch and tested."""

    run_id: str
    suite: str
    target: str
    method: str
    space: dict
    status: str
    preset: str
    budget: dict
    seed: int
    target_fingerprint: str = ""
    final_training: bool = True
    started_at: float = 0.0
    finished_at: float | None = None
    ended: str | None = None  # how the search ended: "converged/step limit", "time limit", "cancelled"
    genotype: str | None = None
    genotype_text: str | None = None
    params: int | None = None
    val_accuracy: float | None = None
    test_accuracy: float | None = None
    search_seconds: float | None = None
    train_seconds: float | None = None
    device: str | None = None
    checkpoint: str | None = None
    checkpoint_sha256: str | None = None
    error: str | None = None
    rounds: list | None = None
    evaluated: list | None = None

    @property
    def done(self) -> bool:
        return self.status == "done"

    @property
    def sources(self) -> list[str]:
        """The closest tasks the (related) space came from."""
        return list(self.space.get("sources") or [])

    def to_payload(self) -> dict:
        return asdict(self)

    @classmethod
    def from_payload(cls, payload: dict) -> SearchRecord:
        return cls(**_known(cls, payload))


@dataclass
class ComparisonRow:
    """One method of a comparison table: accuracies in [0, 1], ``params_m`` in millions, seconds of wall time."""

    method: str
    architecture: str
    test_accuracy: float
    val_accuracy: float
    params_m: float
    search_seconds: float | None
    train_seconds: float
    train_epochs: float
    device: str
    space: str | None = None
    space_size: int | None = None
    closest_task: str | None = None
    run_id: str | None = None


@dataclass
class Comparison:
    """The source document's comparison table for one target (``rows``), its CSV export, the closest tasks the
    related space came from (``[{baseline, distance, std, per_seed}]``) and the wall seconds it took."""

    suite: str
    target: str
    rows: list[ComparisonRow]
    csv: str
    closest: list[dict]
    seconds: float
    preset: str
    budget: dict
    created_at: float = 0.0
    request: dict = field(default_factory=dict)

    def table_rows(self) -> list[dict]:
        """The rows as dicts in ``COMPARISON_COLUMNS`` order (for tables and CSV)."""
        return [{name: getattr(row, name) for name in COMPARISON_COLUMNS} for row in self.rows]

    def to_payload(self) -> dict:
        return asdict(self)

    @classmethod
    def from_payload(cls, payload: dict) -> Comparison:
        values = _known(cls, payload)
        values["rows"] = [ComparisonRow(**_known(ComparisonRow, row)) for row in payload["rows"]]
        return cls(**values)
