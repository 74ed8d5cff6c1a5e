"""vltbench: a benchmark harness for variable-length image tokenizers in latent diffusion.

The Python API (vltbench.api) is exported lazily, so `import vltbench` stays cheap:

    import vltbench
    df = vltbench.evaluate(["merge"], [4, 8])

evaluate, train, leaderboard, check, flops, plot, report and UserError. `train`, `check` and `report` are
also the names of submodules (vltbench/train.py, vltbench/check.py, vltbench/report.py): `vltbench.train`,
`vltbench.check` and `vltbench.report` are those modules made callable, so `vltbench.train(...)`,
`vltbench.check(...)` and `vltbench.report(...)` call the API functions while `import vltbench.train` and
`vltbench.train.train_tokenizer` (or `vltbench.report.leaderboard`) keep working.
"""

import sys as _sys
import types as _types

__version__ = "0.1.0"

_API = ("evaluate", "train", "leaderboard", "check", "flops", "plot", "report", "import_lgm")
_CALLABLE_SUBMODULES = ("train", "check", "report")  # API names that are submodules too
__all__ = ["__version__", *_API, "UserError"]


class _CallableModule(_types.ModuleType):
    """A submodule that is also the API function of the same name (vltbench.train, .check, .report)."""

    def __call__(self, *args, **kwargs):
        from . import api

        return getattr(api, self.__name__.rpartition(".")[2])(*args, **kwargs)

    @property
    def __signature__(self):
        """inspect.signature(vltbench.train) shows the API function's parameters, not (*args, **kwargs)."""
        import inspect

        from . import api

        return inspect.signature(getattr(api, self.__name__.rpartition(".")[2]))


class _Package(_types.ModuleType):
    def __setattr__(self, name, value):
        # the import system binds a submodule to its package with setattr: make these callable
        if (name in _CALLABLE_SUBMODULES and isinstance(value, _types.ModuleType)
                and value.__name__ == f"{self.__name__}.{name}" and type(value) is _types.ModuleType):
            value.__class__ = _CallableModule
        super().__setattr__(name, value)


_sys.modules[__name__].__class__ = _Package


def __getattr__(name):
    if name in _CALLABLE_SUBMODULES:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    if name in _API:
        from . import api

        return getattr(api, name)
    if name == "UserError":
        from .errors import UserError

        return UserError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
