"""GPU check of the paper-scale models, one script, about 5-8 minutes on one H200.

    python benchmarks/gpu_check.py [--out results/bench/gpu] [--peak-tflops 989]
    python benchmarks/gpu_check.py --dry-run     # CPU, tiny sizes, seconds (what the test suite runs)

Sections (each one JSON under --out, and all of them in gpu_check.json):
1. train: bf16-autocast training steps (AdamW, flow-matching loss, merged views) of the LightningDiT
   generator, sizes B and XL, at K = 32, 64, 128, 256 of N = 256: step time, images/s, achieved
   TFLOP/s and MFU = 3 x forward FLOPs (fvcore count, x2 for multiply + add) x images/s / peak;
2. sample: the 25-point Euler sampler with per-position CFG at K = 32 and 256, images/s;
3. inception: Inception-v3 pool3 features of 256x256 images on the device, images/s;
4. sweep: `torchrun --nproc_per_node 1 -m vltbench run` (merge, K = 4, 8) on a tiny folder dataset it
   writes, the real CLI end to end on one GPU (trains the tiny test config, evaluates, writes records);
5. flops: vltbench's GFLOPs of the imagenet256(-xl) generators per K beside the official
   LightningDiT count written out from its layers (movinghoon/lgm LightningDiT/models/lightningdit_ours.py).
--dry-run shrinks every model and count so the script runs on a CPU in well under a minute.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

H200_BF16_DENSE_TFLOPS = 989.0  # NVIDIA H100/H200 SXM dense bf16 tensor-core peak


def official_lightning_gflops(k: int, n: int, width: int, depth: int, in_dim: int = 32,
                              freq_dim: int = 256, mlp_ratio: float = 4.0, merged_pos: bool = True) -> float:
    """The official LightningDiT (1D, force_one_d_seq) forward at K tokens, counted layer by layer as
    fvcore does (one multiply-add = one FLOP): x_embedder, (merged) positional embedding, timestep MLP,
    per block qkv + proj + attention (q k^T and attn v) + SwiGLU (w12, w3) + adaLN, final adaLN + linear."""
    h = int(2 / 3 * width * mlp_ratio)  # SwiGLUFFN hidden, lightningdit_ours.py Block
    per_token_block = 3 * width ** 2 + width ** 2 + 2 * k * width + 2 * width * h + h * width
    blocks = depth * (k * per_token_block + 6 * width ** 2)
    embed = k * in_dim * width + freq_dim * width + width ** 2 + (n * k * width if merged_pos else 0)
    final = 2 * width ** 2 + k * width * in_dim
    return (blocks + embed + final) / 1e9


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _timeit(fn, device, warmup: int, iters: int) -> float:
    for _ in range(warmup):
        fn()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    _sync(device)
    return (time.perf_counter() - t0) / iters


def _merge_views(n: int, lengths, seed: int = 0):
    """Merge views for K in lengths from a random global table (data-independent, as after training)."""
    from vltbench.models.lengths import view_from_labels
    g = torch.Generator().manual_seed(seed)
    views = {}
    for k in lengths:
        labels = torch.cat([torch.arange(k), torch.randint(k, (n - k,), generator=g)])
        views[k] = view_from_labels(labels[torch.randperm(n, generator=g)], k)
    return views


def _sizes(dry: bool):
    from vltbench.core.config import DIT_SIZES
    if dry:
        return {"B": (2, 64, 4), "XL": (2, 96, 4)}, 32, 8, [4, 8, 16, 32]
    return {"B": DIT_SIZES["B"], "XL": DIT_SIZES["XL"]}, 256, 32, [32, 64, 128, 256]


def check_train(device, dry: bool, peak_tflops: float | None, batch: int, steps: int) -> dict:
    from vltbench.evaluation.metrics.flops import dit_forward_count
    from vltbench.models.dit import DiT
    from vltbench.models.flow import flow_loss
    from vltbench.training.loops import adamw

    sizes, n, d, lengths = _sizes(dry)
    views = _merge_views(n, lengths)
    rows = []
    for name, (depth, width, heads) in sizes.items():
        torch.manual_seed(0)
        dit = DiT(n, d, width, depth, heads, num_classes=1000, arch="lightning")
        gflops = {k: dit_forward_count(dit, views[k]).gflops for k in lengths}  # on CPU, before moving
        dit = dit.to(device).train()
        opt = adamw(dit.parameters(), 2e-4, 0.0, (0.9, 0.95))
        z = torch.randn(batch, n, d, device=device)
        y = torch.randint(1000, (batch,), device=device)
        gen = torch.Generator(device).manual_seed(0)
        for k in lengths:
            view = views[k].to(device)

            def step():
                with torch.autocast(device.type, dtype=torch.bfloat16):
                    loss = flow_loss(dit, z, y, view, gen, label_dropout=0.1)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            sec = _timeit(step, device, warmup=2, iters=steps)
            ips = batch / sec
            tflops = 2 * 3 * gflops[k] * 1e9 * ips / 1e12  # fwd + 2x fwd backward; FMA = 2 FLOPs
            rows.append({"size": name, "depth": depth, "width": width, "k": k, "batch": batch,
                         "step_s": sec, "images_per_s": ips, "fwd_gflops_fvcore": gflops[k],
                         "achieved_tflops": tflops, "mfu": tflops / peak_tflops if peak_tflops else None,
                         "peak_mem_gib": torch.cuda.max_memory_allocated() / 2 ** 30 if device.type == "cuda" else None})
            print(f"train {name} K={k}: {sec * 1e3:.1f} ms/step, {ips:.0f} img/s, {tflops:.1f} TFLOP/s"
                  + (f", MFU {tflops / peak_tflops:.1%}" if peak_tflops else ""), flush=True)
        del dit, opt
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return {"rows": rows, "peak_tflops": peak_tflops, "dtype": "bfloat16 autocast"}


def check_sample(device, dry: bool, batch: int) -> dict:
    from vltbench.models.dit import DiT
    from vltbench.models.flow import sample

    sizes, n, d, lengths = _sizes(dry)
    depth, width, heads = sizes["XL"]
    views = _merge_views(n, [lengths[0], lengths[-1]])
    dit = DiT(n, d, width, depth, heads, num_classes=1000, arch="lightning").to(device).eval()
    rows = []
    for k, view in views.items():
        view = view.to(device)
        y = torch.randint(1000, (batch,), device=device)
        noise = torch.randn(batch, n, d, device=device)

        def run():
            with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16):
                return sample(dit, view, y, noise, steps=25, shift=0.3, cfg_scale=1.5, cfg_interval=(0.15, 1.0))

        out = run()
        sec = _timeit(run, device, warmup=0, iters=1)
        rows.append({"size": "XL", "k": k, "batch": batch, "seconds": sec, "images_per_s": batch / sec,
                     "finite": bool(torch.isfinite(out).all())})
        print(f"sample XL K={k}: {batch / sec:.1f} img/s", flush=True)
    return {"rows": rows, "steps": 25, "cfg_scale": 1.5}


def check_inception(device, dry: bool, batch: int) -> dict:
    from vltbench.evaluation.extractors.build import get_extractor

    name = "randproj" if dry else "inception"
    ext = get_extractor(name, device=str(device))
    size = 32 if dry else 256
    imgs = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8)
    ext(imgs)  # warm-up
    sec = _timeit(lambda: ext(imgs), device, warmup=0, iters=2)
    feats = ext(imgs)
    key = next(iter(feats))
    print(f"{name} features on {device}: {batch / sec:.0f} img/s", flush=True)
    return {"extractor": name, "id": ext.id, "device": str(device), "batch": batch, "images_per_s": batch / sec,
            "feature_dim": int(feats[key].shape[-1]), "finite": bool(np.isfinite(feats[key]).all())}


def _folder_dataset(root: Path, classes: int = 3, per_class: int = 100, size: int = 32) -> None:
    """Class folders of noisy flat-colour PNGs: enough for tests/tiny_test.yaml (260 train, 130 val)."""
    from PIL import Image
    rng = np.random.default_rng(0)
    for split, count in (("train", per_class), ("val", per_class // 2)):
        for c in range(classes):
            d = root / split / f"class{c}"
            d.mkdir(parents=True, exist_ok=True)
            base = rng.integers(0, 256, (1, 1, 3))
            for i in range(count):
                img = np.clip(base + rng.normal(0, 40, (size, size, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(img).save(d / f"{i}.png")


def check_sweep(device, dry: bool, work: Path, timeout: int) -> dict:
    data = work / "folder"
    _folder_dataset(data)
    results = work / "runs"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1", "-m", "vltbench",
           "run", "--method", "merge", "--lengths", "4,8", "--config", str(ROOT / "tests" / "tiny_test.yaml"),
           "--set", "data.name=folder",
           "--data-root", str(data), "--results", str(results), "--device", device.type,
           "--extractor", "randproj" if dry else "inception", "--quiet"]
    env = {**os.environ, "VLTBENCH_CACHE": str(work / "cache"), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=str(work))
    secs = time.perf_counter() - t0
    records = sorted(str(p.relative_to(results)) for p in results.rglob("*.json")) if results.is_dir() else []
    print(f"sweep (torchrun, 1 process, {device.type}): rc {r.returncode}, {len(records)} records, {secs:.0f} s", flush=True)
    if r.returncode:
        print(r.stderr[-3000:], file=sys.stderr)
    return {"command": " ".join(cmd[1:]), "returncode": r.returncode, "seconds": secs, "records": records,
            "stderr_tail": r.stderr[-2000:] if r.returncode else ""}


def check_flops(dry: bool) -> dict:
    import vltbench

    lengths = [8, 16, 32] if dry else [32, 64, 128, 256]
    rows = []
    from vltbench.core.config import load_config
    small = None
    if dry:  # the presets' layers at tiny widths: checks the count against the formula in seconds
        small = Path(os.environ.get("TMPDIR", "/tmp")) / f"gpu_check_small_{os.getpid()}.yaml"
        small.write_text("dit: {size: null, depth: 2, width: 64, heads: 4}\n"
                         "tokenizer: {width: 32, heads: 2, enc_depth: 1, dec_depth: 1, n_tokens: 32}\n"
                         "lengths: {train: [8, 16, 32], probs: [0.4, 0.3, 0.3], dit_cycle: [16, 8]}\n"
                         "data: {image_size: 64}\n")
    for preset in ("imagenet256", "imagenet256-xl"):
        cfg = load_config(preset, small)
        df = vltbench.flops("merge", lengths, preset=preset, config=small)
        for _, r in df.iterrows():
            k = int(r["length"])
            off = official_lightning_gflops(k, cfg.tokenizer.n_tokens, cfg.dit.width, cfg.dit.depth, cfg.tokenizer.latent_dim)
            rows.append({"preset": preset, "arch": cfg.dit.arch, "k": k, "dit_forward_gflops": float(r["dit_forward_gflops"]),
                         "official_lightning_gflops": off, "ratio": float(r["dit_forward_gflops"]) / off,
                         "params_dit": int(r["params_dit"])})
            print(f"flops {preset} K={k}: ours {r['dit_forward_gflops']:.4g} official {off:.4g} GFLOPs", flush=True)
    if small is not None:
        small.unlink()
    return {"rows": rows}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes: checks that every section runs")
    ap.add_argument("--out", default=str(ROOT / "results" / "bench" / "gpu"))
    ap.add_argument("--sections", default="train,sample,inception,sweep,flops")
    ap.add_argument("--peak-tflops", type=float, default=None,
                    help="device peak for MFU (default: 989 dense bf16 on H100/H200, else none)")
    ap.add_argument("--batch", type=int, default=None, help="training batch (default 64; dry run 4)")
    ap.add_argument("--steps", type=int, default=None, help="timed training steps per K (default 5; dry run 1)")
    args = ap.parse_args(argv)
    dry = args.dry_run
    wanted = [s.strip() for s in args.sections.split(",") if s.strip()]
    cuda = torch.cuda.is_available()
    if not dry and not cuda and set(wanted) - {"flops"}:
        print("error: no CUDA device; run on a GPU machine, pass --dry-run for the CPU check, "
              "or --sections flops (counted on the CPU)", file=sys.stderr)
        return 2
    device = torch.device("cuda" if cuda and not dry else "cpu")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    peak = args.peak_tflops or (H200_BF16_DENSE_TFLOPS if ("H100" in name or "H200" in name) else None)
    batch, steps = args.batch or (4 if dry else 64), args.steps or (1 if dry else 5)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = out / "work"
    report = {"device": name, "dry_run": dry, "torch": torch.__version__, "sections": {}}
    t0 = time.perf_counter()
    for section in wanted:
        s0 = time.perf_counter()
        if section == "train":
            res = check_train(device, dry, peak, batch, steps)
        elif section == "sample":
            res = check_sample(device, dry, 2 if dry else 64)
        elif section == "inception":
            res = check_inception(device, dry, 4 if dry else 250)
        elif section == "sweep":
            res = check_sweep(device, dry, work, timeout=240)
        elif section == "flops":
            res = check_flops(dry)
        else:
            print(f"error: unknown section {section!r}", file=sys.stderr)
            return 2
        res["seconds"] = time.perf_counter() - s0
        report["sections"][section] = res
        (out / f"{section}.json").write_text(json.dumps(res, indent=1))
    report["seconds"] = time.perf_counter() - t0
    (out / "gpu_check.json").write_text(json.dumps(report, indent=1))
    bad = report["sections"].get("sweep", {}).get("returncode", 0)
    print(f"gpu check done in {report['seconds']:.0f} s -> {out / 'gpu_check.json'}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
