"""Cell-based search spaces: genotypes (what an architecture is), the standard space and task-related spaces.

A **cell** is a DAG in the style of DARTS: two input nodes (the outputs of the two previous cells, numbered 0 and 1)
and ``nodes`` intermediate nodes (numbered 2, 3, ...). Each intermediate node sums two edges, each an operation
applied to a distinct earlier node; the cell's output concatenates every intermediate node. A **genotype** is a normal
cell, a reduction cell (its edges from the cell inputs have stride 2) and the **skeleton** around them: a 3x3 stem,
``cells`` cells, reduction cells at ``reductions`` (channels double there), global pooling and a linear head.

A genotype is a frozen, hashable value with a JSON form (``to_json`` / ``Genotype.from_json``) and a readable string.
``networks.cells.cell_network`` builds a ``torch.nn.Module`` from it for any input channels, size and class count.

The **standard space** allows every operation on every wiring. A **related space** is built only from the closest
baseline tasks' best genotypes: their operations (plus ``skip_connect``), their wirings and their skeleton; its
candidates are mutations of those genotypes (a few edges get another operation of the space).
"""
from __future__ import annotations

import hashlib
import json
import math
import random
from dataclasses import dataclass, field
from typing import Iterable

from tanas_core.errors import TanasError

# Every operation maps C channels to C channels and keeps the spatial size (stride 1), as in DARTS / the source.
OPERATIONS = ("none", "skip_connect", "max_pool_3x3", "avg_pool_3x3", "sep_conv_3x3", "sep_conv_5x5",
              "dil_conv_3x3", "dil_conv_5x5", "conv_7x1_1x7")
CELL_INPUTS = 2  # the two previous cells' outputs


@dataclass(frozen=True)
class Cell:
    """``nodes[i] = ((op_a, input_a), (op_b, input_b))`` for intermediate node ``i + 2``; inputs are earlier nodes.

    The two edges of a node are stored sorted (their sum does not depend on order), so equal cells compare and hash
    equal.
    """

    nodes: tuple

    def __post_init__(self):
        if not isinstance(self.nodes, (tuple, list)) or not self.nodes:
            raise TanasError("a cell needs at least one intermediate node: a list of [[op, input], [op, input]]")
        canonical = []
        for index, node in enumerate(self.nodes):
            where = f"cell node {index + CELL_INPUTS}"
            if not isinstance(node, (tuple, list)) or len(node) != 2:
                raise TanasError(f"{where}: expected two edges [[op, input], [op, input]], got {node!r}")
            edges = []
            for edge in node:
                if not isinstance(edge, (tuple, list)) or len(edge) != 2:
                    raise TanasError(f"{where}: an edge is [op, input], got {edge!r}")
                op, source = edge
                if op not in OPERATIONS:
                    raise TanasError(f"{where}: unknown operation {op!r}; operations: {', '.join(OPERATIONS)}")
                if isinstance(source, bool) or not isinstance(source, int) or not 0 <= source < index + CELL_INPUTS:
                    raise TanasError(f"{where}: input {source!r} must be an earlier node, 0..{index + 1}")
                edges.append((op, source))
            if edges[0][1] == edges[1][1]:
                raise TanasError(f"{where}: its two edges must come from different nodes, both come from {edges[0][1]}")
            canonical.append(tuple(sorted(edges, key=lambda e: (e[1], e[0]))))
        object.__setattr__(self, "nodes", tuple(canonical))

    @property
    def operations(self) -> frozenset:
        return frozenset(op for node in self.nodes for op, _ in node)

    @property
    def wiring(self) -> tuple:
        """The inputs of each node, without operations: ``((a, b), ...)``."""
        return tuple(tuple(source for _, source in node) for node in self.nodes)

    def to_list(self) -> list:
        return [[list(edge) for edge in node] for node in self.nodes]

    def __str__(self) -> str:
        return " ".join(f"n{i + CELL_INPUTS}=" + "+".join(f"{op}({source})" for op, source in node)
                        for i, node in enumerate(self.nodes))


@dataclass(frozen=True)
class Skeleton:
    """The fixed part of a network: ``channels`` after the stem (x ``stem_multiplier``), ``cells`` cells, reduction
    cells at the positions ``reductions`` (0-based), channel count doubled at each."""

    channels: int = 8
    cells: int = 3
    reductions: tuple = (1, 2)
    stem_multiplier: int = 3

    def __post_init__(self):
        object.__setattr__(self, "reductions", tuple(sorted(set(int(r) for r in self.reductions))))
        if not isinstance(self.channels, int) or not 1 <= self.channels <= 512:
            raise TanasError(f"skeleton channels must be an integer in 1..512, got {self.channels!r}")
        if not isinstance(self.cells, int) or not 1 <= self.cells <= 32:
            raise TanasError(f"skeleton cells must be an integer in 1..32, got {self.cells!r}")
        if any(not 0 <= r < self.cells for r in self.reductions):
            raise TanasError(f"reduction positions {self.reductions} must lie in 0..{self.cells - 1}")
        if not isinstance(self.stem_multiplier, int) or not 1 <= self.stem_multiplier <= 8:
            raise TanasError(f"stem_multiplier must be an integer in 1..8, got {self.stem_multiplier!r}")

    def to_dict(self) -> dict:
        return dict(channels=self.channels, cells=self.cells, reductions=list(self.reductions),
                    stem_multiplier=self.stem_multiplier)

    def __str__(self) -> str:
        return f"C={self.channels}, {self.cells} cells, reductions at {list(self.reductions)}"


@dataclass(frozen=True)
class Genotype:
    """An architecture of a cell space: a normal cell, a reduction cell and the skeleton. Frozen and hashable."""

    normal: Cell
    reduce: Cell
    skeleton: Skeleton = field(default_factory=Skeleton)

    def __post_init__(self):
        if len(self.normal.nodes) != len(self.reduce.nodes):
            raise TanasError("the normal and the reduction cell must have the same number of nodes")

    @property
    def nodes(self) -> int:
        return len(self.normal.nodes)

    @property
    def operations(self) -> frozenset:
        return self.normal.operations | self.reduce.operations

    def to_dict(self) -> dict:
        return dict(normal=self.normal.to_list(), reduce=self.reduce.to_list(), skeleton=self.skeleton.to_dict())

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, payload) -> Genotype:
        if not isinstance(payload, dict):
            raise TanasError("a genotype is a JSON object with normal, reduce and skeleton, got "
                             f"{type(payload).__name__}")
        missing = {"normal", "reduce"} - set(payload)
        if missing:
            raise TanasError(f"genotype JSON lacks {', '.join(sorted(missing))}")
        unknown = set(payload) - {"normal", "reduce", "skeleton"}
        if unknown:
            raise TanasError(f"genotype JSON has unknown field(s) {', '.join(sorted(unknown))}")
        skeleton = payload.get("skeleton", {})
        if not isinstance(skeleton, dict):
            raise TanasError("genotype skeleton must be an object {channels, cells, reductions, stem_multiplier}")
        try:
            skeleton = Skeleton(**skeleton)
        except TypeError as error:
            raise TanasError(f"genotype skeleton: {error}") from None
        return cls(Cell(_as_tuples(payload["normal"])), Cell(_as_tuples(payload["reduce"])), skeleton)

    @classmethod
    def from_json(cls, text: str) -> Genotype:
        """Parse ``to_json``'s output; ``ValueError`` naming the problem for anything else."""
        try:
            payload = json.loads(text)
        except (json.JSONDecodeError, TypeError) as error:
            raise TanasError(f"genotype is not valid JSON: {error}") from None
        return cls.from_dict(payload)

    @property
    def id(self) -> str:
        """Short stable identifier (8 hex digits of the JSON's sha256)."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:8]

    def __str__(self) -> str:
        return f"normal[{self.normal}] reduce[{self.reduce}] ({self.skeleton})"


def cell_dot(cell: Cell, title: str = "cell") -> str:
    """Graphviz DOT text of ``cell``: inputs c_{k-2}, c_{k-1}, intermediate nodes, edges labelled by operation, and
    the concatenated output (``none`` edges drawn dashed)."""
    lines = [f'digraph "{title}" {{', "rankdir=LR; node [shape=box, style=rounded, fontsize=10]; "
             "edge [fontsize=9];", 'n0 [label="c_{k-2}"]; n1 [label="c_{k-1}"]; out [label="concat"];']
    for i, node in enumerate(cell.nodes):
        index = i + CELL_INPUTS
        lines.append(f'n{index} [label="{index}", shape=circle];')
        for op, source in node:
            style = ", style=dashed" if op == "none" else ""
            lines.append(f'n{source} -> n{index} [label="{op}"{style}];')
        lines.append(f"n{index} -> out;")
    lines.append("}")
    return "\n".join(lines)


def _as_tuples(value):
    if isinstance(value, list):
        return tuple(_as_tuples(v) for v in value)
    return value


def count_cells(operations: int, nodes: int = 4) -> int:
    """Exact number of distinct cells with ``nodes`` intermediate nodes over ``operations`` operations.

    Node ``i`` (0-based) picks an unordered pair of distinct inputs among its ``2 + i`` predecessors and one operation
    per edge: ``C(2 + i, 2) * m^2`` choices, independently per node.
    """
    return math.prod(math.comb(CELL_INPUTS + i, 2) * operations ** 2 for i in range(nodes))


def source_formula_cells(operations: int, nodes: int = 4) -> int:
    """The source document's count for a densely connected DAG with one operation per edge: ``m^(n(n-1)/2)`` with
    ``n`` = all nodes of the cell (inputs + intermediate). Reported beside ``count_cells`` for comparison."""
    n = nodes + CELL_INPUTS
    return operations ** (n * (n - 1) // 2)


@dataclass(frozen=True)
class SearchSpace:
    """A set of genotypes to search: allowed ``operations``, a fixed ``skeleton`` and ``nodes`` per cell.

    ``seeds`` (related spaces): genotypes whose wirings the space keeps and whose mutations are the candidates;
    empty for the standard space (any wiring, uniform sampling). ``sources`` names the tasks it was built from.
    """

    name: str
    operations: tuple
    skeleton: Skeleton = field(default_factory=Skeleton)
    nodes: int = 4
    seeds: tuple = ()
    sources: tuple = ()
    mutations: int = 2

    def __post_init__(self):
        unknown = [op for op in self.operations if op not in OPERATIONS]
        if unknown or not self.operations:
            raise TanasError(f"unknown operation(s) {unknown}; operations: {', '.join(OPERATIONS)}")
        if not 1 <= self.nodes <= 8:
            raise TanasError(f"nodes must be in 1..8, got {self.nodes}")

    # ---------------------------------------------------------------------------------------------- size

    def cell_counts(self) -> tuple[int, int]:
        """Distinct (normal, reduction) cells of the space."""
        m = len(self.operations)
        if not self.seeds:
            return count_cells(m, self.nodes), count_cells(m, self.nodes)
        edges = 2 * self.nodes
        normal = {g.normal.wiring for g in self.seeds}
        reduce = {g.reduce.wiring for g in self.seeds}
        return len(normal) * m ** edges, len(reduce) * m ** edges

    def size(self) -> int:
        """Number of distinct genotypes (normal x reduction cells; the skeleton is fixed)."""
        normal, reduce = self.cell_counts()
        return normal * reduce

    def contains(self, genotype: Genotype) -> bool:
        """Whether ``genotype`` belongs to this space."""
        if genotype.skeleton != self.skeleton or genotype.nodes != self.nodes:
            return False
        if not genotype.operations <= set(self.operations):
            return False
        if self.seeds:
            return (genotype.normal.wiring in {g.normal.wiring for g in self.seeds}
                    and genotype.reduce.wiring in {g.reduce.wiring for g in self.seeds})
        return True

    # ---------------------------------------------------------------------------------------------- sampling

    def sample(self, rng: random.Random) -> Genotype:
        """One genotype of the space: uniform for the standard space, a mutation of a seed genotype otherwise."""
        if not self.seeds:
            return Genotype(self._random_cell(rng), self._random_cell(rng), self.skeleton)
        seed = rng.choice(self.seeds)
        return self.mutate(seed, rng)

    def mutate(self, genotype: Genotype, rng: random.Random) -> Genotype:
        """``genotype`` with ``mutations`` edges (chosen among both cells) given another operation of the space."""
        cells = [genotype.normal.to_list(), genotype.reduce.to_list()]
        slots = [(c, n, e) for c in range(2) for n in range(self.nodes) for e in range(2)]
        for c, n, e in rng.sample(slots, min(self.mutations, len(slots))):
            current = cells[c][n][e][0]
            choices = [op for op in self.operations if op != current] or [current]
            cells[c][n][e][0] = rng.choice(choices)
        return Genotype(Cell(_as_tuples(cells[0])), Cell(_as_tuples(cells[1])), self.skeleton)

    def sample_distinct(self, count: int, rng: random.Random, exclude: Iterable[Genotype] = ()) -> list[Genotype]:
        """``count`` genotypes, distinct from each other and from ``exclude`` when the space allows it."""
        taken, chosen = set(exclude), []
        for _ in range(count * 50):
            if len(chosen) == count:
                break
            genotype = self.sample(rng)
            if genotype not in taken:
                taken.add(genotype)
                chosen.append(genotype)
        while len(chosen) < count:  # a tiny space: repeats are unavoidable
            chosen.append(self.sample(rng))
        return chosen

    def _random_cell(self, rng: random.Random) -> Cell:
        nodes = []
        for i in range(self.nodes):
            a, b = rng.sample(range(CELL_INPUTS + i), 2)
            nodes.append(((rng.choice(self.operations), a), (rng.choice(self.operations), b)))
        return Cell(tuple(nodes))

    def describe(self) -> dict:
        """Name, operations, skeleton, sources and sizes, JSON-ready (sizes as exact integers in strings too)."""
        normal, reduce = self.cell_counts()
        return dict(name=self.name, operations=list(self.operations), skeleton=self.skeleton.to_dict(),
                    nodes=self.nodes, sources=list(self.sources), seeds=[g.to_dict() for g in self.seeds],
                    cells_normal=str(normal), cells_reduce=str(reduce), size=str(self.size()),
                    log10_size=math.log10(self.size()))


def standard_space(skeleton: Skeleton | None = None, nodes: int = 4) -> SearchSpace:
    """Every operation on every wiring, with the default (or given) skeleton."""
    return SearchSpace("standard", OPERATIONS, skeleton or Skeleton(), nodes)


def related_space(closest: Iterable[tuple[str, Genotype]], mutations: int = 2) -> SearchSpace:
    """The space of the closest baseline tasks: ``closest`` = ``[(task name, its best genotype), ...]`` (top-k).

    Operations: those in their genotypes plus ``skip_connect``; wirings and skeleton: theirs; candidates: their
    genotypes with ``mutations`` edges changed. Always a subset of the standard space with the same skeleton.
    """
    closest = list(closest)
    if not closest:
        raise TanasError("a related space needs at least one closest task with a genotype")
    skeletons = {g.skeleton for _, g in closest}
    if len(skeletons) != 1:
        raise TanasError("the closest tasks' genotypes use different skeletons; pick tasks searched with one skeleton")
    used = set().union(*(g.operations for _, g in closest)) | {"skip_connect"}
    operations = tuple(op for op in OPERATIONS if op in used)
    return SearchSpace("related", operations, skeletons.pop(), closest[0][1].nodes,
                       seeds=tuple(g for _, g in closest), sources=tuple(name for name, _ in closest),
                       mutations=mutations)
