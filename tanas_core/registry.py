"""One registry per kind of thing a contributor adds: suites, architectures, presets, distance metrics and views.

A registry maps a name to its entry (a builder, a ``Preset``, a ``Metric``, a ``View``). Entries register where they
are defined (``ARCHITECTURES.register("vgg16", vgg16)``), as torchvision's ``register_model`` and Task2Vec's
``_register_distance`` do, so adding one is one file that registers it. Every front-end reads the registry: the CLI's
choices, the pages' select boxes, the requests' checks and the validation report all list what is registered.

Each registry names the module that registers the built-in entries (``loader``) and imports it the first time it is
read. That keeps the requests a leaf: they check a name against a registry without importing torch or the method
when they are imported. (Job kinds are a registry too, handed to the job runner: ``jobs.kinds.JOB_KINDS``.)
"""
from __future__ import annotations

import importlib
from collections.abc import MutableMapping
from typing import Any, Callable, Iterator

from tanas_core.errors import TanasError


class Registry(MutableMapping):
    """Names -> entries of one kind, in registration order; the built-ins are loaded on first read."""

    def __init__(self, kind: str, loader: str):
        self.kind, self.loader = kind, loader
        self._entries: dict[str, Any] = {}
        self._loaded = False

    def register(self, name: str, entry: Any = None, *, replace: bool = False) -> Any:
        """Add ``entry`` under ``name`` (returns it, so it works as a decorator: ``@REGISTRY.register("name")``).
        ``TanasError`` when the name is taken, unless ``replace``."""
        if entry is None:
            return lambda decorated: self.register(name, decorated, replace=replace)
        if not isinstance(name, str) or not name.strip():
            raise TanasError(f"a {self.kind} needs a non-empty name, got {name!r}")
        if name in self._entries and not replace:
            raise TanasError(f"a {self.kind} named {name!r} is already registered; pick another name")
        self._entries[name] = entry
        return entry

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True  # before the import: the loader reads the registry while it registers
            importlib.import_module(self.loader)

    def __getitem__(self, name: str) -> Any:
        self._load()
        if name not in self._entries:
            raise TanasError(f"unknown {self.kind} {name!r}: choose one of {', '.join(self._entries)}")
        return self._entries[name]

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries

    def get(self, name: str, default: Any = None) -> Any:
        """The entry of ``name``, or ``default`` when none is registered."""
        self._load()
        return self._entries.get(name, default)

    def __setitem__(self, name: str, entry: Any) -> None:
        self._load()
        self.register(name, entry, replace=True)

    def __delitem__(self, name: str) -> None:
        del self._entries[name]

    def __iter__(self) -> Iterator[str]:
        self._load()
        return iter(list(self._entries))

    def __len__(self) -> int:
        self._load()
        return len(self._entries)

    def names(self, where: Callable[[Any], bool] | None = None) -> tuple[str, ...]:
        """The registered names (those whose entry satisfies ``where``), in registration order."""
        return tuple(name for name, entry in self.items() if where is None or where(entry))

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self) if self._loaded else 'not loaded'})"


SUITES = Registry("suite", "tanas_core.data.suites")  # name -> a function building the Suite
ARCHITECTURES = Registry("architecture", "tanas_core.networks")
PRESETS = Registry("preset", "tanas_core.training.trainer")
METRICS = Registry("metric", "tanas_core.distances.metrics")
VIEWS = Registry("view", "tanas_core.distances.views")
