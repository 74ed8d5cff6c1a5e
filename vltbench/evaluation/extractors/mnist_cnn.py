"""`mnist-cnn`: a small digit classifier trained on the mnist train split, as a feature extractor.

Inception features of 28 px digits upsampled to 299 px measure little and cost most of an evaluation.
This CNN, trained on the very data the models learn (train split only; `train_classifier`, run by
`python scripts/train_classifier.py`), gives (i) its 64-d penultimate features (pre-activation), whose
Fréchet distance and KID are reported as FD_mnist-cnn / KID_mnist-cnn, never as FID, and (ii) its
logits, from which `class_acc` counts samples classified as their conditioning class. The weights ship
in vltbench/assets with their sha256; the extractor id names that sha, so records measured with other
weights never share a table.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vltbench.core.errors import UserError
from vltbench.core.hashing import sha256_file

from .base import Extractor

NAME = "mnist-cnn"
FEATURE_DIM = 64
WEIGHTS = Path(__file__).resolve().parents[2] / "assets" / f"{NAME}.safetensors"
# The recipe `train_classifier` follows (stored in the weights' metadata).
IMAGE_SIZE = 16  # the tiny preset's digits (28 px resized to 16)
RECIPE = {"data": "mnist train split (4,000 digits)", "image_size": IMAGE_SIZE, "epochs": 6, "batch_size": 64, "lr": 2e-3,
          "optimizer": "AdamW (weight decay 1e-4), cosine", "augment": "random shift of up to image_size // 16 px (at least 1)",
          "seed": 0, "threads": 1}


class DigitCNN(nn.Module):
    """uint8 (B, 3, S, S) -> (64-d features, 10 logits); colour is averaged to gray. Two 2x poolings,
    then a global average: any S >= 4 works; the weights are trained for one S (RECIPE)."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        def conv(i, o):
            return [nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU()]
        self.body = nn.Sequential(*conv(1, 32), *conv(32, 32), nn.MaxPool2d(2), *conv(32, 64), *conv(64, 64),
                                  nn.MaxPool2d(2), *conv(64, 128), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.features = nn.Linear(128, FEATURE_DIM)
        self.head = nn.Linear(FEATURE_DIM, num_classes)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = images.float().mean(1, keepdim=True) / 127.5 - 1
        f = self.features(self.body(x))
        return f, self.head(F.relu(f))


class ClassifierExtractor(Extractor):
    name = NAME
    dim = FEATURE_DIM
    has_logits = True
    dataset_classes = True  # its logits are the dataset's classes: class_acc, never an Inception Score

    def __init__(self, *, weights=None, device="cpu"):
        path = Path(weights) if weights is not None else WEIGHTS
        if not path.is_file():
            raise UserError(f"classifier weights {path} are missing: run `python scripts/train_classifier.py` "
                            "or reinstall vltbench")
        from safetensors import safe_open
        from safetensors.torch import load_file

        self.sha256 = sha256_file(path)
        with safe_open(str(path), "pt") as f:
            self.image_size = int((f.metadata() or {}).get("image_size", IMAGE_SIZE))
        self.device = torch.device(device)
        self.net = DigitCNN().eval()
        self.net.load_state_dict(load_file(str(path)))
        self.net.to(self.device)
        s = self.image_size
        self.id = f"{NAME}:sha={self.sha256[:16]}:input=gray-{s}x{s}-uint8"

    def _extract(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        s = self.image_size
        if tuple(images.shape[-2:]) != (s, s):
            raise UserError(f"the {NAME} extractor was trained on {s}x{s} digits, got images of "
                            f"{tuple(images.shape[-2:])}: use data.image_size={s}, or `--extractor inception` "
                            "(or randproj) for other data")
        f, logits = self.net(images.to(self.device))
        return {"features": f.double(), "logits": logits.double()}


def class_accuracy(logits: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(fraction of images whose argmax class is their label, its binomial std)."""
    p = float((np.asarray(logits).argmax(1) == np.asarray(labels)).mean())
    return p, float(np.sqrt(p * (1 - p) / len(labels)))


def _shift(x: torch.Tensor, gen: torch.Generator, pad: int = 2) -> torch.Tensor:
    """Random translations of up to `pad` px (one per image), zero-filled."""
    b, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy, dx = torch.randint(0, 2 * pad + 1, (2, b), generator=gen)
    return torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(b)])


def train_classifier(out: str | Path = WEIGHTS, *, log=print) -> dict:
    """Train the classifier by RECIPE on the mnist train split; write safetensors + a JSON beside it."""
    from safetensors.torch import save_file

    from vltbench.data import load_dataset

    r = RECIPE
    torch.manual_seed(r["seed"])
    threads = torch.get_num_threads()
    torch.set_num_threads(r["threads"])  # one thread: the same float sums on every machine
    try:
        ds = load_dataset("mnist", image_size=r["image_size"])
        x_tr, y_tr = torch.from_numpy(ds.train.images(slice(None))), torch.from_numpy(ds.train.labels)
        x_va, y_va = torch.from_numpy(ds.val.images(slice(None))), torch.from_numpy(ds.val.labels)
        net, gen = DigitCNN(), torch.Generator().manual_seed(r["seed"])
        opt = torch.optim.AdamW(net.parameters(), lr=r["lr"], weight_decay=1e-4)
        steps = r["epochs"] * (len(y_tr) // r["batch_size"])
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
        t0 = time.perf_counter()
        for epoch in range(r["epochs"]):
            net.train()
            perm = torch.randperm(len(y_tr), generator=gen)
            for s in range(len(y_tr) // r["batch_size"]):
                idx = perm[s * r["batch_size"]:(s + 1) * r["batch_size"]]
                loss = F.cross_entropy(net(_shift(x_tr[idx], gen, max(1, r["image_size"] // 16)))[1], y_tr[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
            net.eval()
            with torch.no_grad():
                acc = float((net(x_va)[1].argmax(1) == y_va).float().mean())
            log(f"{NAME}: epoch {epoch + 1}/{r['epochs']} loss {loss.item():.4f} val accuracy {acc:.4f}")
    finally:
        torch.set_num_threads(threads)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(out),
              metadata={"image_size": str(r["image_size"]), "recipe": json.dumps(r)})
    info = {"name": NAME, "sha256": sha256_file(out), "val_accuracy": acc, "val_images": len(y_va),
            "train_s": round(time.perf_counter() - t0, 1), "recipe": r}
    out.with_suffix(".json").write_text(json.dumps(info, indent=2) + "\n")
    return info
