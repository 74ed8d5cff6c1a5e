#!/usr/bin/env bash
# Rebuild results/ from scratch (about 1-1.5 h on a 2-core CPU): train the four built-in methods on the
# tiny preset, ship their checkpoints into the package, evaluate, tabulate and plot.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf results/reference results/plots  # records of another protocol or checkpoint never mix with the new ones
for m in merge nested-dropout tail-drop tome; do
  vltbench train --method "$m"
done
python scripts/ship.py --preset tiny --methods merge,nested-dropout,tail-drop,tome
vltbench run --method all --lengths 4,8,32 --results results/reference
vltbench leaderboard --results results/reference --format md --out results/leaderboard.md
vltbench leaderboard --results results/reference --format csv --out results/leaderboard.csv
vltbench plot --results results/reference --out results/plots
vltbench report --results results/reference --out results/report.html
python -c "from vltbench.html_report import screenshot_page as s; s('results/report.html', 'results/report.png')"
