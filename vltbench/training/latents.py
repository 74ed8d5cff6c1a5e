"""The latent cache: the tokenizer encodes the training set once (with flipped copies when the
preset flips); DiT training reads the cache and never re-runs the encoder.

Content-addressed: the key hashes the tokenizer + method weights, the dataset manifest and the flip
setting, so a changed tokenizer or dataset never reuses stale latents.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from vltbench.core import progress
from vltbench.core.atomic import atomic_path
from vltbench.core.device import to_float
from vltbench.core.hashing import hash_obj
from vltbench.core.paths import cache_dir
from vltbench.data import Dataset
from vltbench.models.bundle import Bundle

VERSION = 1


def state_hash(*modules: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for m in modules:
        for name, t in sorted(m.state_dict().items()):
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def cache_key(bundle: Bundle, ds: Dataset) -> str:
    return hash_obj({"version": VERSION, "tokenizer": state_hash(bundle.tokenizer, bundle.method),
                     "data": ds.train.manifest_hash, "flip": ds.flip})


@torch.no_grad()
def encode_all(bundle: Bundle, ds: Dataset, device, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    tok = bundle.tokenizer.to(device).eval()
    n = len(ds.train)
    passes = [False, True] if ds.flip else [False]
    zs = []
    with progress.task(f"{bundle.method_name}: encode latents", n * len(passes)) as bar:
        for flip in passes:
            for s in range(0, n, batch_size):
                x = to_float(ds.train.images(np.arange(s, min(n, s + batch_size)))).to(device)
                zs.append(tok.encode(x.flip(-1) if flip else x).cpu())
                bar.advance(len(x))
    y = torch.as_tensor(ds.train.labels).long()
    return torch.cat(zs), y.repeat(len(passes))


def cached_latents(bundle: Bundle, ds: Dataset, device) -> tuple[torch.Tensor, torch.Tensor]:
    path = cache_dir("latents") / f"{cache_key(bundle, ds)}.safetensors"
    if path.is_file():
        t = load_file(str(path))
        return t["z"], t["y"]
    z, y = encode_all(bundle, ds, device)
    with atomic_path(path) as tmp:
        save_file({"z": z.contiguous(), "y": y.contiguous()}, str(tmp))
    return z, y
