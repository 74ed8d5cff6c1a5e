"""CPU training-step time of the tiny preset's DiT: this checkout's `dit` and `lightning` archs beside
the plain DiT of an earlier revision, interleaved in one process (issue 15: the tiny preset must not
get slower), and of the tokenizer's `vit` vs `timm` blocks.

    OMP_NUM_THREADS=1 python benchmarks/arch_speed.py [--before 42a962a] [--out results/bench/arch_speed.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _old_dit(rev: str, tmp: Path):
    pkg = tmp / "old_nn"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for name in ("blocks.py", "dit.py"):
        text = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:vltbench/nn/{name}"], check=True,
                              capture_output=True, text=True).stdout
        (pkg / name).write_text(text)
    sys.path.insert(0, str(tmp))
    from old_nn.dit import DiT
    return DiT


def _time(step, rounds: int, iters: int) -> list[float]:
    out = []
    for _ in range(rounds):
        step()
        t0 = time.perf_counter()
        for _ in range(iters):
            step()
        out.append((time.perf_counter() - t0) / iters)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", default="42a962a", help="the revision whose plain DiT is the baseline")
    ap.add_argument("--out", default=str(ROOT / "results" / "bench" / "arch_speed.json"))
    ap.add_argument("--rounds", type=int, default=6)
    args = ap.parse_args(argv)
    from vltbench.models.flow import flow_loss
    from vltbench.models.lengths import view_from_labels
    from vltbench.models.dit import DiT
    from vltbench.models.tokenizer import Tokenizer
    from vltbench.training.loops import adamw

    n, d, width, depth, heads, batch = 32, 16, 128, 6, 4, 128  # the tiny preset's DiT and batch
    with tempfile.TemporaryDirectory() as tmp:
        OldDiT = _old_dit(args.before, Path(tmp))
        models = {}
        for name, cls, kw in [(f"dit@{args.before}", OldDiT, {}), ("dit", DiT, {}), ("lightning", DiT, {"arch": "lightning"})]:
            torch.manual_seed(0)
            m = cls(n, d, width, depth, heads, 13, **kw).train()
            models[name] = (m, adamw(m.parameters(), 1e-4, 0.0))
        z, y = torch.randn(batch, n, d), torch.randint(13, (batch,))
        views = {32: view_from_labels(torch.arange(n), n), 8: view_from_labels(torch.arange(n) * 8 // n, 8)}
        res = {name: {k: [] for k in views} for name in models}
        for _ in range(args.rounds):  # interleaved, so load from other processes hits every model alike
            for k, view in views.items():
                for name, (m, opt) in models.items():
                    g = torch.Generator().manual_seed(0)

                    def step():
                        loss = flow_loss(m, z, y, view, g, 0.1)
                        opt.zero_grad()
                        loss.backward()
                        opt.step()
                    res[name][k] += _time(step, 1, 5)
        old, new = models[f"dit@{args.before}"][0], models["dit"][0]
        new.load_state_dict(old.state_dict())
        x, t = torch.randn(2, n, d), torch.rand(2)
        same = bool(torch.equal(old(x, t, y[:2]), new(x, t, y[:2])))
    toks = {}
    for arch in ("vit", "timm"):
        torch.manual_seed(0)
        m = Tokenizer(32, 4, 32, 16, 96, 3, 3, 4, arch=arch).train()
        toks[arch] = (m, adamw(m.parameters(), 1e-3, 1e-4))
    img = torch.rand(64, 3, 32, 32) * 2 - 1
    tres = {a: [] for a in toks}
    for _ in range(max(2, args.rounds // 2)):
        for a, (m, opt) in toks.items():
            def tstep():
                loss = F.mse_loss(m.decode(m.encode(img)), img)
                opt.zero_grad()
                loss.backward()
                opt.step()
            tres[a] += _time(tstep, 1, 3)
    report = {"dit_step_ms_min": {name: {str(k): round(1e3 * min(v), 1) for k, v in r.items()} for name, r in res.items()},
              "dit_step_ms_median": {name: {str(k): round(1e3 * sorted(v)[len(v) // 2], 1) for k, v in r.items()}
                                     for name, r in res.items()},
              "plain_dit_output_bitwise_equal_to_before": same,
              "tokenizer_step_ms_min": {a: round(1e3 * min(v), 1) for a, v in tres.items()},
              "threads": torch.get_num_threads(), "batch": batch}
    print(json.dumps(report, indent=1))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
