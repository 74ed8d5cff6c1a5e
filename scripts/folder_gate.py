"""Gate 4 of issue 20: the default run on a folder of RGB images scores with Inception, never with the
digit classifier. Writes a folder of RGB crops of scikit-image's photos (public domain / CC0; 3 classes
by source photo), runs the main job's command on it with small training and sample counts (the property
does not depend on them), and keeps everything it printed.

    python scripts/folder_gate.py --out results/check/folder-run.txt
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data as photos

PHOTOS = {"astronaut": photos.astronaut, "coffee": photos.coffee, "chelsea": photos.chelsea}
SMALL = ["--set", "tokenizer.steps=200", "--set", "tokenizer.warm_start=50", "--set", "dit.steps=200",
         "--n-samples", "40", "--set", "eval.n_ref=40", "--set", "sampler.select_samples=20",
         "--set", "sampler.cfg_scales=[1.0,2.0]", "--set", "sampler.cfg_extend=0"]


def write_folder(root: Path, per_class: int = 90, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for name, load in PHOTOS.items():
        img = load()
        (root / name).mkdir(parents=True, exist_ok=True)
        h, w = img.shape[:2]
        for i in range(per_class):
            s = int(rng.integers(64, min(h, w) // 2))
            y, x = int(rng.integers(0, h - s)), int(rng.integers(0, w - s))
            Image.fromarray(img[y:y + s, x:x + s]).save(root / name / f"{i:03d}.png")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="results/check/folder-run.txt")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_folder(tmp / "data")
        cmd = ["vltbench", "run", "--method", "merge", "--lengths", "4,8,32", "--set", "data.name=folder",
               "--data-root", str(tmp / "data"), *SMALL, "--results", str(tmp / "results")]
        env = {**os.environ, "VLTBENCH_CACHE": str(tmp / "cache"), "COLUMNS": "160"}
        r = subprocess.run([sys.executable, "-m", "vltbench", *cmd[1:]], capture_output=True, text=True, env=env)
        shown = " ".join(cmd).replace(str(tmp), "$TMP")
        text = (f"$ {shown}\n# exit code {r.returncode}; stdout then stderr, the temp folder shown as $TMP\n"
                + (r.stdout + r.stderr).replace(str(tmp), "$TMP"))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(text)
    hits = [line for line in text.splitlines() if "mnist-cnn" in line]
    print(f"{a.out}: exit {r.returncode}, {len(text.splitlines())} lines, lines naming mnist-cnn: {len(hits)}")
    sys.exit(r.returncode or bool(hits))


if __name__ == "__main__":
    main()
