"""The official LGM release through vltbench, for the day the real weights and a GPU are at hand.

    python benchmarks/lgm_official.py --tokenizer tokenizer.pt --generator xl.pth \
        --latent-stats latents_stats.pt --imagenet /data/imagenet --out results/bench/lgm

1. `vltbench import lgm` -> <out>/lgm-xl.safetensors (preset lgm-official-xl).
2. PSNR of the imported tokenizer per K (32, 64, 128, 256) on 1,000 ImageNet val images (one per class,
   center crop 256): encode, merge with the frozen table, unmerge, decode; per-image PSNR on uint8 images
   (vltbench.evaluation.metrics.recon), averaged.
3. gFID@10k per K (32, 64, 128) at the official evaluation settings (the preset: 25 Euler points, shift
   0.2, CFG interval from 0.15, per-position CFG 10.5 / 8.0 / 6.5): `vltbench eval` with --n-samples 10000,
   Inception features against the val split.
Writes <out>/lgm_official.json. Put the numbers the official scripts print for the same files beside them
(tokenizer/evaluate_tokenizer.py for PSNR, LightningDiT/evaluate.py for FID; their FID uses 50k samples
against the ADM reference batch, so only the trend in K is comparable to 10k samples against val).

--dry-run runs every step on a CPU with the tiny official-layout files of tests/fixtures/lgm (weights
from the official code at a tiny size; tests/lgm_layout.py writes them) and a tiny ImageNet-layout folder,
K = 8, 16, 32, randproj features and 20 samples (tests/test_official_lgm.py runs it).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def stratified_val(ds, n: int) -> np.ndarray:
    """Up to n val indices, one class after another (round-robin), so 1,000 ImageNet images = one per class."""
    labels = np.asarray(ds.val.labels)
    per_class = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    order = [idx[r] for r in range(max(map(len, per_class))) for idx in per_class if r < len(idx)]
    return np.asarray(order[:n])


@torch.no_grad()
def psnr_per_k(bundle, ds, lengths, n_images: int, device, batch: int = 50) -> dict:
    from vltbench.core.device import to_float, to_uint8
    from vltbench.evaluation.metrics.recon import ReconMeter

    idx = stratified_val(ds, n_images)
    tok, m = bundle.tokenizer.to(device).eval(), bundle.method.to(device)
    out = {}
    for k in lengths:
        view, meter = m.view(k), ReconMeter(lpips=False)
        for s in range(0, len(idx), batch):
            x8 = torch.as_tensor(ds.val.images(idx[s:s + batch]))
            rec = tok.decode(m.expand(view.merge(tok.encode(to_float(x8).to(device))), view))
            meter.update(x8, to_uint8(rec).cpu())
        r = meter.result()
        out[k] = {"psnr": r["psnr"], "ssim": r["ssim"]}
    return {"n_images": int(len(idx)), "per_k": out}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokenizer")
    p.add_argument("--generator")
    p.add_argument("--latent-stats")
    p.add_argument("--imagenet", help="folder with train/ and val/ (ImageNet layout)")
    p.add_argument("--out", default="results/bench/lgm")
    p.add_argument("--dry-run", action="store_true")
    a = p.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)

    import vltbench
    from vltbench.core.config import load_config
    from vltbench.data import load_data
    from vltbench.models.bundle import load_bundle

    config, overrides, extra = None, {}, {}
    if a.dry_run:
        sys.path.insert(0, str(ROOT / "tests"))
        from lgm_layout import write_official_files
        from test_data import write_images

        tmp = Path(tempfile.mkdtemp(prefix="lgm-dry-"))
        f = write_official_files(tmp)
        for split in ("train", "val"):
            for c in range(10):
                write_images(tmp / "imnet" / split / f"n{c:02d}", 4, size=(40, 36), seed=c)
        a.tokenizer, a.generator, a.latent_stats, a.imagenet = f["tokenizer"], f["generator"], f["latent_stats"], tmp / "imnet"
        config = f["config"]
        psnr_lengths, gen_lengths, n_images = [8, 16, 32], [8, 16], 20
        overrides = {"eval.n_ref": 20, "eval.batch_size": 20, "eval.kid_subset_size": 10,
                     "sampler.cfg_scale_per_length": {8: 4.0, 16: 3.0}}
        extra = {"extractor": "randproj", "n_samples": 20}
    else:
        missing = [o for o in ("tokenizer", "generator", "latent_stats", "imagenet") if not getattr(a, o)]
        if missing:
            p.error("give " + ", ".join(f"--{m.replace('_', '-')}" for m in missing) + " (or --dry-run)")
        psnr_lengths, gen_lengths, n_images = [32, 64, 128, 256], [32, 64, 128], 1000
        extra = {"extractor": "inception", "n_samples": 10000}
    device = "cuda" if torch.cuda.is_available() and not a.dry_run else "cpu"
    report = {"dry_run": a.dry_run, "device": device}

    t = time.perf_counter()
    ckpt = vltbench.import_lgm(a.tokenizer, a.generator, out / "lgm-xl.safetensors", latent_stats=a.latent_stats,
                               config=config, overrides=overrides)
    report["import"] = {"checkpoint": str(ckpt), "seconds": time.perf_counter() - t}

    cfg = load_config("lgm-official-xl", config, {**overrides, "data.root": str(a.imagenet)})
    ds = load_data(cfg.data)
    bundle = load_bundle(ckpt, cfg, "merge", ds.num_classes)
    t = time.perf_counter()
    report["psnr"] = psnr_per_k(bundle, ds, psnr_lengths, n_images, device)
    report["psnr"]["seconds"] = time.perf_counter() - t

    t = time.perf_counter()
    df = vltbench.evaluate("merge", gen_lengths, preset="lgm-official-xl", config=config, checkpoint=ckpt, train=False,
                           data_root=a.imagenet, results=out / "runs", quiet=True, overrides=overrides, **extra)
    report["generation"] = {"seconds": time.perf_counter() - t, "n_samples": extra["n_samples"],
                            "extractor": extra["extractor"],
                            "rows": df[["method", "length", "gfid", "gfid_noguidance", "rfid", "psnr"]].to_dict("records")}
    (out / "lgm_official.json").write_text(json.dumps(report, indent=1, default=float))
    print(json.dumps(report, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
