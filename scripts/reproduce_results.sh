#!/usr/bin/env bash
# Rebuild results/ from scratch on the tiny preset (about 1 h on a 2-core CPU): train the four built-in
# methods with training seeds 0 and 1, ship the seed-0 checkpoints into the package, evaluate K = 4, 8, 32
# (training seed s sampled with sampling seed s, so methods pair on shared seeds), tabulate, plot, report.
set -euo pipefail
cd "$(dirname "$0")/.."
METHODS="merge nested-dropout tail-drop tome"
rm -rf results/reference results/plots  # records of another protocol or checkpoint never mix with the new ones
for s in 0 1; do
  for m in $METHODS; do
    vltbench train --method "$m" --set seed=$s
  done
done
python scripts/ship.py --preset tiny --methods merge,nested-dropout,tail-drop,tome
for s in 0 1; do
  vltbench run --method all --lengths 4,8,32 --set seed=$s --seeds $s --results results/reference
done
vltbench leaderboard --results results/reference --format md --out results/leaderboard.md
vltbench leaderboard --results results/reference --format csv --out results/leaderboard.csv
vltbench plot --results results/reference --out results/plots
vltbench report --results results/reference --out results/report.html
python -c "from vltbench.html_report import screenshot_page as s; s('results/report.html', 'results/report.png')"
