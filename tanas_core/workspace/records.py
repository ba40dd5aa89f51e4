"""Typed records of what the workspace holds: zoo networks (rows of the ``networks`` table), task-distance matrices,
search runs and comparisons (``results`` rows of kind ``search`` and ``comparison``, kept as ``to_payload()`` JSON).
Pages and the CLI read attributes, never string keys."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace

import numpy as np

from tanas_core.errors import TanasError
from tanas_core.intervals import centred_interval, mean_interval

COMPARISON_COLUMNS = ["method", "repeat", "architecture", "test_accuracy", "val_accuracy", "params_m",
                      "search_seconds", "train_seconds", "train_epochs", "device", "space", "space_size",
                      "closest_task"]
SUMMARY_FIGURES = ("test_accuracy", "params_m", "search_seconds", "train_seconds")
# The range each summary figure cannot leave: its interval is cut there (a time is never below 0).
SUMMARY_BOUNDS = dict(test_accuracy=(0.0, 1.0), params_m=(0.0, float("inf")), search_seconds=(0.0, float("inf")),
                      train_seconds=(0.0, float("inf")))


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
    replicate: int = 0  # 0: the zoo network of ``seed``; r >= 1: same initial weights, data seed ``seed + 1000 r``
    stopped: str = ""  # why training ended under the epsilon policy (empty for a fixed budget)

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
    ``status``: ``running``, ``done``, ``time limit`` (the limit passed before a winner: ``error`` says what to
    raise), ``stopped`` (cancelled: partial history kept) or ``failed``; ``genotype``:
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
    repeat: int = 0  # the search seed offset / zoo seed of this row (``compare --repeats``)


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

    def methods(self) -> list[str]:
        """Each method's label (hand-designed networks by architecture), in table order."""
        return list(dict.fromkeys(self._label(row) for row in self.rows))

    @staticmethod
    def _label(row: ComparisonRow) -> str:
        return row.architecture if row.method == "hand-designed" else row.method

    def values(self, method: str, figure: str) -> list:
        """``figure`` of ``method`` per repeat, in repeat order."""
        return [getattr(row, figure) for row in sorted(self.rows, key=lambda r: r.repeat) if self._label(row) == method]

    def summary(self, level: float = 0.95) -> list[dict]:
        """Per method: repeats, and mean with a Student's t ``level`` interval of every ``SUMMARY_FIGURES`` figure."""
        out = []
        for method in self.methods():
            row = dict(method=method, repeats=len(self.values(method, "test_accuracy")))
            for figure in SUMMARY_FIGURES:
                row[figure], row[f"{figure}_low"], row[f"{figure}_high"] = mean_interval(
                    self.values(method, figure), level, SUMMARY_BOUNDS[figure])
            out.append(row)
        return out

    def paired(self, reference: str = "FUSE, related space", figure: str = "test_accuracy",
               level: float = 0.95) -> list[dict]:
        """``reference`` against every other method on the same repeats: the paired difference of ``figure``
        (reference minus other) with its interval and verdict (higher / lower / tie / not measured)."""
        from tanas_core.intervals import paired_difference

        if reference not in self.methods():
            return []
        return [dict(method=method, **paired_difference(self.values(reference, figure), self.values(method, figure),
                                                        level))
                for method in self.methods() if method != reference]

    def to_payload(self) -> dict:
        return asdict(self)

    @classmethod
    def from_payload(cls, payload: dict) -> Comparison:
        values = _known(cls, payload)
        values["rows"] = [ComparisonRow(**_known(ComparisonRow, row)) for row in payload["rows"]]
        return cls(**values)


@dataclass
class DistanceResult:
    """Distance matrices of one suite x architecture x metric.

    Attributes:
        tasks: task names; ``matrices[k, b, t]`` is seed ``k``'s ``d[b, t]`` (row baseline, column target).
        mean, std: over seeds, ``[T, T]``.
        replicates: ``[seeds, T, K]``, ``d[r, t]`` for the K replicates ``r`` of ``t`` placed as baselines of column
            ``t`` (the view's ``reference``: TA-NAS view, networks with ``t``'s network's initial weights and another
            data seed; probe view, other draws of ``t``'s data under the same probe network); K may be 0.
        reference: per task, the mean of ``replicates`` (``nan`` without replicates): the distance a baseline has
            to beat to be told apart from ``t`` itself (TA-NAS view: the source's Remarks 1/2 setting, same
            initialisation).
        noise_floor: per task, the mean distance between networks of *different* initialisations (seeds) on the
            task's own data (``nan`` with one seed): the cross-initialisation spread, not the reference.
        lift: ``[seeds, T]``, ``mean log(diag F[t, t] + sigma^2) - log sigma^2`` (log-det metrics; else ``nan``).
        bootstrap: ``[seeds, S, T, T]``, ``d[b, t]`` on S resamples of each column's probe images (the same images
            for every baseline of a column, so differences within a column are paired); S = 0 for full matrices.
    """

    suite: str
    arch: str
    metric: str
    sigma: float
    seeds: list
    tasks: list
    matrices: np.ndarray
    noise_floor: np.ndarray
    seconds: float
    cached: bool = False
    replicates: np.ndarray | None = None
    lift: np.ndarray | None = None
    bootstrap: np.ndarray | None = None
    view: str = "tanas"  # "tanas" (the source's d[b, t]) or "probe" (one common probe network, ``probe_network``)
    request: dict | None = None  # the one-architecture DistanceRequest (to_dict) that computed it

    def __post_init__(self) -> None:
        seeds, tasks = len(self.seeds), len(self.tasks)
        if self.replicates is None:
            self.replicates = np.zeros((seeds, tasks, 0))
        if self.lift is None:
            self.lift = np.full((seeds, tasks), np.nan)
        if self.bootstrap is None:
            self.bootstrap = np.zeros((seeds, 0, tasks, tasks))

    def select_seeds(self, positions) -> DistanceResult:
        """The result of the seeds at ``positions`` (indices into ``seeds``; repeats allowed, as in a bootstrap over
        seeds): their matrices, replicates, lifts and bootstrap matrices, in that order. ``noise_floor`` compares
        seeds with each other, so it is kept as it was."""
        positions = np.asarray(positions, dtype=int)
        return replace(self, seeds=[self.seeds[k] for k in positions], matrices=self.matrices[positions],
                       replicates=self.replicates[positions], lift=self.lift[positions],
                       bootstrap=self.bootstrap[positions])

    def _samples(self) -> np.ndarray:
        """``[N, T, T]``: every bootstrap matrix of every seed, or the per-seed matrices without a bootstrap."""
        if self.bootstrap.shape[1]:
            return self.bootstrap.reshape(-1, len(self.tasks), len(self.tasks))
        return self.matrices

    def rank_frequency(self, target: str) -> dict[str, float]:
        """Per baseline, how often it is the closest one to ``target`` over seeds x bootstrap resamples."""
        t = self._index(target)
        column = self._samples()[:, :, t].copy()
        column[:, t] = np.inf
        wins = np.bincount(column.argmin(axis=1), minlength=len(self.tasks)) / len(column)
        return {name: float(wins[b]) for b, name in enumerate(self.tasks) if b != t}

    def interval(self, baseline: str, target: str, level: float = 0.95) -> tuple[float, float]:
        """The ``level`` interval of ``d[baseline, target]`` around its estimate, the mean over seeds
        (``intervals.centred_interval`` of the seeds' values and their bootstrap resamples)."""
        b, t = self._index(baseline), self._index(target)
        return centred_interval(self.matrices[:, b, t], self.bootstrap[:, :, b, t], level)

    def not_separable(self, target: str, level: float = 0.95) -> list[str]:
        """The baselines whose paired difference to the closest baseline of ``target`` (same resamples) has a
        ``level`` interval reaching 0: inside the noise, a tie with the closest, not a runner-up."""
        t, best = self._index(target), self._index(self.closest(target, 1)[0]["baseline"])
        column = self._samples()[:, :, t]
        return [name for b, name in enumerate(self.tasks) if b not in (t, best)
                and np.percentile(column[:, b] - column[:, best], (1 - level) / 2 * 100) <= 0]

    def closest_summary(self, target: str, level: float = 0.95) -> dict:
        """The closest baseline of ``target`` as a finding must be stated: ``closest(target, 1)`` (baseline, mean
        and std over seeds) with its ``level`` interval (``interval_low``, ``interval_high``), its
        ``rank_frequency`` over seeds x bootstrap resamples and the baselines tied with it (``ties``)."""
        best = self.closest(target, 1)[0]
        low, high = self.interval(best["baseline"], target, level)
        return dict(best, interval_low=low, interval_high=high,
                    rank_frequency=self.rank_frequency(target)[best["baseline"]],
                    ties=self.not_separable(target, level))

    def _index(self, task: str) -> int:
        if task not in self.tasks:
            raise TanasError(f"task {task!r} is not in suite {self.suite!r}: {', '.join(self.tasks)}")
        return self.tasks.index(task)

    @property
    def reference(self) -> np.ndarray:
        """Per task, the mean replicate distance ``r[t]`` (``nan`` without replicates)."""
        if self.replicates.shape[-1] == 0:
            return np.full(len(self.tasks), np.nan)
        return self.replicates.mean(axis=(0, 2))

    @property
    def mean(self) -> np.ndarray:
        return self.matrices.mean(axis=0)

    @property
    def std(self) -> np.ndarray:
        return self.matrices.std(axis=0)

    def closest(self, target: str, k: int = 3) -> list[dict]:
        """The ``k`` baselines closest to ``target`` (column ``target``, excluding itself), nearest first, with the
        mean and standard deviation over seeds."""
        if target not in self.tasks:
            raise TanasError(f"task {target!r} is not in suite {self.suite!r}: {', '.join(self.tasks)}")
        column = self.tasks.index(target)
        rows = [dict(baseline=name, distance=float(self.mean[b, column]), std=float(self.std[b, column]),
                     per_seed=[float(v) for v in self.matrices[:, b, column]])
                for b, name in enumerate(self.tasks) if b != column]
        return sorted(rows, key=lambda row: row["distance"])[:k]

    def dataset_contrast(self, datasets: dict[str, str]) -> tuple[float, float]:
        """Mean of the seed-averaged ``d[b, t]`` over pairs from the same dataset and over pairs across datasets
        (``datasets``: task name -> dataset; diagonal excluded)."""
        same, across = [], []
        for b, baseline in enumerate(self.tasks):
            for t, target in enumerate(self.tasks):
                if b != t:
                    (same if datasets[baseline] == datasets[target] else across).append(self.mean[b, t])
        return float(np.mean(same)) if same else float("nan"), float(np.mean(across)) if across else float("nan")

    def to_payload(self) -> dict:
        """JSON-ready (NaN as ``None``)."""
        def plain(array: np.ndarray):
            return np.where(np.isnan(array), None, array).tolist() if array.size else array.tolist()

        return dict(suite=self.suite, arch=self.arch, metric=self.metric, sigma=self.sigma, seeds=self.seeds,
                    tasks=self.tasks, matrices=self.matrices.tolist(), noise_floor=plain(self.noise_floor),
                    seconds=self.seconds, replicates=self.replicates.tolist(), lift=plain(self.lift),
                    bootstrap=self.bootstrap.tolist(), view=self.view, request=self.request)

    @classmethod
    def from_payload(cls, payload: dict, cached: bool = False) -> DistanceResult:
        def array(name: str):
            value = payload.get(name)
            return None if value is None else np.asarray(value, dtype=float)

        seeds, tasks = len(payload["seeds"]), len(payload["tasks"])
        replicates, bootstrap = array("replicates"), array("bootstrap")
        return cls(payload["suite"], payload["arch"], payload["metric"], payload["sigma"], payload["seeds"],
                   payload["tasks"], np.asarray(payload["matrices"]), array("noise_floor"), payload["seconds"],
                   cached, None if replicates is None else replicates.reshape(seeds, tasks, -1), array("lift"),
                   None if bootstrap is None else bootstrap.reshape(seeds, -1, tasks, tasks),
                   payload.get("view", "tanas"), payload.get("request"))
