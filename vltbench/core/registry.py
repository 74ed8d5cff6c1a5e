"""One registry shape for every extension point: methods, datasets, feature extractors and metrics
(whose entries are MetricSpecs, vltbench.evaluation.metrics.specs; an entry point may name a list of them).

A `Registry` maps names to entries. An entry's target is a "module:attr" string resolved only when the
entry is used, or the object itself; its `info` (keyword fields given at registration, e.g. a
dataset's class count) is readable without loading the target, so listing and validating names
imports no model or data code. Entries come from
- the kind's built-ins: a function (named by a "module:attr" string, so core imports nothing above
  it) that registers them with `registry.register(...)`, called at each (re)discovery,
- the kind's entry-point group (how any third-party package registers: in its pyproject.toml,
  `[project.entry-points."vltbench.datasets"] shapes = "my_pkg.shapes:load"`); an entry point carries
  no info of its own: its fields are read from the loaded target's attributes of the same names,
- `register(name, target, **info)` at run time (tests, notebooks).
A name is registered once: a second registration under a taken name is refused (unless replace=True).

The built-in methods register through pyproject.toml's `vltbench.methods` group, like a plugin.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Iterator

from .errors import UserError


def resolve(target: str) -> Any:
    """The object a "module:attr" (or "module") string names."""
    module, _, attr = target.partition(":")
    obj = importlib.import_module(module)
    for part in filter(None, attr.split(".")):
        obj = getattr(obj, part)
    return obj


@dataclass
class Entry:
    name: str
    target: Any  # "module:attr" string (lazy) or the object itself
    source: str  # "entry point of <dist>", "built in" or "register()"
    dist: str | None = None  # the distribution of an entry point (its code's name and version)
    info: dict | None = field(default=None)  # None: read from the target's attributes (entry points)
    kind: str = "entry"

    def load(self):
        if isinstance(self.target, str):
            try:
                obj = resolve(self.target)
            except (ImportError, AttributeError) as e:
                raise UserError(f"{self.kind} {self.name!r} ({self.source}) failed to load from {self.target}: {e}") from e
            self.target = obj
        return self.target


class Registry:
    """Names -> lazily loaded entries of one kind (see the module docstring).

    kind: the word in messages ("method", "dataset", ...). group: the entry-point group.
    builtins: "module:function" of the function that registers the built-in entries (given the
    registry). fields: the info keys an entry may carry, with their defaults (unknown keys are refused at registration; an entry point's
    values are read from its target's attributes). see: where a user lists the names, for messages."""

    def __init__(self, kind: str, group: str, *, builtins: str | None = None, fields: dict | None = None,
                 see: str = ""):
        self.kind, self.group, self.builtins, self.see = kind, group, builtins, see
        self.fields = dict(fields or {})
        self._entries: dict[str, Entry] | None = None

    def _discover(self) -> dict[str, Entry]:
        if self._entries is None:
            self._entries = {}
            if self.builtins is not None:
                resolve(self.builtins)(self)
            for ep in entry_points(group=self.group):
                dist = getattr(ep, "dist", None)
                source = f"entry point of {dist.name if dist else 'unknown'}"
                old = self._entries.get(ep.name)
                if old is not None:
                    if old.target == ep.value:
                        continue
                    raise UserError(f"{self.kind} name {ep.name!r} is registered twice ({old.source}: {old.target}; "
                                    f"{source}: {ep.value}); uninstall or rename one of them")
                self._entries[ep.name] = Entry(ep.name, ep.value, source, dist.name if dist else None, None, self.kind)
        return self._entries

    def register(self, name: str, target: Any, *, source: str = "register()", replace: bool = False,
                 **info) -> Entry:
        """Register `target` ("module:attr" or the object) under `name`; a name already taken is refused
        unless replace=True (the new entry takes the old one's place)."""
        entries = self._discover()
        if not isinstance(name, str) or not name:
            raise UserError(f"a {self.kind} name must be a non-empty string, got {name!r}")
        if name in entries and not replace:
            raise UserError(f"{self.kind} name {name!r} is already registered ({entries[name].source}); "
                            "pick another name")
        unknown = sorted(set(info) - set(self.fields))
        if unknown:
            raise UserError(f"register({name!r}): unknown field {unknown[0]!r} for a {self.kind}; "
                            f"fields: {', '.join(self.fields) or 'none'}")
        entry = Entry(name, target, source, None, {**self.fields, **info}, self.kind)
        entries[name] = entry
        return entry

    def names(self) -> list[str]:
        return sorted(self._discover())

    def entries(self) -> list[Entry]:
        """Every entry in registration order: built-ins, entry points, then run-time registrations."""
        return list(self._discover().values())

    def __contains__(self, name) -> bool:
        return name in self._discover()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._discover())

    def unknown(self, name) -> UserError:
        """The error for a name nobody registered: close matches, else every registered name."""
        entries = self._discover()
        close = difflib.get_close_matches(str(name), entries, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else f"registered: {', '.join(sorted(entries))}"
        return UserError(f"unknown {self.kind} {name!r}; {hint}{f' (see {self.see})' if self.see else ''}")

    def entry(self, name: str) -> Entry:
        entries = self._discover()
        if name not in entries:
            raise self.unknown(name)
        return entries[name]

    def get(self, name: str):
        """The object registered under `name` (loaded on first use); an unknown name lists close matches."""
        return self.entry(name).load()

    def info(self, name: str) -> dict:
        """The entry's fields; an entry point's are read from its loaded target's attributes."""
        entry = self.entry(name)
        if entry.info is None:
            obj = entry.load()
            entry.info = {key: getattr(obj, key, default) for key, default in self.fields.items()}
        return entry.info

    def reset(self) -> None:
        """Forget discovered and registered entries (tests that install a plugin re-scan entry points)."""
        self._entries = None


methods = Registry("method", "vltbench.methods", see="`vltbench methods`")
datasets = Registry("dataset", "vltbench.datasets", builtins="vltbench.data.catalog:register_builtins",
                    fields={"needs_root": False, "classes": None, "licence": None})
extractors = Registry("feature extractor", "vltbench.extractors",
                      builtins="vltbench.evaluation.extractors.builtins:register_builtins",
                      fields={"domain": None, "weights": "none", "summary": ""})
metrics = Registry("metric", "vltbench.metrics", builtins="vltbench.evaluation.metrics.specs:register_builtins",
                   see="vltbench.evaluation.metrics.specs.register_metric")

# The method registry's functions, as the rest of vltbench (and plugins' tests) call them.
register, names, get, reset = methods.register, methods.names, methods.get, methods.reset
