"""How sharp must a reconstruction be before Inception accepts it? The held-out real images of a folder,
degraded by known operations (Gaussian blur, 2x down-up sampling), scored exactly as a tokenizer's
reconstructions are: FID / KID / precision / recall against the run's reference set, PSNR / SSIM against the
originals. It bounds what any tokenizer of a given sharpness can reach on that data (the gate of issue 30
asks precision >= 0.3 of generated samples), without training anything.

Every row also says what kind of error it is, per band of spatial frequency (cycles per image): the power the
output keeps (`power`, output / original) and how much of it is the original's own detail (`coherence`,
the correlation of the two spectra in the band: 1 for a pure filter, ~0 for detail in the wrong place); and
whether errors gather at the tokenizer's patch borders (`patch_edge_mse`, the squared error on patch-border
pixels over the interior's). `--state` adds a tokenizer's reconstructions at K = N as one more row.

    python scripts/degradation_ceiling.py --data-root data/shapes --out results/small_rgb/degradations.jsonl \
        [--state ~/.cache/vltbench/train-state/small-rgb/tail-drop-HASH/tokenizer.safetensors --method tail-drop]
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
from vltbench.models.bundle import build_bundle
from vltbench.training.state import load_weights


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


BANDS = ((1, 2), (3, 4), (5, 8), (9, 16))  # radial frequency, cycles per image (32 px: 16 is Nyquist)


class ErrorKind:
    """Accumulates per-band output / original power and spectral correlation, and the patch-border error."""

    def __init__(self, patch: int):
        self.patch, self.sums, self.edge, self.inner = patch, torch.zeros(len(BANDS), 3, dtype=torch.float64), 0.0, 0.0

    def update(self, x: torch.Tensor, y: torch.Tensor) -> None:
        x, y = to_float(x).double(), to_float(y).double()
        fx, fy = (torch.fft.fft2(v - v.mean(dim=(-2, -1), keepdim=True)) for v in (x, y))
        h, w = x.shape[-2:]
        r = ((torch.fft.fftfreq(h) * h)[:, None] ** 2 + (torch.fft.fftfreq(w) * w)[None, :] ** 2).sqrt().round()
        for i, (lo, hi) in enumerate(BANDS):
            m = (r >= lo) & (r <= hi)
            self.sums[i] += torch.stack([fx.abs().pow(2)[..., m].sum(), fy.abs().pow(2)[..., m].sum(),
                                         (fy * fx.conj()).real[..., m].sum()])
        err = (y - x).pow(2).mean(dim=(0, 1))
        border = (torch.arange(h) % self.patch == 0) | (torch.arange(h) % self.patch == self.patch - 1)
        edge = border[:, None] | border[None, :w]
        self.edge, self.inner = self.edge + float(err[edge].mean()), self.inner + float(err[~edge].mean())

    def result(self) -> dict:
        px, py, cross = self.sums.unbind(1)
        out = {f"power_{lo}-{hi}": round(float(py[i] / px[i]), 3) for i, (lo, hi) in enumerate(BANDS)}
        out.update({f"coherence_{lo}-{hi}": round(float(cross[i] / (px[i] * py[i]).sqrt()), 3)
                    for i, (lo, hi) in enumerate(BANDS)})
        out["patch_edge_mse"] = round(self.edge / self.inner, 3) if self.inner else None
        return out


def reconstruct(cfg, ds, method: str, state: Path):
    """The K = N reconstruction of a finished tokenizer state, as a degradation."""
    bundle = build_bundle(cfg, method, ds.num_classes)
    name = load_weights(bundle, state)
    tok, m = bundle.tokenizer.eval(), bundle.method.eval()

    @torch.no_grad()
    def op(x: torch.Tensor) -> torch.Tensor:
        return to_uint8(tok.decode(m.reconstruct_tokens(tok.encode(to_float(x)), cfg.tokenizer.n_tokens)))
    return f"{method} tokenizer at K = N ({name})", op


DEGRADATIONS = {"none (the floor)": lambda x: x, "blur sigma 0.5 px": blur(0.5), "blur sigma 1 px": blur(1.0),
                "blur sigma 1.5 px": blur(1.5), "blur sigma 2 px": blur(2.0), "blur sigma 3 px": blur(3.0),
                "2x down-up (bilinear)": down_up(2), "4x down-up (bilinear)": down_up(4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-root", required=True)
    ap.add_argument("--preset", default="small-rgb")
    ap.add_argument("--out", type=Path, required=True, help="jsonl, one row per degradation")
    ap.add_argument("--set", action="append", default=[], help="section.key=value over the preset")
    ap.add_argument("--state", type=Path, help="a finished tokenizer train-state: its reconstructions as one more row")
    ap.add_argument("--method", default="tail-drop", help="the method of --state")
    a = ap.parse_args()
    cfg = load_config(a.preset, overrides=[*a.set, f"data.root={a.data_root}"])
    ds = load_data(cfg.data)
    ops = dict(DEGRADATIONS)
    if a.state:
        ops.update([reconstruct(cfg, ds, a.method, a.state)])
    extractor = extractor_for(cfg)
    sets = RealSets(cfg, ds, extractor)
    ref, held, e = sets.reference, sets.held_out, cfg.eval
    rows = []
    for name, op in ops.items():
        t0, meter, kind = time.perf_counter(), ReconMeter(lpips=False), ErrorKind(cfg.tokenizer.patch_size)

        def degraded():
            for x in held.batches(e.batch_size):
                y = op(x)
                meter.update(x, y)
                kind.update(x, y)
                yield y

        m = compute_image_metrics(extractor, None, degraded(), ref=ref, kid_subset_size=min(e.kid_subset_size, len(held.idx)),
                                  seed=0, fid_method=FID_SQRT)
        q = meter.result()
        row = {"degradation": name, "n": len(held.idx), "extractor": extractor.id, "fid": m["fid"], "kid": m["kid"],
               "kid_std": m["kid_std"], "precision": m["precision"], "recall": m["recall"], "psnr": q["psnr"],
               "ssim": q["ssim"], **kind.result(), "seconds": round(time.perf_counter() - t0, 1)}
        row["psnr"] = row["psnr"] if math.isfinite(row["psnr"]) else None  # identical images: no finite PSNR
        rows.append(row)
        print(json.dumps(row), flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text("".join(json.dumps(r) + "\n" for r in rows))


if __name__ == "__main__":
    main()
