"""Tokenizer-only evaluation (`vltbench eval-tokenizer`): rFID / rKID / PSNR / SSIM / LPIPS and the encoder /
decoder GFLOPs per K for one checkpoint, no generator needed, so released tokenizers (`vltbench import
one-d-piece / titok`) and vltbench's own share one table and one rFID-vs-K plot.

The reconstructions are of the sweep's held-out real images vs the sweep's reference statistics
(references.RealSets, the same sets `vltbench eval` uses for rFID), one process. Records: one JSON per
(checkpoint, K) under <results>/tokenizer_only/; the table (table.md, table.csv) and the figure
(rfid_vs_k.png / .svg) are rebuilt from every record there. A fixed-K tokenizer (TiTok) is one point.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from vltbench.core.atomic import atomic_path
from vltbench.core.errors import UserError
from vltbench.core.hashing import sha256_file
from vltbench.core.paths import portable

FOLDER = "tokenizer_only"


def _flops(bundle, k: int) -> dict:
    from .metrics.flops import _Decode, _Encode, count

    tok = bundle.tokenizer
    p = next(tok.parameters())
    enc = count(_Encode(tok), (torch.zeros(1, 3, tok.image_size, tok.image_size, dtype=p.dtype, device=p.device),))
    view = bundle.method.view(k)
    with torch.no_grad():
        dec_in = bundle.method.expand(torch.zeros(1, k, tok.latent_dim, dtype=p.dtype, device=p.device), view.to(p.device))
    dec = count(_Decode(tok), (dec_in,))
    return {"encoder_gflops": enc.gflops, "decoder_gflops": dec.gflops, "decoder_tokens": int(dec_in.shape[1]),
            "tokenizer_params": sum(q.numel() for q in tok.parameters())}


def evaluate_tokenizer(cfg, method: str, checkpoint: str | Path | None, lengths: list[int], results: str | Path) -> list[dict]:
    """One record per K (written under results/tokenizer_only), then the table and figure; returns the records."""
    from vltbench.core.device import resolve_device
    from vltbench.data import load_data
    from vltbench.models.bundle import load_bundle, read_metadata
    from vltbench.training.checkpoints import find_checkpoint

    from .extractors import extractor_for
    from .generate import reconstruct
    from .metrics import ReconMeter, compute_image_metrics
    from .plan import FID_SQRT, extractor_label
    from .references import RealSets

    device = resolve_device(cfg.device)
    ds = load_data(cfg.data)
    if checkpoint is None:
        found = find_checkpoint(cfg, method, ds.num_classes)
        if found is None:
            raise UserError(f"no checkpoint of {method} for this config; pass --checkpoint or train one with "
                            f"`vltbench train --method {method}`")
        checkpoint = found[0]
    path = Path(checkpoint)
    meta = read_metadata(path)
    bundle = load_bundle(path, cfg, method, int(meta.get("num_classes", ds.num_classes))).to(device)
    origin = bundle.origin or {}
    n = bundle.n_tokens
    fixed = str(origin.get("decodes", "")).startswith("K = ")
    for k in lengths:
        if not 1 <= k <= n:
            raise UserError(f"--lengths: K={k} is outside 1..N={n}")
        if fixed and k != n:
            raise UserError(f"--lengths: {origin.get('kind')} decodes only K = {n} (one fixed K per checkpoint); "
                            f"pass --lengths {n}")
    extractor = extractor_for(cfg, device)
    sets = RealSets(cfg, ds, extractor)
    ref, held, e = sets.reference, sets.held_out, cfg.eval
    sha = sha256_file(path)
    label = f"{path.stem}: {method}" + (f" [{origin['kind']}]" if origin.get("kind") else "")
    out_dir = Path(results) / FOLDER
    out_dir.mkdir(parents=True, exist_ok=True)
    records = []
    for k in lengths:
        meter = ReconMeter(device=device)

        def batches(k=k, meter=meter):
            for x in held.batches(e.batch_size):
                rec = reconstruct(bundle, x, k)
                meter.update(x, rec)
                yield rec

        with torch.no_grad():
            m = compute_image_metrics(extractor, None, batches(), ref=ref, seed=0, fid_method=FID_SQRT,
                                      kid_subset_size=min(e.kid_subset_size, len(held.idx)))
        q = meter.result()
        rec = {"kind": "tokenizer-only", "label": label, "method": method, "origin": origin.get("kind"),
               "checkpoint": portable(path), "checkpoint_sha256": sha, "length": int(k), "n_tokens": n,
               "metric_label": f"r{extractor_label(extractor)}", "extractor_id": m["extractor_id"],
               "n_images": int(m["n_fake"]), "n_ref": int(m["n_real"]) if m.get("n_real") else None,
               "dataset": cfg.data.name, "image_size": cfg.data.image_size,
               "metrics": {"rfid": m["fid"], "rfid_bootstrap_std": m.get("fid_bootstrap_std"), "rkid": m.get("kid"),
                           "psnr": q["psnr"], "ssim": q["ssim"], "lpips": q["lpips"]},
               "reasons": {**m.get("reasons", {}), **q.get("reasons", {})}, "compute": _flops(bundle, k),
               "notes": [f"{len(held.idx)} held-out images ({held.info['how']}) reconstructed at K vs the sweep's "
                         "reference statistics", *([f"imported: {origin['kind']}"] if origin else [])]}
        with atomic_path(out_dir / f"{sha[:16]}-K{k}.json") as tmp:
            Path(tmp).write_text(json.dumps(rec, indent=1, sort_keys=True, default=float))
        records.append(rec)
    write_outputs(out_dir)
    return records


def load_records(out_dir: Path) -> list[dict]:
    recs = []
    for p in sorted(Path(out_dir).glob("*.json")):
        try:
            r = json.loads(p.read_text())
        except json.JSONDecodeError:
            continue
        if r.get("kind") == "tokenizer-only":
            recs.append(r)
    return recs


def write_outputs(out_dir: Path) -> dict:
    """table.md / table.csv and rfid_vs_k.png / .svg from every record in out_dir; returns their paths."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    recs = load_records(out_dir)
    if not recs:
        raise UserError(f"{out_dir} holds no tokenizer-only records")
    df = pd.DataFrame([{"tokenizer": r["label"], "K": r["length"], "N": r["n_tokens"], "metric": r["metric_label"],
                        "rfid": r["metrics"]["rfid"], "rkid": r["metrics"]["rkid"], "psnr": r["metrics"]["psnr"],
                        "ssim": r["metrics"]["ssim"], "encoder_gflops": r["compute"]["encoder_gflops"],
                        "decoder_gflops": r["compute"]["decoder_gflops"], "n_images": r["n_images"],
                        "dataset": r["dataset"]} for r in recs]).sort_values(["tokenizer", "K"])
    paths = {"csv": out_dir / "table.csv", "md": out_dir / "table.md", "png": out_dir / "rfid_vs_k.png",
             "svg": out_dir / "rfid_vs_k.svg"}
    df.to_csv(paths["csv"], index=False)
    paths["md"].write_text("Tokenizer-only reconstruction (no generator); rows of imported releases are labelled.\n\n"
                           + df.to_markdown(index=False, floatfmt=".4g") + "\n")
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, g in df.groupby("tokenizer"):
        ax.plot(g["K"], g["rfid"], marker="o", label=name)  # a fixed-K tokenizer: one point
    ax.set_xscale("log", base=2)
    ax.set_xlabel("K (tokens decoded)")
    ax.set_ylabel(" / ".join(sorted(set(df["metric"]))))
    ax.set_title(f"Reconstruction vs K ({', '.join(sorted(set(df['dataset'])))})")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(paths["png"], dpi=120)
    fig.savefig(paths["svg"])
    plt.close(fig)
    return paths
