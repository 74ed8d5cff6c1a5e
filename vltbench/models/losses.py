"""Auxiliary tokenizer losses (all off by default): perceptual, adversarial, representation alignment.

The LGM tokenizer (movinghoon/lgm tokenizer/config.yaml) trains with MSE + a perceptual loss
(perceptual_weight 1.0), a GAN loss (disc_weight 0.4 from disc_start 20000, hinge) and REPA
(repa: True, a frozen DINOv2 ViT-L). Here each is an option of `tokenizer.losses`:
- perceptual: LPIPS-style distance between unit-normalised features of a frozen CNN (timm
  `features_only`), with LPIPS's linear heads when the weights file carries `lin.<i>.weight`;
- adversarial: a PatchGAN discriminator trained from scratch, hinge loss (no pretrained network);
- repa: an MLP projection of the encoder's patch features, pulled towards the patch features of a
  frozen ViT (timm `forward_features`) by negative cosine similarity.
Pretrained networks come only from the local files named in the config (safetensors, or a torch file
loaded with weights_only=True); nothing is downloaded. A missing file is one UserError line naming it
and its config key. The frozen networks are kept out of the module tree (no EMA copy, never saved).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from vltbench.core.errors import UserError


def load_weights(path: str, key: str) -> dict[str, torch.Tensor]:
    """A state dict from a local file: safetensors, else torch.load(weights_only=True)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise UserError(f"{key}: weights file {p} does not exist; give the path of a local safetensors "
                        f"(or weights-only torch) file in {key} (nothing is downloaded)")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file
            return load_file(str(p))
        sd = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same user mistake
        raise UserError(f"{key}: weights file {p} is unreadable ({str(e).splitlines()[0]}); pass a safetensors file") from None
    sd = sd.get("state_dict", sd.get("model", sd)) if isinstance(sd, dict) else sd
    if not isinstance(sd, dict):
        raise UserError(f"{key}: {p} holds no state dict; pass a safetensors file of the network's weights")
    return sd


def _frozen(model: nn.Module) -> nn.Module:
    return model.eval().requires_grad_(False)


def build_network(model: str, weights: str, key: str, **kw) -> tuple[nn.Module, dict]:
    """A timm architecture (no download: pretrained=False) with weights from a local file.
    Returns the network and the tensors of the file that are not the network's (e.g. LPIPS heads)."""
    import timm

    try:
        net = timm.create_model(model, pretrained=False, **kw)
    except Exception as e:  # noqa: BLE001 - unknown names, bad kwargs
        raise UserError(f"{key}.model: {model!r} is not a usable timm architecture ({str(e).splitlines()[0]})") from None
    sd = load_weights(weights, f"{key}.weights")
    own = net.state_dict()
    mine = {k: v for k, v in sd.items() if k in own}
    missing = sorted(set(own) - set(mine))
    if missing:
        raise UserError(f"{key}.weights: {weights} does not fit timm {model!r} (missing {missing[0]} and "
                        f"{len(missing) - 1} more); pass the weights of that architecture")
    try:
        net.load_state_dict(mine)
    except RuntimeError as e:
        raise UserError(f"{key}.weights: {weights} does not fit timm {model!r} ({str(e).strip().splitlines()[-1].strip()})") from None
    return _frozen(net), {k: v for k, v in sd.items() if k not in own}


def _imagenet_norm(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] -> the network's input normalisation (timm pretrained_cfg, ImageNet by default)."""
    cfg = getattr(net, "pretrained_cfg", {}) or {}
    mean = torch.tensor(cfg.get("mean", (0.485, 0.456, 0.406)), device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(cfg.get("std", (0.229, 0.224, 0.225)), device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return ((x + 1) / 2 - mean) / std


class Perceptual:
    """LPIPS-style: sum over stages of the spatial mean of w . (f(a)/|f(a)| - f(b)/|f(b)|)^2."""

    def __init__(self, model: str, weights: str, key: str = "tokenizer.losses.perceptual"):
        self.net, rest = build_network(model, weights, key, features_only=True)
        self.lins = [rest.get(f"lin.{i}.weight") for i in range(len(self.net.feature_info))]

    def to(self, device):
        self.net.to(device)
        self.lins = [w.to(device) if w is not None else None for w in self.lins]
        return self

    def __call__(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        fa, fb = self.net(_imagenet_norm(self.net, a)), self.net(_imagenet_norm(self.net, b))
        total = a.new_zeros(())
        for x, y, w in zip(fa, fb, self.lins):
            d = (F.normalize(x, dim=1, eps=1e-10) - F.normalize(y, dim=1, eps=1e-10)) ** 2
            d = (d * w.view(1, -1, 1, 1)).sum(1) if w is not None else d.sum(1)
            total = total + d.mean()
        return total


class PatchDiscriminator(nn.Module):
    """PatchGAN (Isola et al. 2017): strided 4x4 convs with LeakyReLU, one logit per patch.
    GroupNorm instead of BatchNorm so a DDP run needs no synchronised statistics."""

    def __init__(self, channels: int = 64, layers: int = 3):
        super().__init__()
        mods: list[nn.Module] = [nn.Conv2d(3, channels, 4, 2, 1), nn.LeakyReLU(0.2)]
        c = channels
        for i in range(1, layers):
            c2 = channels * min(2 ** i, 8)
            mods += [nn.Conv2d(c, c2, 4, 2, 1), nn.GroupNorm(min(32, c2), c2), nn.LeakyReLU(0.2)]
            c = c2
        mods += [nn.Conv2d(c, 1, 3, 1, 1)]
        self.net = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def hinge_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    return 0.5 * (F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean())


def generator_adv_loss(disc: nn.Module, fake: torch.Tensor) -> torch.Tensor:
    """-mean D(fake) with the discriminator's weights detached: the gradient reaches only the tokenizer
    (and no DDP hook of the discriminator fires in the tokenizer's backward)."""
    params = {k: v.detach() for k, v in disc.named_parameters()}
    return -torch.func.functional_call(disc, {**params, **dict(disc.named_buffers())}, (fake,)).mean()


class RepaTarget:
    """Patch features of a frozen ViT, resampled to the tokenizer's patch grid: (B, L, D)."""

    def __init__(self, model: str, weights: str, key: str = "tokenizer.losses.repa"):
        self.net, _ = build_network(model, weights, key, num_classes=0)
        self.dim = self.net.num_features

    def to(self, device):
        self.net.to(device)
        return self

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, grid: int) -> torch.Tensor:
        size = getattr(getattr(self.net, "patch_embed", None), "img_size", None)
        if size is not None and tuple(size) != tuple(x.shape[-2:]):
            x = F.interpolate(x, size=tuple(size), mode="bicubic", align_corners=False)
        h = self.net.forward_features(_imagenet_norm(self.net, x))
        h = h[:, getattr(self.net, "num_prefix_tokens", 0):]
        g = int(round(h.shape[1] ** 0.5))
        h = h.transpose(1, 2).reshape(h.shape[0], -1, g, g)
        if g != grid:
            h = F.interpolate(h, size=(grid, grid), mode="bilinear", align_corners=False)
        return h.flatten(2).transpose(1, 2)


class RepaProjector(nn.Sequential):
    """The trainable MLP from the tokenizer's width to the target's (REPA's 3-layer SiLU MLP)."""

    def __init__(self, width: int, hidden: int, out: int):
        super().__init__(nn.Linear(width, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                         nn.Linear(hidden, out))


def repa_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return -F.cosine_similarity(pred, target, dim=-1).mean()
