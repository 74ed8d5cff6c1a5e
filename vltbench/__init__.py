"""vltbench: a benchmark harness for variable-length image tokenizers in latent diffusion.

The package reads as its pipeline: core (shared by every stage) -> data -> models -> training ->
evaluation -> reporting, with the Python API (api.py) and the CLI (cli.py) on top, and the plugin
API (method.py, lengths.py) that methods import.

The Python API is exported lazily, so `import vltbench` stays cheap:

    import vltbench
    df = vltbench.evaluate(["merge"], [4, 8])

evaluate, train, leaderboard, check, flops, plot, report, import_lgm, import_titok, score, load_config and
UserError.
"""

from vltbench.core import __version__

_API = ("evaluate", "train", "leaderboard", "check", "flops", "plot", "report", "import_lgm", "import_titok",
        "score", "load_config")
__all__ = ["__version__", *_API, "UserError"]


def __getattr__(name):
    if name in _API:
        from vltbench import api

        return getattr(api, name)
    if name == "UserError":
        from vltbench.core.errors import UserError

        return UserError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
