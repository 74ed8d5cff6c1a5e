"""The method registry: built-ins and third-party plugins come through the same path.

A method is registered under a name by
- the `vltbench.methods` entry-point group (how both the built-ins, in pyproject.toml, and any
  third-party package register: `my-method = "my_pkg.module:MyMethod"`), or
- `register("name", "module:Attr")` / `register("name", cls)` at run time (tests, notebooks).
Entries are "module:attr" strings resolved only when used, so listing methods imports no model code.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from .errors import UserError

GROUP = "vltbench.methods"


@dataclass
class Entry:
    name: str
    target: Any  # "module:attr" string (lazy) or the class itself
    source: str  # "entry point (dist)" or "register()"
    dist: str | None = None  # the distribution of an entry point (its method code's name and version)

    def load(self):
        if isinstance(self.target, str):
            module, _, attr = self.target.partition(":")
            try:
                obj = importlib.import_module(module)
                for part in attr.split("."):
                    obj = getattr(obj, part)
            except (ImportError, AttributeError) as e:
                raise UserError(f"method {self.name!r} ({self.source}) failed to load from {self.target}: {e}") from e
            self.target = obj
        return self.target


_entries: dict[str, Entry] | None = None


def _discover() -> dict[str, Entry]:
    global _entries
    if _entries is None:
        _entries = {}
        for ep in entry_points(group=GROUP):
            dist = getattr(ep, "dist", None)
            source = f"entry point of {dist.name if dist else 'unknown'}"
            old = _entries.get(ep.name)
            if old is not None and old.target != ep.value:
                raise UserError(f"method name {ep.name!r} is registered twice ({old.source}: {old.target}; "
                                f"{source}: {ep.value}); uninstall or rename one of them")
            _entries[ep.name] = Entry(ep.name, ep.value, source, dist.name if dist else None)
    return _entries


def register(name: str, target: Any) -> None:
    """Register a method by name; a name already taken is rejected."""
    entries = _discover()
    if name in entries:
        raise UserError(f"method name {name!r} is already registered ({entries[name].source}); pick another name")
    entries[name] = Entry(name, target, "register()")


def unregister(name: str) -> None:
    _discover().pop(name, None)


def names() -> list[str]:
    return sorted(_discover())


def get(name: str):
    """The method class registered under `name`; an unknown name lists close matches."""
    entries = _discover()
    if name not in entries:
        close = difflib.get_close_matches(name, entries, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else f"registered: {', '.join(sorted(entries))}"
        raise UserError(f"unknown method {name!r}; {hint} (see `vltbench methods`)")
    return entries[name].load()


def code(name: str) -> dict:
    """The fingerprint of the code behind a registered method (vltbench.models.method_code)."""
    from vltbench.models.method_code import fingerprint

    cls = get(name)
    return fingerprint(cls, _discover()[name].dist)


def reset() -> None:
    """Forget discovered entries (tests that install a plugin call this to re-scan entry points)."""
    global _entries
    _entries = None
