"""`randproj`: a cheap, deterministic stand-in extractor for fast checks and tests.

Images are area-downsampled to `size` x `size`, scaled to [-1, 1], passed through one fixed random
conv layer (weights drawn from a seeded generator, ReLU) and global-average pooled, all in float64
so features do not depend on the batch size. Its Frechet distance is reported as "FD_randproj",
never as FID: the numbers are only comparable with themselves.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vltbench.core.hashing import hash_obj

from .base import Extractor


class RandProjExtractor(Extractor):
    name = "randproj"
    has_logits = False

    def __init__(self, *, dim: int = 64, size: int = 16, kernel: int = 4, seed: int = 0, device="cpu"):
        params = {"dim": dim, "size": size, "kernel": kernel, "seed": seed, "version": 1}
        self.dim, self.size, self.kernel, self.device = dim, size, kernel, torch.device(device)
        g = torch.Generator().manual_seed(seed)
        w = torch.randn(dim, 3, kernel, kernel, generator=g, dtype=torch.float64) / (3 * kernel**2) ** 0.5
        self.weight = w.to(self.device)
        self.bias = (0.1 * torch.randn(dim, generator=g, dtype=torch.float64)).to(self.device)
        self.id = f"randproj:params={hash_obj(params, 12)}:resize=area-{size}:range=uint8"

    def _extract(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        x = images.to(self.device, torch.float64) / 127.5 - 1
        x = F.adaptive_avg_pool2d(x, self.size)
        x = F.relu(F.conv2d(x, self.weight, self.bias, stride=self.kernel))
        return {"features": x.mean(dim=(2, 3))}
