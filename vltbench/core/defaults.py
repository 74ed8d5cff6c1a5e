"""Defaults shared by the Python API (vltbench.api) and the CLI (vltbench.cli): both read them here,
neither restates them, so `vltbench run` and `vltbench.evaluate` cannot drift apart."""

from pathlib import Path

PRESET = "tiny"  # the config preset (CPU-sized, real MNIST digits; checkpoints shipped)
IMPORT_PRESET = "lgm-official-xl"  # the preset `import lgm` builds its checkpoint for
RESULTS = Path("results/runs")  # where records are written and read
SEEDS = (0,)  # sampling seeds per cell
EXECUTOR = "local"  # where a sweep's cells run (vltbench.evaluation.executors.EXECUTORS)
Z = 2.0  # `check`: the noise multiple a change must exceed to count as a regression
TABLE_FORMAT = "rich"  # `leaderboard` / `run`: the terminal view (vltbench.reporting.terminal), piped too
