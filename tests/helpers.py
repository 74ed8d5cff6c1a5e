"""Shared test helpers: run the real CLI in a subprocess, the tiny test config."""

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).parent
TINY = str(TESTS / "tiny_test.yaml")


def run_cli(*args, env=None, cwd=None, timeout=600):
    e = dict(os.environ)
    e.setdefault("OMP_NUM_THREADS", "1")
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "vltbench", *map(str, args)], capture_output=True, text=True,
                          env=e, cwd=cwd, timeout=timeout)
