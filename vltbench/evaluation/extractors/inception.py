"""The standard FID Inception-v3 (2048-d pool3 of the 2015-12-05 TF graph), two preprocessing backends.

- "torch-fidelity" (default): torch-fidelity's FeatureExtractorInceptionV3 loaded from a local state
  dict; it resizes with its TF1-exact bilinear resize to 299, the ADM evaluator's protocol.
- "clean-fid": clean-fid's "clean" mode, run the way clean-fid runs it: each image resized by
  `cleanfid.resize.build_resizer("clean")` (PIL bicubic on float channels), then the TorchScript
  network's conv stack on (x - 128) / 128. It needs a TorchScript file (clean-fid's or fid-helper's).
  clean-fid's own `compute_fid(custom_feat_extractor=...)` only reads folders, hence this route.
Logits (for Inception Score) are torch-fidelity's "logits_unbiased"; files without the classifier
head (fid-helper's) give has_logits=False.
"""

from __future__ import annotations

import numpy as np
import torch

from vltbench.core.errors import UserError

from . import inception_weights as iw
from .base import INCEPTION_ID_PREFIX, Extractor

BACKENDS = {"torch-fidelity": "tf1-bilinear-299", "clean-fid": "pil-bicubic-299"}


class InceptionExtractor(Extractor):
    name = "inception"
    dim = 2048

    def __init__(self, *, weights=None, backend: str = "torch-fidelity", device="cpu", expected_sha=None):
        if backend not in BACKENDS:
            raise UserError(f"unknown Inception backend {backend!r}; valid: {', '.join(BACKENDS)}")
        self.source = iw.resolve_weights(weights, expected_sha)
        self.backend, self.device = backend, torch.device(device)
        self.id = f"{INCEPTION_ID_PREFIX}:sha={self.source.sha256[:12]}:resize={BACKENDS[backend]}:range=uint8"
        if backend == "torch-fidelity":
            net = iw.tfid_module(iw.state_dict(self.source), ["2048", "logits_unbiased"])
            # channels_last: ~1.5x faster on CPU; changes float rounding only (features within ~1e-6)
            self.net = net.to(self.device, memory_format=torch.channels_last)
            self.has_logits = bool(self.net.fc.weight.abs().sum() > 0)
            if not self.has_logits:
                self.net.features_list = ["2048"]
        else:
            if self.source.kind != "torchscript":
                raise UserError(f"the clean-fid backend runs the TorchScript network, but {self.source.path} is a "
                                "torch-fidelity state dict; pass clean-fid's inception-2015-12-05.pt or use "
                                "backend='torch-fidelity'")
            from cleanfid.resize import build_resizer

            ts = iw.load_torchscript(self.source.path, self.device)
            self.layers = iw.torchscript_layers(ts)
            out = getattr(ts, "output", None)
            self.fc_weight = out.weight.detach() if out is not None else None
            self.has_logits = self.fc_weight is not None
            self.resize = build_resizer("clean")

    def _extract(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.backend == "torch-fidelity":
            out = self.net(images.to(self.device).contiguous(memory_format=torch.channels_last))
            return {"features": out[0], **({"logits": out[1]} if self.has_logits else {})}
        hwc = images.permute(0, 2, 3, 1).cpu().numpy()
        x = torch.from_numpy(np.stack([self.resize(im) for im in hwc])).permute(0, 3, 1, 2).to(self.device)
        feats = self.layers((x - 128) / 128).reshape(-1, 2048)
        return {"features": feats, **({"logits": feats @ self.fc_weight.T} if self.has_logits else {})}
