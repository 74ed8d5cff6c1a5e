import torch
import torch.nn.functional as F

from vltbench.plugins import Extractor


class PooledRGB(Extractor):
    """Colour means over a 4x4 grid of each image: 48 features, no weights (a cheap check, not FID)."""

    name, dim = "pooled-rgb", 48
    id = "pooled-rgb:grid=4:range=uint8"  # names what the features are: caches and records key on it
    weights, summary = "none", "colour means on a 4x4 grid, FD_pooled-rgb"  # read by the entry point

    def __init__(self, *, device="cpu"):
        self.device = torch.device(device)

    def _extract(self, images):
        x = images.to(self.device, torch.float64) / 255
        return {"features": F.adaptive_avg_pool2d(x, 4).flatten(1)}
