"""The released One-D-Piece / TiTok tokenizers through vltbench, for the day the real weights and a GPU are at hand.

    python benchmarks/titok_official.py --imagenet /data/imagenet --out results/bench/titok \
        --one-d-piece hf/One-D-Piece-S-256 --one-d-piece hf/One-D-Piece-B-256 \
        --titok hf/tokenizer_titok_l32_imagenet [--pixel-decoder maskgit-vqgan-imagenet-f16-256.bin] \
        [--reference VIRTUAL_imagenet256_labeled.npz --n-images 50000]

Each --one-d-piece / --titok folder is a Hugging Face download of the release (pytorch_model.bin or
model.safetensors, config.json). Per release:
1. `vltbench import one-d-piece / titok` (+ its configuration beside it) -> <out>/<folder name>.safetensors;
   --pixel-decoder is passed to releases whose weights hold no fine-tuned pixel_decoder.*.
2. `vltbench eval-tokenizer` at each K (One-D-Piece: --lengths, default 1..256 in powers of two; TiTok: its
   one K = N): the held-out ImageNet val images reconstructed, rFID (Inception, torch-fidelity), rKID, PSNR,
   SSIM, encoder / decoder GFLOPs; records, table.md and rfid_vs_k.png under <out>/runs/tokenizer_only.
3. Speed at each K on --batch images: encode and decode images / s (median of --reps timed batches after
   one warm-up, CUDA synchronised) and the peak GPU memory of the decode.
Prints one line per (release, K) and writes <out>/titok_official.json. Upstream reports rFID 1.48 / 1.11 /
1.08 (One-D-Piece S / B / L, K = 256) and 1.71 / 1.70 / 2.21 (TiTok S-128 / B-64 / L-32) on 50k ImageNet val
images with the ADM evaluator: pass --reference (the ADM batch .npz) and --n-images 50000 to measure under
that protocol; the default (10k held-out val images vs 10k other val images) gives the trend in K sooner.

--dry-run runs every step on a CPU with the tiny official-layout files of tests/fixtures/titok (seeded random
weights from the official code at a tiny size; tests/titok_layout.py writes them), a tiny ImageNet-layout
folder, randproj features and 16 images (tests/test_official_titok.py runs it). Its numbers measure the code
path, nothing about the releases.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
ODP_LENGTHS = [1, 2, 4, 8, 16, 32, 64, 128, 256]


def release_files(folder: Path) -> tuple[Path, Path | None]:
    """The weights file and config.json of a Hugging Face release folder."""
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (folder / name).is_file():
            cfg = folder / "config.json"
            return folder / name, cfg if cfg.is_file() else None
    raise SystemExit(f"error: {folder} holds neither model.safetensors nor pytorch_model.bin; pass the release's folder")


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def speed(bundle, x8: torch.Tensor, k: int, device, reps: int) -> dict:
    """Encode and decode throughput at K (images / s, median over reps) and the decode's peak GPU memory."""
    from vltbench.core.device import to_float

    tok, m = bundle.tokenizer, bundle.method
    x = to_float(x8).to(device)
    times = {"encode": [], "decode": []}
    for rep in range(reps + 1):  # the first pass warms up (kernels, allocator), untimed
        _sync(device)
        t0 = time.perf_counter()
        z = tok.encode(x)
        _sync(device)
        t1 = time.perf_counter()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        tok.decode(m.reconstruct_tokens(z, k))
        _sync(device)
        t2 = time.perf_counter()
        if rep:
            times["encode"].append(t1 - t0)
            times["decode"].append(t2 - t1)
    out = {f"{part}_images_per_s": len(x) / statistics.median(ts) for part, ts in times.items()}
    out["decode_peak_mem_gib"] = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return out


def dry_run_inputs(tmp: Path) -> tuple[list[tuple[str, Path]], Path]:
    """The tiny fixtures as release folders (one per family) and a tiny ImageNet-layout folder."""
    sys.path.insert(0, str(ROOT / "tests"))
    from test_data import write_images
    from titok_layout import write_official_files

    releases = []
    for family in ("one-d-piece", "titok"):
        f = write_official_files(tmp / f"{family}-tiny", family)
        releases.append((family, f["weights"].parent))
    for split, n in (("train", 2), ("val", 4)):
        for c in range(10):
            write_images(tmp / "imnet" / split / f"n{c:02d}", n, size=(72, 64), seed=c)
    return releases, tmp / "imnet"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--one-d-piece", action="append", default=[], type=Path, help="a One-D-Piece release folder")
    p.add_argument("--titok", action="append", default=[], type=Path, help="a TiTok release folder")
    p.add_argument("--pixel-decoder", type=Path, help="maskgit-vqgan-imagenet-f16-256.bin, for weights without one")
    p.add_argument("--imagenet", type=Path, help="folder with train/ and val/ (ImageNet layout)")
    p.add_argument("--lengths", default=",".join(map(str, ODP_LENGTHS)), help="One-D-Piece K values")
    p.add_argument("--n-images", type=int, default=10000, help="held-out val images reconstructed per K")
    p.add_argument("--n-ref", type=int, default=10000, help="reference val images (with --reference val)")
    p.add_argument("--reference", default="val", help="val, or an ADM reference batch .npz")
    p.add_argument("--batch", type=int, default=64, help="images per batch (speed and evaluation)")
    p.add_argument("--reps", type=int, default=10, help="timed batches per K")
    p.add_argument("--out", type=Path, default=Path("results/bench/titok"))
    p.add_argument("--dry-run", action="store_true")
    a = p.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)

    import vltbench
    from vltbench.core.config import load_config
    from vltbench.core.errors import UserError
    from vltbench.core.paths import portable_strings
    from vltbench.data import load_data
    from vltbench.evaluation.tokenizer_only import FOLDER, evaluate_tokenizer
    from vltbench.inputs import parse_lengths
    from vltbench.models.bundle import load_bundle
    from vltbench.models.official_titok import config_path, load_weights

    releases = [("one-d-piece", d) for d in a.one_d_piece] + [("titok", d) for d in a.titok]
    eval_set = {"eval.n_samples": a.n_images, "eval.n_ref": a.n_ref, "eval.reference": a.reference,
                "eval.batch_size": a.batch, "eval.extractor": "inception"}
    if a.dry_run:
        releases, a.imagenet = dry_run_inputs(Path(tempfile.mkdtemp(prefix="titok-dry-")))
        eval_set.update({"eval.n_samples": 16, "eval.n_ref": 16, "eval.batch_size": 8, "eval.kid_subset_size": 8,
                         "eval.extractor": "randproj", "eval.reference": "val"})
        a.lengths, a.batch, a.reps = "1,8,256", 4, 2
    elif not releases or a.imagenet is None:
        p.error("give --imagenet and at least one --one-d-piece / --titok release folder (or --dry-run)")
    device = torch.device("cuda" if torch.cuda.is_available() and not a.dry_run else "cpu")
    report = {"dry_run": a.dry_run, "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "torch": torch.__version__, "eval": eval_set, "releases": []}
    print(f"device {report['device']}; {len(releases)} release(s); rFID on {eval_set['eval.n_samples']} held-out "
          f"images vs {eval_set['eval.reference']}")
    try:
        for family, folder in releases:
            weights, official = release_files(folder)
            px = a.pixel_decoder if a.pixel_decoder and not any(
                k.startswith("pixel_decoder.") for k in load_weights(weights, "--weights")) else None
            name = folder.name
            t = time.perf_counter()
            ckpt = vltbench.import_titok(family, weights, a.out / f"{name}.safetensors", pixel_decoder=px,
                                         official_config=official, config=(folder / "tiny.yaml") if a.dry_run else None)
            import_s = time.perf_counter() - t
            cfg = load_config("titok-official", config_path(ckpt),
                              {**eval_set, "data.root": str(a.imagenet), "device": str(device)})
            n = cfg.tokenizer.n_tokens
            ks = parse_lengths(a.lengths, n) if family == "one-d-piece" else [n]
            t = time.perf_counter()
            recs = evaluate_tokenizer(cfg, "tail-drop", ckpt, ks, a.out / "runs")
            eval_s = time.perf_counter() - t
            ds = load_data(cfg.data)
            bundle = load_bundle(ckpt, cfg, "tail-drop", 1000).to(device)
            x8 = torch.as_tensor(ds.val.images(torch.arange(min(a.batch, len(ds.val))).numpy()))
            rows = []
            for rec in recs:
                k, m = rec["length"], rec["metrics"]
                row = {"K": k, rec["metric_label"]: m["rfid"], "rkid": m["rkid"], "psnr": m["psnr"], "ssim": m["ssim"],
                       "encoder_gflops": rec["compute"]["encoder_gflops"],
                       "decoder_gflops": rec["compute"]["decoder_gflops"], **speed(bundle, x8, k, device, a.reps)}
                rows.append(row)
                mem = row["decode_peak_mem_gib"]
                print(f"{name} K={k}: {rec['metric_label']} {m['rfid']:.3f}, PSNR {m['psnr']:.2f} dB, SSIM {m['ssim']:.3f}; "
                      f"encode {row['encode_images_per_s']:.1f} img/s, decode {row['decode_images_per_s']:.1f} img/s"
                      + (f", decode peak {mem:.2f} GiB" if mem is not None else ""))
            report["releases"].append({"name": name, "family": family, "checkpoint": str(ckpt),
                                       "origin": recs[0]["origin"], "n_images": recs[0]["n_images"],
                                       "import_s": import_s, "eval_s": eval_s, "per_k": rows})
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    report["table"] = str(a.out / "runs" / FOLDER / "table.md")
    # no machine path in the JSON (vltbench.core.paths.portable): relative to <out> where they lie in it
    (a.out / "titok_official.json").write_text(json.dumps(portable_strings(report, a.out), indent=1, default=float))
    print(f"records, table.md and rfid_vs_k.png in {a.out / 'runs' / FOLDER}; report {a.out / 'titok_official.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
