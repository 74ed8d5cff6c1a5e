"""Inception feature-extraction throughput: vltbench's extractor vs torch-fidelity's own pipeline.

Both run on the same in-memory uint8 images, same batch size, same weights (the converted local
file), in the same process; torch-fidelity's side is its own dataset -> DataLoader -> feature
extractor path (`get_featuresdict_from_dataset`, as used by `calculate_metrics`). Each side is timed
`--repeats` times, interleaved, and the best run is kept (other processes share the CPU).

    python benchmarks/bench_features.py [--n 64] [--size 64] [--batch 32] [--threads 2]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch


class _Images(torch.utils.data.Dataset):
    def __init__(self, x):
        self.x = x

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=64, help="images per run")
    ap.add_argument("--size", type=int, default=64, help="input resolution (resized to 299 inside)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1, help="1 is fastest on a shared 2-core machine")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--weights", default=None, help="Inception weights file (default: standard lookup)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    warnings.filterwarnings("ignore")

    from torch_fidelity.utils import create_feature_extractor, get_featuresdict_from_dataset

    from vltbench.metrics import inception_weights as iw
    from vltbench.metrics.features import get_extractor

    x = torch.randint(0, 256, (a.n, 3, a.size, a.size), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    ours = get_extractor("inception", weights=a.weights)
    tfid = create_feature_extractor("inception-v3-compat", ["2048"], cuda=False, verbose=False,
                                    feature_extractor_weights_path=str(iw.converted_path(ours.source)))

    def run_ours():
        return np.concatenate([ours(x[i:i + a.batch])["features"] for i in range(0, a.n, a.batch)])

    def run_tfid():
        return get_featuresdict_from_dataset(_Images(x), tfid, a.batch, cuda=False, save_cpu_ram=True,
                                             verbose=False)["2048"].double().numpy()

    ours(x[:2]), tfid(x[:2])  # warm-up
    best = {"vltbench": np.inf, "torch-fidelity": np.inf}
    for _ in range(a.repeats):
        for name, fn in (("vltbench", run_ours), ("torch-fidelity", run_tfid)):
            t = time.perf_counter()
            feats = fn()
            best[name] = min(best[name], time.perf_counter() - t)
            if name == "vltbench":
                f_ours = feats
            else:
                f_tfid = feats
    err = np.abs(f_ours - f_tfid).max() / np.abs(f_tfid).max()
    print(f"Inception-v3 features, CPU, {a.threads} threads, {a.n} images {a.size}x{a.size} -> 299, batch {a.batch}")
    print(f"extractor id: {ours.id}")
    for name, t in best.items():
        print(f"  {name:15s} {a.n / t:7.2f} images/s  ({t / a.n * 1000:.0f} ms/image)")
    print(f"  ratio vltbench / torch-fidelity: {best['torch-fidelity'] / best['vltbench']:.2f}  "
          f"(goal >= 1.0); max relative feature difference {err:.1e}")


if __name__ == "__main__":
    main()
