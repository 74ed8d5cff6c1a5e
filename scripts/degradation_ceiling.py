"""How sharp must a reconstruction be before Inception accepts it? The held-out real images of a folder,
degraded by known operations (Gaussian blur, 2x down-up sampling), scored exactly as a tokenizer's
reconstructions are: FID / KID / precision / recall against the run's reference set, PSNR / SSIM against the
originals. It bounds what any tokenizer of a given sharpness can reach on that data (the gate of issue 30
asks precision >= 0.3 of generated samples), without training anything.

    python scripts/degradation_ceiling.py --data-root data/shapes --out results/small_rgb/degradations.jsonl
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torchvision.transforms.functional import gaussian_blur

from vltbench import load_config
from vltbench.core.device import to_float, to_uint8
from vltbench.data import load_data
from vltbench.evaluation.extractors import extractor_for
from vltbench.evaluation.metrics import compute_image_metrics
from vltbench.evaluation.metrics.recon import ReconMeter
from vltbench.evaluation.plan import FID_SQRT
from vltbench.evaluation.references import RealSets


def blur(sigma: float):
    def op(x: torch.Tensor) -> torch.Tensor:
        size = 2 * math.ceil(3 * sigma) + 1
        return to_uint8(gaussian_blur(to_float(x), [size, size], [sigma, sigma]))
    return op


def down_up(factor: int):
    def op(x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        small = F.interpolate(to_float(x), size=(h // factor, w // factor), mode="bilinear", antialias=True)
        return to_uint8(F.interpolate(small, size=(h, w), mode="bilinear"))
    return op


DEGRADATIONS = {"none (the floor)": lambda x: x, "blur sigma 0.5 px": blur(0.5), "blur sigma 1 px": blur(1.0),
                "blur sigma 1.5 px": blur(1.5), "blur sigma 2 px": blur(2.0), "blur sigma 3 px": blur(3.0),
                "2x down-up (bilinear)": down_up(2), "4x down-up (bilinear)": down_up(4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-root", required=True)
    ap.add_argument("--preset", default="small-rgb")
    ap.add_argument("--out", type=Path, required=True, help="jsonl, one row per degradation")
    ap.add_argument("--set", action="append", default=[], help="section.key=value over the preset")
    a = ap.parse_args()
    cfg = load_config(a.preset, overrides=[*a.set, f"data.root={a.data_root}"])
    ds = load_data(cfg.data)
    extractor = extractor_for(cfg)
    sets = RealSets(cfg, ds, extractor)
    ref, held, e = sets.reference, sets.held_out, cfg.eval
    rows = []
    for name, op in DEGRADATIONS.items():
        t0, meter = time.perf_counter(), ReconMeter(lpips=False)

        def degraded():
            for x in held.batches(e.batch_size):
                y = op(x)
                meter.update(x, y)
                yield y

        m = compute_image_metrics(extractor, None, degraded(), ref=ref, kid_subset_size=min(e.kid_subset_size, len(held.idx)),
                                  seed=0, fid_method=FID_SQRT)
        q = meter.result()
        row = {"degradation": name, "n": len(held.idx), "extractor": extractor.id, "fid": m["fid"], "kid": m["kid"],
               "kid_std": m["kid_std"], "precision": m["precision"], "recall": m["recall"], "psnr": q["psnr"],
               "ssim": q["ssim"], "seconds": round(time.perf_counter() - t0, 1)}
        row["psnr"] = row["psnr"] if math.isfinite(row["psnr"]) else None  # identical images: no finite PSNR
        rows.append(row)
        print(json.dumps(row), flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text("".join(json.dumps(r) + "\n" for r in rows))


if __name__ == "__main__":
    main()
