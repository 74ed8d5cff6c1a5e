"""Performance benchmarks of the harness itself: a development suite, run from a checkout.

    python benchmarks/bench.py [NAMES...] [--quick] [--out DIR] [--threads N]

(default: every benchmark, JSONs to results/bench of this checkout; results/PERFORMANCE.md reports the
figures). It reads the test configuration tests/tiny_test.yaml of this checkout, and its goals are
those of this project's 2-core CPU machine.

Each benchmark prints a small table and writes `<out_dir>/<name>.json` with its figures, the
settings it ran with, the call / command line, torch version, thread count, machine load and
provenance. Figures that compare two things are ratios of runs measured side by side in one process
(interleaved rounds in a rotating order, best round kept: the machine is shared and noisy); absolute
times are reported for reference and never asserted. `quick=True` shrinks every size so the whole
set smoke-runs in about a minute (its numbers only show that the code runs).

Benchmarks (BENCHMARKS):
  peak          fp32 torch.mm peak of this machine (GFLOP/s, 2 FLOPs per fused multiply-add)
  dit-scaling   tiny DiT training / sampling step time at K = N/8, N/4, N/2, N vs fvcore FLOPs ratio
  dit-gflops    achieved GFLOP/s of the tiny DiT training / sampling step vs `peak`; profile if < 60 %
  features      Inception feature throughput: vltbench's extractor vs torch-fidelity's own pipeline
  latent-cache  DiT training from the latent cache vs re-encoding images every step; cache size
  memory        peak RSS of `vltbench eval` subprocesses at growing sample counts
  overhead      harness overhead of one evaluation cell: wall time vs its model compute
  gpu           DiT-B (N=256, d=32) bf16-autocast training step on CUDA: steps/s, images/s, MFU

FLOP conventions: vltbench.evaluation.metrics.flops counts fvcore FLOPs (1 fused multiply-add = 1 FLOP,
elementwise ops not counted). Achieved rates here are in hardware FLOPs (2 per FMA, like the
matmul peak and vendor peaks): fvcore count x 2. A training step = 3 x the forward (forward +
backward at 2x the forward), per image, times the batch.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from vltbench.core.errors import UserError
from vltbench.core.paths import portable, portable_strings
from vltbench.evaluation.extractors.domains import resolve_extractor
from vltbench.models.lengths import LengthView

ROOT = Path(__file__).resolve().parents[1]  # the checkout this script belongs to
TINY_TEST = ROOT / "tests" / "tiny_test.yaml"

FMA_FLOPS = 2  # hardware FLOPs per fused multiply-add (fvcore counts 1)
TRAIN_FACTOR = 3  # training step FLOPs = 3 x forward FLOPs (forward + backward at 2x forward)
GPU_PEAK_TFLOPS = 790.0  # bf16 dense peak used for MFU (2 FLOPs per FMA)
DIT_GOAL_RATIO = 1.25  # dit-scaling: t(K)/t(N) within 1.25x of FLOPs(K)/FLOPs(N) for K >= N/8
GFLOPS_GOAL = 0.60  # dit-gflops: >= 60 % of the measured matmul peak at full length
OVERHEAD_GOAL = 0.10  # overhead: harness time <= 10 % of the cell's wall time
PEAK_CONVENTION = ("GFLOP/s = 2 FLOPs per fused multiply-add (an (n x n) @ (n x n) torch.mm is 2 n^3 "
                   "FLOPs), fp32, best of several runs at each size; peak = best size")
ACHIEVED_CONVENTION = ("achieved GFLOP/s = 2 x fvcore FLOPs (fvcore: 1 FMA = 1 FLOP, attention matmuls and "
                       "layer norms counted, elementwise ops not) / measured time; training step = 3 x forward "
                       "FLOPs x batch; sampling step = forward FLOPs x 2 x batch (CFG runs cond + uncond as one "
                       "doubled batch)")


# ---- plumbing -----------------------------------------------------------------------------------

@dataclass
class Ctx:
    quick: bool
    threads: int
    out_dir: Path
    results: dict = field(default_factory=dict)  # earlier benchmarks' results in this run
    device: torch.device = torch.device("cpu")


@dataclass
class Bench:
    fn: Callable[[Ctx], dict]
    title: str


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def race(fns: dict[Any, Callable[[], Any]], repeats: int, inner: int = 1, warmup: int = 1,
         device: torch.device = torch.device("cpu")) -> dict[Any, dict]:
    """Time several callables side by side: `repeats` rounds, each running every callable `inner`
    times, in an order rotated every round (so slow phases of a noisy machine hit all of them).
    Returns {key: {best_s, median_s, rounds}} per call; ratios should use best_s."""
    keys = list(fns)
    for key in keys:
        for _ in range(warmup):
            fns[key]()
    _sync(device)
    times: dict[Any, list[float]] = {k: [] for k in keys}
    for r in range(repeats):
        shift = r % len(keys)
        for key in keys[shift:] + keys[:shift]:
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(inner):
                fns[key]()
            _sync(device)
            times[key].append((time.perf_counter() - t0) / inner)
    return {k: {"best_s": min(v), "median_s": statistics.median(v), "rounds": len(v)} for k, v in times.items()}


def _machine() -> dict:
    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    out = {"platform": platform.platform(), "cpu": cpu, "cpu_count": os.cpu_count(),
           "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    with contextlib.suppress(OSError):
        out["load_avg_1m"] = round(os.getloadavg()[0], 2)
    return out


def _provenance() -> dict:
    try:
        from vltbench.evaluation.store import provenance

        return provenance("cuda" if torch.cuda.is_available() else "cpu", 1)
    except Exception as e:  # provenance is informative only
        return {"error": repr(e)}


def _fmt(v) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _print_table(name: str, result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=160)
    title = f"{name}: {result.get('title', '')}"
    if result.get("skipped"):
        console.print(f"[bold]{title}[/bold]: skipped ({result['skipped']})")
        return
    if result.get("error"):
        console.print(f"[bold]{title}[/bold]: [red]error[/red] {result['error']}")
        return
    rows = result.get("rows") or []
    if rows:
        cols = list(dict.fromkeys(c for r in rows for c in r))
        table = Table(*cols, title=title)
        for r in rows:
            table.add_row(*[_fmt(r.get(c)) for c in cols])
        console.print(table)
    for line in result.get("summary", []):
        console.print(f"  {line}", highlight=False)


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and obj != obj:
        return None
    if hasattr(obj, "item") and callable(obj.item):
        return obj.item()
    return obj


# ---- shared model setup ---------------------------------------------------------------------------

def _tiny_cfg(overrides: dict | None = None):
    from vltbench.core.config import load_config

    return load_config("tiny", overrides=overrides)


def _embedded_classes() -> int:
    from vltbench.data import embedded

    return len(embedded.CLASS_NAMES)


def _command_line() -> str:
    """The command that ran, without this machine's paths (the results are committed)."""
    argv = ["python", portable(sys.argv[0])] if sys.argv[0].endswith(".py") else [Path(sys.argv[0]).name]
    return " ".join(argv + [portable(a) if os.path.isabs(a) else a for a in sys.argv[1:]])


def _merge_bundle(cfg, num_classes: int, use_checkpoint: bool = True):
    """A tiny-preset merge bundle whose method is frozen: the trained checkpoint's merge table when
    one is found (real length views), else the table frozen from the untrained embedding (the same
    kind of view: K clusters of unequal sizes; step times do not depend on the weights)."""
    from vltbench.models.bundle import build_bundle

    source = "untrained embedding (frozen with method.freeze())"
    if use_checkpoint:
        with contextlib.suppress(Exception):
            from vltbench.models.bundle import load_bundle
            from vltbench.training.checkpoints import find_checkpoint

            found = find_checkpoint(cfg, "merge", num_classes)
            if found is not None:
                bundle = load_bundle(found[0], cfg, "merge", num_classes)
                return bundle, f"checkpoint {portable(found[0])}"
    bundle = build_bundle(cfg, "merge", num_classes)
    bundle.method.freeze()
    return bundle, source


def doubled(view: LengthView) -> LengthView:
    """The view for a batch stacked twice (cond + uncond, as the CFG sampler runs it), when it is per-image."""
    if view.P is None or view.P.dim() == 2:
        return view
    return LengthView(view.n_tokens, view.k, torch.cat([view.P, view.P]), torch.cat([view.sizes, view.sizes]))


def _lengths(n: int) -> list[int]:
    return sorted({max(1, n // 8), max(1, n // 4), max(1, n // 2), n})


class _DiTSteps:
    """One DiT with its AdamW + EMA, the exact training step of vltbench.training.loops (flow_loss, backward,
    grad clip, AdamW, EMA update) and one CFG sampling step (cond + uncond as one doubled batch,
    as vltbench.models.flow.sample runs it), on fixed random standardised latents."""

    def __init__(self, bundle, train_batch: int, sample_batch: int, device=torch.device("cpu"), seed: int = 0):
        from vltbench.models.flow import EMA
        from vltbench.training.loops import adamw

        cfg = bundle.cfg
        self.bundle, self.device = bundle, device
        torch.manual_seed(seed)
        self.dit = bundle.new_dit().to(device).train()
        self.ema = EMA(self.dit, cfg.dit.ema)
        self.opt = adamw(self.dit.parameters(), cfg.dit.lr, cfg.dit.weight_decay)
        n, d, c = bundle.n_tokens, cfg.tokenizer.latent_dim, bundle.num_classes
        g = torch.Generator().manual_seed(seed)
        self.z = torch.randn(train_batch, n, d, generator=g).to(device)
        self.y = torch.randint(0, c, (train_batch,), generator=g).to(device)
        self.xs = torch.randn(2 * sample_batch, n, d, generator=g).to(device)
        ys = torch.randint(0, c, (sample_batch,), generator=g)
        self.ys = torch.cat([ys, torch.full_like(ys, self.dit.null_class)]).to(device)
        self.ts = torch.full((2 * sample_batch,), 0.5, device=device)
        self.gen = torch.Generator(device).manual_seed(seed + 1)
        self.views: dict[int, Any] = {}
        self.phase: dict[int, list[tuple[float, float]]] = {}

    def view(self, k: int):
        if k not in self.views:
            self.views[k] = self.bundle.method.view(k).to(self.device)
        return self.views[k]

    def train_step(self, k: int, z=None, y=None) -> None:
        from vltbench.models.flow import flow_loss
        from vltbench.training.loops import clip_grads

        cfg = self.bundle.cfg.dit
        t0 = time.perf_counter()
        loss = flow_loss(self.dit, self.z if z is None else z, self.y if y is None else y, self.view(k), self.gen,
                         cfg.label_dropout)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        _sync(self.device)
        t1 = time.perf_counter()
        clip_grads(self.dit.parameters(), cfg.grad_clip)
        self.opt.step()
        self.ema.update(self.dit)
        _sync(self.device)
        self.phase.setdefault(k, []).append((t1 - t0, time.perf_counter() - t1))

    @torch.no_grad()
    def sample_step(self, k: int) -> None:
        self.dit(self.xs[:, :k], self.ts, self.ys, doubled(self.view(k)))

    def forward_fma(self, k: int) -> float:
        """fvcore FLOPs (= FMAs) of one forward per image at length K."""
        from vltbench.evaluation.metrics.flops import dit_forward_count

        return dit_forward_count(self.dit, self.view(k)).total


# ---- 1. peak ------------------------------------------------------------------------------------

def bench_peak(ctx: Ctx) -> dict:
    sizes = [256, 512] if ctx.quick else [1024, 1536, 2048]
    repeats = 3 if ctx.quick else 7
    rows, best = [], (0.0, None)
    for n in sizes:
        a, b, out = torch.randn(n, n), torch.randn(n, n), torch.empty(n, n)
        flops = FMA_FLOPS * n ** 3
        inner = max(1, round(2e9 / flops)) if not ctx.quick else max(1, round(2e8 / flops))
        r = race({n: lambda: torch.mm(a, b, out=out)}, repeats, inner)[n]
        gf = flops / r["best_s"] / 1e9
        rows.append({"size": n, "best_ms": r["best_s"] * 1e3, "median_ms": r["median_s"] * 1e3, "gflops": gf,
                     "gflops_median": flops / r["median_s"] / 1e9})
        if gf > best[0]:
            best = (gf, n)
    return {"figures": {"peak_gflops": best[0], "peak_size": best[1], "per_size": rows,
                        "convention": PEAK_CONVENTION},
            "rows": rows, "config": {"sizes": sizes, "repeats": repeats, "dtype": "float32", "device": "cpu"},
            "summary": [f"peak {best[0]:.1f} GFLOP/s (fp32, 2 FLOPs/FMA) at n={best[1]}, {ctx.threads} thread(s)"]}


def _peak(ctx: Ctx) -> float:
    """The matmul peak of this run: the `peak` benchmark's result, measured now if it did not run."""
    if "peak" not in ctx.results or "figures" not in ctx.results["peak"]:
        ctx.results["peak"] = {**bench_peak(ctx), "title": BENCHMARKS["peak"].title}
    return ctx.results["peak"]["figures"]["peak_gflops"]


# ---- 2. dit-scaling -------------------------------------------------------------------------------

def _dit_rounds(ctx: Ctx) -> tuple[int, int]:
    """(rounds, steps per round) of the DiT step races."""
    return (2, 1) if ctx.quick else (7, 3)


def _race_dit_steps(ctx: Ctx, lengths_for, extra=None):
    """Time DiT training and sampling steps of the tiny preset's merge model at lengths_for(N), side by side
    (with extra(cfg, n, train_b) -> {key: fn} raced in the same rounds)."""
    cfg = _tiny_cfg()
    bundle, source = _merge_bundle(cfg, _embedded_classes())
    n = bundle.n_tokens
    ks = lengths_for(n)
    train_b = 16 if ctx.quick else cfg.dit.batch_size
    sample_b = 16 if ctx.quick else cfg.eval.batch_size
    repeats, inner = _dit_rounds(ctx)
    steps = _DiTSteps(bundle, train_b, sample_b)
    fma = {k: steps.forward_fma(k) for k in ks}
    fns = {("train", k): (lambda k=k: steps.train_step(k)) for k in ks}
    fns.update({("sample", k): (lambda k=k: steps.sample_step(k)) for k in ks})
    fns.update(extra(cfg, n, train_b) if extra else {})
    return cfg, bundle, source, n, train_b, sample_b, steps, fma, race(fns, repeats, inner)


def bench_dit_scaling(ctx: Ctx) -> dict:
    cfg, bundle, source, n, train_b, sample_b, steps, fma, t = _race_dit_steps(ctx, _lengths)
    ks = sorted(fma, key=_lengths(n).index)
    repeats, inner = _dit_rounds(ctx)
    rows, per_k = [], {}
    for k in ks:
        fr = fma[k] / fma[n]
        tr = t[("train", k)]["best_s"] / t[("train", n)]["best_s"]
        sr = t[("sample", k)]["best_s"] / t[("sample", n)]["best_s"]
        ph = steps.phase[k]
        fb = min(p[0] for p in ph)
        up = min(p[1] for p in ph)
        fbn = min(p[0] for p in steps.phase[n])
        sizes = steps.view(k).sizes
        per_k[k] = {"train_ms": t[("train", k)]["best_s"] * 1e3, "train_median_ms": t[("train", k)]["median_s"] * 1e3,
                    "sample_ms": t[("sample", k)]["best_s"] * 1e3, "sample_median_ms": t[("sample", k)]["median_s"] * 1e3,
                    "fwd_bwd_ms": fb * 1e3, "update_ms": up * 1e3,
                    "forward_gflops_per_image": fma[k] / 1e9, "flops_ratio": fr,
                    "train_time_ratio": tr, "train_quotient": tr / fr,
                    "fwd_bwd_time_ratio": fb / fbn, "fwd_bwd_quotient": fb / fbn / fr,
                    "sample_time_ratio": sr, "sample_quotient": sr / fr,
                    "proportional_attention": sizes is not None and not bool((sizes == 1).all())}
        rows.append({"K": k, "train_ms": per_k[k]["train_ms"], "t/t(N) train": tr, "sample_ms": per_k[k]["sample_ms"],
                     "t/t(N) sample": sr, "FLOPs/FLOPs(N)": fr, "quotient train": tr / fr,
                     "quotient sample": sr / fr, "quotient fwd+bwd": fb / fbn / fr})
    eligible = [k for k in ks if k >= n / 8]
    worst_t = max(per_k[k]["train_quotient"] for k in eligible)
    worst_s = max(per_k[k]["sample_quotient"] for k in eligible)
    return {"figures": {"n_tokens": n, "lengths": ks, "per_k": per_k, "worst_train_quotient": worst_t,
                        "worst_sample_quotient": worst_s, "goal": f"quotient <= {DIT_GOAL_RATIO} for K >= N/8",
                        "goal_met_train": worst_t <= DIT_GOAL_RATIO, "goal_met_sample": worst_s <= DIT_GOAL_RATIO,
                        "flops_convention": "fvcore (vltbench.evaluation.metrics.flops.dit_forward_count); training = 3 x forward "
                                            "at every K, so its FLOPs ratio equals the forward's"},
            "rows": rows,
            "config": {"preset": "tiny", "method": "merge", "views": source, "train_batch": train_b,
                       "sample_batch": sample_b, "sample_batch_doubled_for_cfg": 2 * sample_b, "repeats": repeats,
                       "inner": inner, "dit": {"depth": cfg.dit.depth, "width": cfg.dit.width, "heads": cfg.dit.heads},
                       "train_step": "flow_loss + backward + clip_grad_norm + AdamW + EMA (vltbench.training.loops)",
                       "timing": "best of `repeats` rounds (each `inner` steps), lengths interleaved in a rotating order"},
            "notes": ["quotient = (t(K)/t(N)) / (FLOPs(K)/FLOPs(N)); 1 = time scales exactly like FLOPs",
                      "update_ms (grad clip + AdamW + EMA) does not depend on K: it bounds the training quotient at "
                      "small K; quotient fwd+bwd leaves it out"],
            "summary": [f"worst quotient for K >= N/8: train {worst_t:.2f}, sample {worst_s:.2f} "
                        f"(goal <= {DIT_GOAL_RATIO})"]}


# ---- 3. dit-gflops --------------------------------------------------------------------------------

_CATEGORIES = (
    ("matmul", ("addmm", "aten::mm", "bmm", "baddbmm", "aten::matmul", "einsum")),
    ("attention", ("scaled_dot_product", "flash", "efficient_attention", "softmax")),
    ("optimizer", ("_foreach", "adam", "optimizer", "clip_grad")),
    ("layer_norm", ("layer_norm",)),
)


def _category(op: str) -> str:
    low = op.lower()
    for cat, keys in _CATEGORIES:
        if any(k in low for k in keys):
            return cat
    return "elementwise/other" if low.startswith("aten::") else "framework/other"


@contextlib.contextmanager
def _quiet_stderr():
    """Silence file descriptor 2 (C++ log lines) for the duration; Python errors still propagate."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def torch_profile(fn: Callable[[], Any], steps: int, top: int = 12) -> dict:
    """Self time per op (torch.profiler, CPU; CUDA too when present) over `steps` calls of fn."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    fn()
    with _quiet_stderr(), profile(activities=acts) as prof:  # kineto logs start/stop lines to fd 2
        for _ in range(steps):
            fn()
    events = list(prof.key_averages())
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    cats: dict[str, float] = {}
    for e in events:
        cats[_category(e.key)] = cats.get(_category(e.key), 0.0) + e.self_cpu_time_total
    ranked = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    return {"steps": steps, "self_cpu_ms_per_step": total / 1e3 / steps,
            "top_ops": [{"op": e.key, "calls_per_step": e.count / steps, "self_ms_per_step": e.self_cpu_time_total / 1e3 / steps,
                         "share": e.self_cpu_time_total / total, "category": _category(e.key)} for e in ranked],
            "by_category": {k: {"ms_per_step": v / 1e3 / steps, "share": v / total}
                            for k, v in sorted(cats.items(), key=lambda kv: -kv[1])}}


def _spin_for_pyspy(seconds: float, train_batch: int, k: int | None = None) -> None:
    """Target process of the py-spy pass: the tiny DiT training step in a loop for `seconds`."""
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    bundle, _ = _merge_bundle(_tiny_cfg(), _embedded_classes(), use_checkpoint=False)
    steps = _DiTSteps(bundle, train_batch, 1)
    k = k or bundle.n_tokens
    for _ in range(2):
        steps.train_step(k)  # warm-up; lazy imports happen here, outside the sampled loop
    _pyspy_hot_loop(steps, k, seconds)


def _pyspy_hot_loop(steps: "_DiTSteps", k: int, seconds: float) -> None:
    """The loop py-spy's samples are kept from (stacks through this frame)."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        steps.train_step(k)


def _parse_frame(frame: str) -> tuple[str, str]:
    """'name (file.py:12)' -> (name, 'file.py:12'); native frames keep their library, and ATen's
    templated vectorised loops are shortened to their kernel's name."""
    name, _, where = frame.rpartition(" (")
    name = name or frame
    m = re.search(r"native::(?:\(anonymous namespace\)::)?(\w+_kernel)", name)
    if m and len(name) > 80:
        name = f"at::native::{m.group(1)} (vectorised loop)"
    return (name if len(name) <= 160 else name[:157] + "..."), where.rstrip(")")


def pyspy_profile(seconds: float, train_batch: int, threads: int, top: int = 10) -> dict:
    """Sample the training loop with py-spy (native frames when possible): top leaf frames (where CPU
    time is spent) and top Python-level frames (deepest .py frame of each sample)."""
    exe = shutil.which("py-spy")
    if exe is None:
        return {"skipped": "py-spy not installed (pip install py-spy)"}
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    code = ("import sys, importlib.util as u; s = u.spec_from_file_location('vltbench_benchmarks', "
            f"{str(Path(__file__).resolve())!r}); m = u.module_from_spec(s); sys.modules[s.name] = m; "
            "s.loader.exec_module(m); "
            f"m._spin_for_pyspy({seconds}, {train_batch})")
    with tempfile.TemporaryDirectory(prefix="vltbench-pyspy-") as tmp:
        out = Path(tmp) / "raw.txt"
        errors = []
        for native in (True, False):
            cmd = [exe, "record", "-r", "100", "--format", "raw", "-o", str(out)] + (["--native"] if native else []) + \
                  ["--", sys.executable, "-c", code]
            p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=seconds + 300)
            if p.returncode == 0 and out.is_file():
                break
            errors.append((p.stderr or p.stdout).strip().splitlines()[-1:] or [f"exit {p.returncode}"])
        else:
            return {"error": f"py-spy failed: {errors}"}
        leaf: dict[str, int] = {}
        py: dict[str, int] = {}
        total = 0
        for line in out.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if "_pyspy_hot_loop" not in stack or not count.isdigit():
                continue
            frames = stack.split(";")
            c = int(count)
            total += c
            name, where = _parse_frame(frames[-1])
            key = f"{name} ({where})" if ".py:" in where else f"{'?' if name.startswith('0x') else name} ({where})"
            leaf[key] = leaf.get(key, 0) + c
            pyf = next((f for f in reversed(frames) if ".py:" in f), frames[-1])
            py[pyf] = py.get(pyf, 0) + c
    rank = (lambda d: [{"frame": f, "share": n / total} for f, n in sorted(d.items(), key=lambda kv: -kv[1])[:top]])
    return {"native": native, "samples": total, "rate_hz": 100, "top_leaf_frames": rank(leaf) if total else [],
            "top_python_frames": rank(py) if total else []}


def bench_dit_gflops(ctx: Ctx) -> dict:
    sep_peak = _peak(ctx)
    m = ctx.results["peak"]["figures"]["peak_size"]
    pa, pb, po = torch.randn(m, m), torch.randn(m, m), torch.empty(m, m)

    def gemms(cfg, n, b):
        # raced in the same rounds as the DiT steps, so load on this shared machine hits both alike:
        # the peak-size square matmul, and one GEMM of the DiT's own largest shape (MLP fc1 at K = N)
        w = cfg.dit.width
        ga, gw, go = torch.randn(b * n, w), torch.randn(w, 4 * w), torch.empty(b * n, 4 * w)
        return {("gemm", n): lambda: torch.mm(ga, gw, out=go), ("peak", m): lambda: torch.mm(pa, pb, out=po)}

    cfg, bundle, source, n, train_b, sample_b, steps, fma, t = _race_dit_steps(
        ctx, lambda n: [n] if ctx.quick else [n, max(1, n // 8)], gemms)
    same_round_peak = FMA_FLOPS * m ** 3 / t[("peak", m)]["best_s"] / 1e9
    w = cfg.dit.width
    gemm_gflops = FMA_FLOPS * train_b * n * w * 4 * w / t[("gemm", n)]["best_s"] / 1e9
    peak = max(sep_peak, same_round_peak, gemm_gflops)  # the best matmul rate seen: the conservative fraction
    ks = list(fma)
    repeats, inner = _dit_rounds(ctx)
    rows, per_k = [], {}
    for k in ks:
        train_flops = FMA_FLOPS * TRAIN_FACTOR * fma[k] * train_b
        sample_flops = FMA_FLOPS * fma[k] * 2 * sample_b
        fb = min(p[0] for p in steps.phase[k])
        g_train = train_flops / t[("train", k)]["best_s"] / 1e9
        g_fb = train_flops / fb / 1e9
        g_sample = sample_flops / t[("sample", k)]["best_s"] / 1e9
        per_k[k] = {"train_step_ms": t[("train", k)]["best_s"] * 1e3, "train_gflop_per_step": train_flops / 1e9,
                    "train_gflops": g_train, "train_fraction_of_peak": g_train / peak,
                    "fwd_bwd_gflops": g_fb, "fwd_bwd_fraction_of_peak": g_fb / peak,
                    "sample_step_ms": t[("sample", k)]["best_s"] * 1e3, "sample_gflop_per_step": sample_flops / 1e9,
                    "sample_gflops": g_sample, "sample_fraction_of_peak": g_sample / peak}
        rows.append({"K": k, "train GFLOP/s": g_train, "train % peak": 100 * g_train / peak,
                     "fwd+bwd % peak": 100 * g_fb / peak, "sample GFLOP/s": g_sample,
                     "sample % peak": 100 * g_sample / peak})
    full = per_k[n]
    below = min(full["train_fraction_of_peak"], full["sample_fraction_of_peak"]) < GFLOPS_GOAL
    out = {"figures": {"peak_gflops": peak, "peak_separate_gflops": sep_peak, "peak_same_rounds_gflops": same_round_peak,
                       "per_k": per_k,
                       "dit_shape_gemm": {"shape": f"({train_b * n} x {w}) @ ({w} x {4 * w})", "gflops": gemm_gflops,
                                          "fraction_of_peak": gemm_gflops / peak}, "train_fraction_of_peak": full["train_fraction_of_peak"],
                       "sample_fraction_of_peak": full["sample_fraction_of_peak"],
                       "goal": f">= {GFLOPS_GOAL:.0%} of peak at K = N", "goal_met": not below,
                       "convention": ACHIEVED_CONVENTION, "peak_convention": PEAK_CONVENTION},
           "rows": rows,
           "config": {"preset": "tiny", "views": source, "train_batch": train_b, "sample_batch": sample_b,
                      "repeats": repeats, "inner": inner,
                      "peak": f"the best of: the `peak` benchmark, a {m} x {m} matmul and the DiT-shape GEMM, "
                              "both raced in the same rounds as the DiT steps"},
           "summary": [f"peak {peak:.1f} GFLOP/s = best of the `peak` benchmark ({sep_peak:.1f}), a {m} x {m} matmul "
                       f"({same_round_peak:.1f}) and the DiT-shape GEMM ({gemm_gflops:.1f}) raced with the DiT steps",
                       f"K=N: training {full['train_gflops']:.1f} GFLOP/s = {full['train_fraction_of_peak']:.0%} of "
                       f"peak {peak:.1f}; sampling {full['sample_gflops']:.1f} GFLOP/s = "
                       f"{full['sample_fraction_of_peak']:.0%} (goal >= {GFLOPS_GOAL:.0%})",
                       f"one GEMM of the DiT's MLP shape ({train_b * n} x {w}) @ ({w} x {4 * w}): {gemm_gflops:.1f} "
                       f"GFLOP/s = {gemm_gflops / peak:.0%} of peak"]}
    if below:
        prof = {"train": torch_profile(lambda: steps.train_step(n), 2 if ctx.quick else 10),
                "sample": torch_profile(lambda: steps.sample_step(n), 2 if ctx.quick else 10)}
        try:
            prof["py_spy"] = pyspy_profile(2.0 if ctx.quick else 15.0, train_b, ctx.threads)
        except Exception as e:  # profiling is a diagnostic; never fail the benchmark on it
            prof["py_spy"] = {"error": repr(e)}
        out["figures"]["profile"] = prof
        top = ", ".join(f"{o['op']} {o['share']:.0%}" for o in prof["train"]["top_ops"][:4])
        cats = ", ".join(f"{c} {v['share']:.0%}" for c, v in list(prof["train"]["by_category"].items())[:4])
        out["summary"].append(f"below goal; training step top ops: {top}; by category: {cats}")
    return out


# ---- 4. features ----------------------------------------------------------------------------------

class _Images(torch.utils.data.Dataset):
    def __init__(self, x):
        self.x = x

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i]


def _tfid_pth(state_dict):
    """Our verified tensors as the in-memory .pth torch-fidelity's loader takes (no file is written or read)."""
    import io

    buf = io.BytesIO()
    torch.save(state_dict, buf)
    buf.seek(0)
    return buf


def feature_throughput(n: int = 64, size: int = 64, batch: int = 32, repeats: int = 2, weights=None) -> dict:
    """Inception-v3 feature extraction: vltbench's extractor vs torch-fidelity's own pipeline
    (`get_featuresdict_from_dataset`: dataset -> DataLoader -> its feature extractor, as
    `calculate_metrics` runs it) on the same in-memory uint8 images, same batch size and weights,
    interleaved, best run kept."""
    import warnings

    import numpy as np

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch-fidelity's import-time deprecation warnings
        from torch_fidelity.utils import create_feature_extractor, get_featuresdict_from_dataset

    from vltbench.evaluation.extractors import inception_weights as iw
    from vltbench.evaluation.extractors.build import get_extractor

    x = torch.randint(0, 256, (n, 3, size, size), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    ours = get_extractor("inception", weights=weights)
    tfid = create_feature_extractor("inception-v3-compat", ["2048"], cuda=False, verbose=False,
                                    feature_extractor_weights_path=_tfid_pth(iw.state_dict(ours.source)))
    feats: dict[str, np.ndarray] = {}

    def run_ours():
        feats["vltbench"] = np.concatenate([ours(x[i:i + batch])["features"] for i in range(0, n, batch)])

    def run_tfid():
        feats["torch-fidelity"] = get_featuresdict_from_dataset(_Images(x), tfid, batch, cuda=False, save_cpu_ram=True,
                                                                verbose=False)["2048"].double().numpy()

    ours(x[:2]), tfid(x[:2])  # warm-up
    t = race({"vltbench": run_ours, "torch-fidelity": run_tfid}, repeats, warmup=0)
    err = float(np.abs(feats["vltbench"] - feats["torch-fidelity"]).max() / np.abs(feats["torch-fidelity"]).max())
    return {"extractor_id": ours.id, "n": n, "size": size, "batch": batch, "repeats": repeats,
            "vltbench_images_per_s": n / t["vltbench"]["best_s"],
            "torch_fidelity_images_per_s": n / t["torch-fidelity"]["best_s"],
            "ratio": t["torch-fidelity"]["best_s"] / t["vltbench"]["best_s"],
            "ratio_median": t["torch-fidelity"]["median_s"] / t["vltbench"]["median_s"],
            "max_relative_feature_difference": err}


def bench_features(ctx: Ctx) -> dict:
    n, size, batch, repeats = (8, 32, 8, 1) if ctx.quick else (128, 32, 64, 3)
    try:
        r = feature_throughput(n, size, batch, repeats)
    except (UserError, ImportError) as e:
        return {"skipped": f"Inception weights or torch-fidelity unavailable: {e}"}
    rows = [{"pipeline": "vltbench", "images/s": r["vltbench_images_per_s"]},
            {"pipeline": "torch-fidelity", "images/s": r["torch_fidelity_images_per_s"]}]
    return {"figures": {**r, "goal": "ratio (vltbench / torch-fidelity throughput) >= 1.0", "goal_met": r["ratio"] >= 1.0},
            "rows": rows,
            "config": {"n_images": n, "image_size": size, "batch": batch, "repeats": repeats,
                       "resize": "both resize to 299 inside the network (TF1-exact bilinear)", "device": "cpu"},
            "summary": [f"ratio {r['ratio']:.2f} (goal >= 1.0); max relative feature difference "
                        f"{r['max_relative_feature_difference']:.1e}"]}


# ---- 5. latent-cache ------------------------------------------------------------------------------

def _cache_files(n_rows: int, n_tokens: int, dim: int) -> list[dict]:
    """Latent cache files in cache_dir("latents") whose z tensor has shape (n_rows, N, d)."""
    from safetensors import safe_open

    from vltbench.core.paths import cache_dir

    found = []
    for p in sorted(cache_dir("latents").glob("*.safetensors")):
        with contextlib.suppress(Exception):
            with safe_open(str(p), framework="pt") as f:
                shape = list(f.get_slice("z").get_shape())
            if shape == [n_rows, n_tokens, dim]:
                found.append({"path": portable(p), "bytes": p.stat().st_size})
    return found


def bench_latent_cache(ctx: Ctx) -> dict:
    from vltbench.core.device import to_float
    from vltbench.data import embedded, load_data

    def batch_images(ds, idx, gen):  # as vltbench.training.loops.batch_images: decode the batch, random h-flips
        x = to_float(ds.train.images(idx.numpy()))
        if ds.flip:
            x = torch.where((torch.rand(len(idx), generator=gen) < 0.5)[:, None, None, None], x.flip(-1), x)
        return x

    over = {"data.train_count": 256, "data.val_count": 64} if ctx.quick else None
    cfg = _tiny_cfg(over)
    ds = load_data(cfg.data)
    bundle, source = _merge_bundle(cfg, ds.num_classes, use_checkpoint=not ctx.quick)
    tok = bundle.tokenizer.eval()
    n, d = bundle.n_tokens, cfg.tokenizer.latent_dim
    train_b = 16 if ctx.quick else cfg.dit.batch_size
    passes = 2 if ds.flip else 1
    rows_cached = len(ds.train) * passes
    # The cache path reads standardised latents from an in-memory tensor of the cache's shape (its
    # values do not change the step time); the other path decodes images and runs the encoder.
    zs = torch.randn(rows_cached, n, d, generator=torch.Generator().manual_seed(0))
    ycache = torch.as_tensor(ds.train.labels).long().repeat(passes)
    bundle.latent_mean, bundle.latent_std = torch.zeros(d), torch.ones(d)
    steps = _DiTSteps(bundle, train_b, 1)
    n_steps, repeats = (2, 2) if ctx.quick else (6, 5)
    ks = [bundle.method.sample_length(torch.Generator().manual_seed(i)) for i in range(n_steps)]

    def from_cache():
        g = torch.Generator().manual_seed(1)
        for k in ks:
            idx = torch.randint(rows_cached, (train_b,), generator=g)
            steps.train_step(k, zs[idx], ycache[idx])

    def reencode():
        g = torch.Generator().manual_seed(1)
        for k in ks:
            idx = torch.randint(len(ds.train), (train_b,), generator=g)
            with torch.no_grad():
                z = bundle.standardise(tok.encode(batch_images(ds, idx, g)))
            steps.train_step(k, z, torch.as_tensor(ds.train.labels[idx.numpy()]).long())

    def encode_only():
        g = torch.Generator().manual_seed(1)
        for _ in ks:
            idx = torch.randint(len(ds.train), (train_b,), generator=g)
            with torch.no_grad():
                tok.encode(batch_images(ds, idx, g))

    t = race({"cache": from_cache, "re-encode": reencode, "encode only": encode_only}, repeats)
    speedup = t["re-encode"]["best_s"] / t["cache"]["best_s"]
    # Size of the full preset's cache (quick mode shrinks the data, not this figure).
    full_cfg = _tiny_cfg()
    if full_cfg.data.train_count is not None:
        n_train = full_cfg.data.train_count
    elif full_cfg.data.name == "embedded":
        n_train = embedded.TRAIN_PER_CLASS * len(embedded.CLASS_NAMES)
    else:
        n_train = len(load_data(full_cfg.data).train)
    flips = 2 if full_cfg.data.flip else 1
    z_bytes = n_train * flips * n * d * 4
    y_bytes = n_train * flips * 8
    files = _cache_files(n_train * flips, n, d)
    rows = [{"path": "latent cache", "ms/step": t["cache"]["best_s"] / n_steps * 1e3},
            {"path": "re-encode every step", "ms/step": t["re-encode"]["best_s"] / n_steps * 1e3},
            {"path": "(encoder + image batch only)", "ms/step": t["encode only"]["best_s"] / n_steps * 1e3}]
    size_line = (f"cache size (tiny preset): {z_bytes / 2**20:.1f} MiB of latents = {n_train} train x {flips} flips x "
                 f"N={n} x d={d} x 4 bytes (+ {y_bytes / 2**10:.0f} KiB labels)")
    if files:
        size_line += f"; measured file {files[0]['bytes'] / 2**20:.1f} MiB"
    return {"figures": {"speedup": speedup, "speedup_median": t["re-encode"]["median_s"] / t["cache"]["median_s"],
                        "cache_ms_per_step": t["cache"]["best_s"] / n_steps * 1e3,
                        "reencode_ms_per_step": t["re-encode"]["best_s"] / n_steps * 1e3,
                        "encode_ms_per_step": t["encode only"]["best_s"] / n_steps * 1e3,
                        "cache_bytes_formula": z_bytes, "label_bytes_formula": y_bytes,
                        "cache_formula": f"{n_train} x {flips} x {n} x {d} x 4 bytes (float32 latents)",
                        "cache_files_measured": files},
            "rows": rows,
            "config": {"preset": "tiny", "data_override": over, "train_rows_in_bench": rows_cached,
                       "train_batch": train_b, "steps_per_round": n_steps, "repeats": repeats, "lengths": ks,
                       "views": source, "device": "cpu",
                       "step": "DiT training step of vltbench.training.loops (flow_loss + backward + clip + AdamW + EMA); "
                               "re-encode adds batch_images (decode + flips) and tokenizer.encode under no_grad"},
            "summary": [f"latent cache speed-up {speedup:.2f}x over re-encoding every step", size_line]}


# ---- 6. memory ------------------------------------------------------------------------------------

def _tiny_test_yaml() -> Path:
    """This checkout's test configuration (the benchmarks' small setup when no trained checkpoint is used)."""
    if not TINY_TEST.is_file():
        raise UserError(f"{TINY_TEST} not found: run benchmarks/bench.py from a full checkout of vltbench")
    return TINY_TEST


_RSS_LAUNCHER = ("import json, resource, subprocess, sys; rc = subprocess.call(sys.argv[2:]); "
                 "ru = resource.getrusage(resource.RUSAGE_CHILDREN); "
                 "open(sys.argv[1], 'w').write(json.dumps({'rc': rc, 'maxrss': ru.ru_maxrss}))")


def run_measured(cmd: list[str], env: dict, log: Path, timeout: float = 3600) -> dict:
    """Run `cmd` and return its peak RSS: a small launcher process runs it and reports
    getrusage(RUSAGE_CHILDREN).ru_maxrss, i.e. of that one command. (Measured from this process
    directly, the number would be wrong: a forked child's high-water RSS starts at its parent's, so
    every command started from a large benchmark process would read as at least that process.)"""
    t0 = time.perf_counter()
    out = log.with_suffix(".rusage.json")
    with open(log, "wb") as f:
        p = subprocess.run([sys.executable, "-c", _RSS_LAUNCHER, str(out), *cmd], stdout=f, stderr=subprocess.STDOUT,
                           env=env, timeout=timeout)
    ru = json.loads(out.read_text()) if out.is_file() else {"rc": p.returncode, "maxrss": 0}
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    rc = ru["rc"] or p.returncode
    return {"rc": rc, "maxrss_bytes": ru["maxrss"] * scale, "wall_s": time.perf_counter() - t0,
            "log_tail": log.read_text(errors="replace")[-600:] if rc else ""}


def bench_memory(ctx: Ctx) -> dict:
    with tempfile.TemporaryDirectory(prefix="vltbench-bench-mem-") as tmp:
        tmp = Path(tmp)
        env = {**os.environ, "OMP_NUM_THREADS": str(ctx.threads), "MKL_NUM_THREADS": str(ctx.threads)}
        cfg_real = _tiny_cfg()
        real_ckpt = None
        if not ctx.quick:
            with contextlib.suppress(Exception):
                from vltbench.training.checkpoints import find_checkpoint

                real_ckpt = find_checkpoint(cfg_real, "merge", _embedded_classes())
        if real_ckpt is not None:
            setup, counts = "tiny preset (trained checkpoint, inception features)", [250, 500, 1000]
            cfg_args: list[str] = []
            image_px = cfg_real.data.image_size
        else:
            setup = "tests/tiny_test.yaml (randproj features), own cache folder"
            counts = [64, 512, 2048] if ctx.quick else [256, 1024, 4096]
            cfg_args = ["--config", str(_tiny_test_yaml())]
            env["VLTBENCH_CACHE"] = str(tmp / "cache")
            image_px = 32
        base = [sys.executable, "-m", "vltbench"]
        common = ["--method", "merge", *cfg_args, "--quiet"]
        if real_ckpt is None:  # train the test config's checkpoint first (seconds)
            r = run_measured(base + ["train", *common], env, tmp / "train.log")
            if r["rc"]:
                return {"error": f"vltbench train failed: {r['log_tail']}"}
        # warm-up: reference statistics are computed once and cached; every measured run then reads them
        warm_n = 100 if real_ckpt is not None else counts[0]
        r = run_measured(base + ["eval", *common, "--lengths", "8", "--n-samples", str(warm_n),
                                 "--results", str(tmp / "warm")], env, tmp / "warm.log")
        if r["rc"]:
            return {"error": f"vltbench eval failed: {r['log_tail']}"}
        floor = run_measured([sys.executable, "-c", "import torch, vltbench.evaluation.sweep, vltbench.evaluation.extractors.build, "
                              "vltbench.evaluation.metrics.fid, torch_fidelity"], env, tmp / "import.log")
        rows, per = [], {}
        for n in counts:
            r = run_measured(base + ["eval", *common, "--lengths", "8", "--n-samples", str(n),
                                     "--results", str(tmp / f"r{n}")], env, tmp / f"eval{n}.log")
            if r["rc"]:
                return {"error": f"vltbench eval --n-samples {n} failed: {r['log_tail']}"}
            per[n] = r
            rows.append({"n_samples": n, "peak RSS MiB": r["maxrss_bytes"] / 2**20, "wall_s": r["wall_s"]})
        rows.append({"n_samples": "import floor", "peak RSS MiB": floor["maxrss_bytes"] / 2**20, "wall_s": floor["wall_s"]})
    ns = list(per)
    rss = [per[n]["maxrss_bytes"] for n in ns]
    mean_n, mean_r = sum(ns) / len(ns), sum(rss) / len(rss)
    slope = sum((a - mean_n) * (b - mean_r) for a, b in zip(ns, rss)) / sum((a - mean_n) ** 2 for a in ns)
    img_u8 = 3 * image_px * image_px
    grow = rss[-1] / rss[0]
    above = [r - floor["maxrss_bytes"] for r in rss]
    return {"figures": {"setup": setup, "sample_counts": ns, "peak_rss_bytes": dict(zip(map(str, ns), rss)),
                        "import_floor_rss_bytes": floor["maxrss_bytes"],
                        "peak_rss_above_import_floor_bytes": dict(zip(map(str, ns), above)),
                        "rss_growth_ratio": grow,
                        "rss_above_floor_growth_ratio": above[-1] / above[0] if above[0] > 0 else None,
                        "sample_count_ratio": ns[-1] / ns[0],
                        "marginal_bytes_per_sample": slope,
                        "reference_bytes_per_sample": {"uint8_image": img_u8, "float32_image": 4 * img_u8,
                                                       "float32_image_at_299px": 4 * 3 * 299 * 299},
                        "goal": "peak RSS does not grow in proportion to the sample count (samples stream to "
                                "features); marginal bytes/sample far below an image"},
            "rows": rows,
            "config": {"command": "python -m vltbench eval --method merge --lengths 8 --n-samples N "
                                  f"{' '.join(cfg_args)} --quiet".replace(str(tmp), "<tmp>"),
                       "setup": setup, "warm_up": f"one eval at n={warm_n} first (reference statistics cached)",
                       "rss": "getrusage(RUSAGE_CHILDREN).ru_maxrss in a small launcher process that runs one eval "
                              "(one fresh process per count)"},
            "notes": ["features (n x dim float32) are kept for KID / precision-recall, and precision-recall's k-NN "
                      "radii use a (min(n, 10000) x n) distance block (torch-fidelity): both grow with n by design; "
                      "images are never kept"],
            "summary": [f"peak RSS {rss[0] / 2**20:.0f} -> {rss[-1] / 2**20:.0f} MiB ({grow:.2f}x) for {ns[-1] / ns[0]:.0f}x "
                        f"samples; marginal {slope / 1024:.1f} KiB/sample (a uint8 image is {img_u8 / 1024:.1f} KiB); "
                        f"import floor {floor['maxrss_bytes'] / 2**20:.0f} MiB, above it "
                        f"{above[0] / 2**20:.0f} -> {above[-1] / 2**20:.0f} MiB"]}


# ---- 7. overhead ----------------------------------------------------------------------------------

class _ComputeTimer:
    """Adds up model-compute time inside a cell by wrapping, for the duration of a `with`: the DiT
    sampler (vltbench.models.flow.sample as generate calls it), Tokenizer.encode / decode and feature
    extraction (Extractor.__call__). Calls made inside stage_flops (fvcore traces) and alignment
    diagnostics are harness work and are timed as such, not as compute. Nested calls count once."""

    def __init__(self, device=torch.device("cpu")):
        self.device = device
        self.compute: dict[str, float] = {"sampling": 0.0, "decoding": 0.0, "encoding": 0.0, "features": 0.0}
        self.harness: dict[str, float] = {"flops": 0.0, "alignment": 0.0, "alignment_input_encoding": 0.0}
        self.calls: dict[str, int] = {}
        self._depth = 0
        self._patches: list[tuple[Any, str, Any]] = []

    def _wrap(self, fn, label: str, kind: str):
        timer = self

        def wrapped(*a, **kw):
            if timer._depth:
                return fn(*a, **kw)
            where = (label, kind)
            if label == "encoding" and sys._getframe(1).f_code.co_name != "reconstruct":
                where = ("alignment_input_encoding", "harness")  # the sweep encodes val images for alignment
            timer._depth += 1
            _sync(timer.device)
            t0 = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                _sync(timer.device)
                getattr(timer, where[1])[where[0]] += time.perf_counter() - t0
                timer.calls[where[0]] = timer.calls.get(where[0], 0) + 1
                timer._depth -= 1

        return wrapped

    def _patch(self, obj, attr: str, label: str, kind: str):
        if hasattr(obj, attr):
            self._patches.append((obj, attr, obj.__dict__.get(attr, getattr(obj, attr))))
            setattr(obj, attr, self._wrap(getattr(obj, attr), label, kind))

    def __enter__(self):
        import importlib

        from vltbench.evaluation import generate, sweep
        from vltbench.evaluation.extractors.build import Extractor
        from vltbench.evaluation.metrics import alignment, flops
        from vltbench.models import flow
        from vltbench.models.tokenizer import Tokenizer

        importlib.import_module("vltbench.evaluation.extractors.randproj")
        self._patch(generate, "sample", "sampling", "compute")  # however generate reaches it
        self._patch(flow, "sample", "sampling", "compute")
        self._patch(Tokenizer, "decode", "decoding", "compute")
        self._patch(Tokenizer, "encode", "encoding", "compute")
        self._patch(Extractor, "__call__", "features", "compute")
        for mod in (flops, sweep):
            self._patch(mod, "stage_flops", "flops", "harness")
        for mod in (alignment, sweep):
            self._patch(mod, "alignment_metrics", "alignment", "harness")
        return self

    def __exit__(self, *exc):
        for obj, attr, orig in reversed(self._patches):
            setattr(obj, attr, orig)
        self._patches.clear()


@contextlib.contextmanager
def _env(**kv):
    old = {k: os.environ.get(k) for k in kv}
    os.environ.update({k: v for k, v in kv.items() if v is not None})
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def bench_overhead(ctx: Ctx) -> dict:
    from vltbench.core import progress
    from vltbench.core.config import load_config
    from vltbench.evaluation.sweep import SweepSpec, run_sweep

    real_ckpt = None
    if not ctx.quick:
        with contextlib.suppress(Exception):
            from vltbench.training.checkpoints import find_checkpoint

            real_ckpt = find_checkpoint(_tiny_cfg(), "merge", _embedded_classes())
    import warnings

    was_quiet = progress.QUIET
    progress.set_quiet(True)
    try:
        with tempfile.TemporaryDirectory(prefix="vltbench-bench-ovh-") as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # small-sample FID warnings of the test config
            tmp = Path(tmp)
            if real_ckpt is not None:
                setup = "tiny preset, trained checkpoint, inception features"
                cfg = load_config("tiny")
                warm_n = 100
                cache = None
            else:
                setup = "tests/tiny_test.yaml (randproj features), own cache folder"
                n = 64 if ctx.quick else 1000
                cfg = load_config("tiny", _tiny_test_yaml(), {"eval.n_samples": n})
                warm_n = 32
                cache = str(tmp / "cache")
            k = 8
            with _env(VLTBENCH_CACHE=cache):
                # warm-up: trains the test config's checkpoint if needed, computes + caches the reference stats
                warm = cfg.model_copy(deep=True)
                warm.eval.n_samples = warm_n
                warm.eval.kid_subset_size = min(warm.eval.kid_subset_size, warm_n)
                run_sweep(SweepSpec(warm, ["merge"], [k], [0], tmp / "warm"))
                timer = _ComputeTimer()
                t0 = time.perf_counter()
                with timer:
                    outcome = run_sweep(SweepSpec(cfg, ["merge"], [k], [0], tmp / "measured", train=False))
                wall = time.perf_counter() - t0
                record = json.loads(outcome.written[0].read_text())
    finally:
        progress.set_quiet(was_quiet)
    timing = record["timing"]
    compute = sum(timer.compute.values())
    cell = timing["total_s"]
    cell_overhead = (cell - compute) / cell
    run_overhead = (wall - compute) / wall
    metric_math = sum(timing.get(x, 0.0) for x in ("guided_s", "unguided_s", "recon_s")) - compute
    align_enc = timer.harness["alignment_input_encoding"]
    rows = [{"part": f"model compute: {name}", "s": s, "% of cell": 100 * s / cell} for name, s in timer.compute.items()]
    rows += [{"part": "harness: FLOP counting (fvcore)", "s": timing.get("flops_s", 0.0),
              "% of cell": 100 * timing.get("flops_s", 0.0) / cell},
             {"part": "harness: alignment diagnostics", "s": timing.get("alignment_s", 0.0),
              "% of cell": 100 * timing.get("alignment_s", 0.0) / cell},
             {"part": "harness: encoding val images for alignment", "s": align_enc, "% of cell": 100 * align_enc / cell},
             {"part": "harness: metric math + streaming (FID/KID/PR, batching)", "s": metric_math,
              "% of cell": 100 * metric_math / cell},
             {"part": "cell total (record timing.total_s)", "s": cell, "% of cell": 100.0},
             {"part": "run wall (load, cell, record + grid write)", "s": wall, "% of cell": 100 * wall / cell}]
    return {"figures": {"cell_total_s": cell, "run_wall_s": wall, "compute_s": compute,
                        "compute_breakdown_s": timer.compute, "compute_calls": timer.calls,
                        "harness_breakdown_s": {"flops_s": timing.get("flops_s"), "alignment_s": timing.get("alignment_s"),
                                                "alignment_input_encoding_s": align_enc,
                                                "metric_math_s": metric_math, "outside_cell_s": wall - cell},
                        "record_timing": timing, "cell_overhead": cell_overhead, "run_overhead": run_overhead,
                        "goal": f"overhead = (wall - model compute) / wall <= {OVERHEAD_GOAL:.0%}",
                        "goal_met": run_overhead <= OVERHEAD_GOAL},
            "rows": rows,
            "config": {"setup": setup, "method": "merge", "length": k, "n_samples": cfg.eval.n_samples,
                       "sampler_steps": cfg.sampler.steps, "extractor": resolve_extractor(cfg),
                       "in_process": "vltbench.evaluation.sweep.run_sweep after a warm-up run (checkpoint + reference stats "
                                     "cached); python start-up and imports are not included",
                       "compute": "DiT sampling (vltbench.models.flow.sample), tokenizer decode + encode (reconstructions), "
                                  "feature extraction; FLOP counting, alignment metrics and encoding their val images "
                                  "count as harness"},
            "summary": [f"overhead {run_overhead:.1%} of the run wall time ({cell_overhead:.1%} of the cell's "
                        f"total_s); goal <= {OVERHEAD_GOAL:.0%}"]}


# ---- 8. gpu ---------------------------------------------------------------------------------------

def dit_step_throughput(device, depth: int, width: int, heads: int, n_tokens: int, dim: int, num_classes: int,
                        batch: int, lengths: list[int], budget_s: float, compile_full: bool = False,
                        dtype=torch.bfloat16, peak_tflops: float = GPU_PEAK_TFLOPS) -> dict:
    """Training step (flow_loss under autocast, backward, clip, AdamW, EMA) and CFG sampling step
    (doubled batch, inference mode, autocast) of a DiT at the given lengths, merge views with
    proportional attention below N. Time-boxed: lengths left when `budget_s` runs out are skipped
    (and listed in `errors`); torch.compile (full length only) runs when enough budget is left."""
    from vltbench.core import registry
    from vltbench.evaluation.metrics.flops import dit_forward_count
    from vltbench.models.dit import DiT
    from vltbench.models.flow import EMA, flow_loss
    from vltbench.training.loops import adamw, clip_grads

    start = time.perf_counter()
    device = torch.device(device)

    def left() -> float:
        return budget_s - (time.perf_counter() - start)

    torch.manual_seed(0)
    dit = DiT(n_tokens, dim, width, depth, heads, num_classes).to(device).train()
    ema = EMA(dit, 0.9999)
    opt = adamw(dit.parameters(), lr=1e-4, weight_decay=0.0)
    cls = registry.get("merge")
    method = cls(n_tokens, dim, cls.Options(embed_dim=64), [n_tokens], [1.0])
    method.freeze()
    z = torch.randn(batch, n_tokens, dim, device=device)
    y = torch.randint(0, num_classes, (batch,), device=device)
    xs = torch.randn(2 * batch, n_tokens, dim, device=device)
    ys = torch.cat([y, torch.full_like(y, num_classes)])
    ts = torch.full((2 * batch,), 0.5, device=device)
    out: dict[str, Any] = {"per_k": {}, "errors": []}

    def timed_loop(fn, min_steps: int, max_steps: int, seconds: float) -> dict:
        fn()
        fn()  # warm-up (allocator, kernel selection)
        _sync(device)
        times, t_all = [], time.perf_counter()
        while len(times) < max_steps and (len(times) < min_steps or time.perf_counter() - t_all < seconds):
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times.append(time.perf_counter() - t0)
        return {"median_s": statistics.median(times), "best_s": min(times), "steps": len(times)}

    def steps_for(k: int):
        view = method.view(k).to(device)

        def train_step(model=dit):
            with torch.autocast(device.type, dtype=dtype):
                loss = flow_loss(model, z, y, view, None, 0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            clip_grads(dit.parameters(), 1.0)
            opt.step()
            ema.update(dit)

        def sample_step(model=dit):
            with torch.inference_mode(), torch.autocast(device.type, dtype=dtype):
                model(xs[:, :k], ts, ys, doubled(view))

        return view, train_step, sample_step

    def rates(fma: float, timing: dict, factor: int, images: int) -> dict:
        flops = FMA_FLOPS * factor * fma * images
        return {"steps_per_s": 1 / timing["median_s"], "images_per_s": batch / timing["median_s"],
                "tflops": flops / timing["median_s"] / 1e12,
                "mfu": flops / timing["median_s"] / (peak_tflops * 1e12), "timing": timing}

    fmas: dict[int, float] = {}
    for k in lengths:
        if left() < 20:
            out["errors"].append(f"K={k}: skipped, time budget spent")
            continue
        try:
            view, train_step, sample_step = steps_for(k)
            fmas[k] = dit_forward_count(dit, view).total
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            seconds = min(10.0, max(1.0, left() / (4 * len(lengths))))
            tr = rates(fmas[k], timed_loop(train_step, 3, 200, seconds), TRAIN_FACTOR, batch)
            sa = rates(fmas[k], timed_loop(sample_step, 3, 200, seconds), 1, 2 * batch)
            row = {"forward_gflops_per_image_fvcore": fmas[k] / 1e9,
                   **{f"train_{a}": b for a, b in tr.items()}, **{f"sample_{a}": b for a, b in sa.items()}}
            if device.type == "cuda":
                row["max_memory_allocated_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
            out["per_k"][k] = row
        except Exception as e:  # keep the other lengths' figures
            out["errors"].append(f"K={k}: {type(e).__name__}: {str(e)[:300]}")
            continue
        if compile_full and k == n_tokens and left() > 150:
            try:
                cdit = torch.compile(dit)
                t0 = time.perf_counter()
                train_step(cdit)
                _sync(device)
                compile_s = time.perf_counter() - t0
                ctr = timed_loop(lambda: train_step(cdit), 3, 200, min(10.0, max(1.0, left() / 4)))
                out["compiled_full_length"] = {"compile_s": compile_s,
                                               **{f"train_{a}": b for a, b in rates(fmas[k], ctr, TRAIN_FACTOR, batch).items()}}
            except Exception as e:  # torch.compile is optional
                out["errors"].append(f"torch.compile: {type(e).__name__}: {str(e)[:300]}")
    out["elapsed_s"] = time.perf_counter() - start
    return out


def bench_gpu(ctx: Ctx, device: str = "cuda", size: str = "B", n: int = 256, d: int = 32,
              batch: int | None = None) -> dict:
    """DiT-B (N=256, d=32) training / sampling step in bf16 autocast on CUDA; skipped without CUDA.
    (device/size/n/d/batch exist to exercise the code path on CPU with small sizes.)"""
    if device == "cuda" and not torch.cuda.is_available():
        return {"skipped": "no CUDA device (torch.cuda.is_available() is False)"}
    from vltbench.core.config import DIT_SIZES

    depth, width, heads = DIT_SIZES[size] if size in DIT_SIZES else (2, 64, 2)
    classes = 1000
    batch = batch or (64 if ctx.quick else 256)
    budget = 90 if ctx.quick else 240
    ks = [n] if ctx.quick else [n, n // 2, n // 4, n // 8]
    r = dit_step_throughput(device, depth, width, heads, n, d, classes, batch, ks, budget,
                            compile_full=not ctx.quick and device == "cuda")
    rows = [{"K": k, "train steps/s": v["train_steps_per_s"], "train images/s": v["train_images_per_s"],
             "train MFU": v["train_mfu"], "sample images/s": v["sample_images_per_s"], "sample MFU": v["sample_mfu"],
             "GiB": v.get("max_memory_allocated_gib")} for k, v in r["per_k"].items()]
    summary = []
    if n in r["per_k"]:
        f = r["per_k"][n]
        summary.append(f"DiT-{size} K=N={n} bf16: {f['train_steps_per_s']:.2f} steps/s, {f['train_images_per_s']:.0f} "
                       f"images/s, MFU {f['train_mfu']:.1%} of {GPU_PEAK_TFLOPS:.0f} TFLOP/s")
    if "compiled_full_length" in r:
        c = r["compiled_full_length"]
        summary.append(f"torch.compile: {c['train_steps_per_s']:.2f} steps/s, MFU {c['train_mfu']:.1%} "
                       f"(compile {c['compile_s']:.0f} s)")
    summary += [f"error: {e}" for e in r["errors"]]
    name = torch.cuda.get_device_name(0) if device == "cuda" else device
    return {"figures": {**r, "peak_tflops": GPU_PEAK_TFLOPS,
                        "convention": f"MFU = 2 x fvcore FLOPs (2 FLOPs per FMA, the convention of the "
                                      f"{GPU_PEAK_TFLOPS:.0f} TFLOP/s bf16 dense peak) x 3 (training) or x 1 on a "
                                      "doubled batch (CFG sampling step) x batch / median step time / peak; "
                                      "elementwise ops not counted"},
            "rows": rows,
            "config": {"dit": f"DiT-{size}", "depth": depth, "width": width, "heads": heads, "n_tokens": n,
                       "latent_dim": d, "num_classes": classes, "batch": batch, "lengths": ks, "autocast": "bfloat16",
                       "optimizer": "AdamW(fused)", "budget_s": budget,
                       "device": name, "train_step": "flow_loss (autocast) + backward + clip + AdamW + EMA",
                       "views": "merge, untrained embedding frozen (proportional attention below N)"},
            "summary": summary}


# ---- registry + entry -----------------------------------------------------------------------------

BENCHMARKS: dict[str, Bench] = {
    "peak": Bench(bench_peak, "fp32 matmul peak (torch.mm)"),
    "dit-scaling": Bench(bench_dit_scaling, "DiT step time vs FLOPs across K (tiny preset)"),
    "dit-gflops": Bench(bench_dit_gflops, "achieved DiT GFLOP/s vs the matmul peak (tiny preset)"),
    "features": Bench(bench_features, "Inception feature throughput vs torch-fidelity"),
    "latent-cache": Bench(bench_latent_cache, "DiT training from the latent cache vs re-encoding"),
    "memory": Bench(bench_memory, "peak RSS of an evaluation cell vs sample count"),
    "overhead": Bench(bench_overhead, "harness overhead of one evaluation cell"),
    "gpu": Bench(bench_gpu, "DiT-B bf16 training step on CUDA"),
}


def run_bench(names: list[str] | None, out_dir: Path, quick: bool = False, threads: int | None = None) -> dict:
    """Run the named benchmarks (default: all, in BENCHMARKS order), print a table for each and write
    `out_dir/<name>.json`. Returns {name: result}. A benchmark that fails is recorded with its error
    (and traceback) and the others still run; `gpu` is recorded as skipped without CUDA."""
    names = list(BENCHMARKS) if not names else list(dict.fromkeys(names))
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise UserError(f"unknown benchmark {', '.join(map(repr, unknown))}; choose from {', '.join(BENCHMARKS)}")
    if threads is not None and threads < 1:
        raise UserError(f"threads must be a positive integer, got {threads}")
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create the benchmark output folder {out_dir} ({e}); pass a writable folder") from None
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    ctx = Ctx(quick=quick, threads=torch.get_num_threads(), out_dir=out_dir)
    call = f"run_bench({names!r}, {portable(out_dir)!r}, quick={quick}, threads={threads})"
    try:
        for name in names:
            load0 = _machine().get("load_avg_1m")
            t0 = time.perf_counter()
            try:
                result = BENCHMARKS[name].fn(ctx)
            except Exception as e:
                result = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
            result = {"benchmark": name, "title": BENCHMARKS[name].title, **result,
                      "elapsed_s": time.perf_counter() - t0, "quick": quick,
                      "command": _command_line(),
                      "call": call,
                      "torch": torch.__version__, "threads": ctx.threads,
                      "machine": {**_machine(), "load_avg_1m_at_start": load0},
                      "provenance": _provenance(),
                      "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
            result.setdefault("figures", {})
            result.setdefault("config", {})
            ctx.results[name] = result
            from vltbench.core.atomic import atomic_write_text

            atomic_write_text(out_dir / f"{name}.json", json.dumps(portable_strings(_jsonable(result)), indent=2) + "\n")
            _print_table(name, result)
    finally:
        torch.set_num_threads(old_threads)
    return {n: ctx.results[n] for n in names}


def main(argv: list[str] | None = None) -> None:
    """`python benchmarks/bench.py [NAMES...] [--out DIR] [--quick] [--threads N]`."""
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help=f"benchmarks to run (default all): {', '.join(BENCHMARKS)}")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "bench",
                    help="folder for <name>.json (default: results/bench of this checkout)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run, numbers not meaningful")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (and OMP_NUM_THREADS of subprocesses)")
    a = ap.parse_args(argv)
    try:
        run_bench(a.names or None, a.out, a.quick, a.threads)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
