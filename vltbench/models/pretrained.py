"""The tokenizer's encoder from a pretrained ViT (tokenizer.encoder_init), as upstream starts it from DINOv2.

The file is a local state dict of a timm ViT (e.g. vit_base_patch14_dinov2: safetensors, or a torch
file loaded with weights_only=True; nothing is downloaded); `model` names its timm architecture, built
on the meta device only to read its width, heads, patch size and LayerScale. Its blocks `blocks.{i}.*`
become the encoder's `encoder.{i}.*` for i < enc_depth, with LayerScale folded into the linear layer
before it (vltbench's timm blocks have none): ls1.gamma scales attn.proj's rows and bias, ls2.gamma
mlp.fc2's. The patch embedding is copied when its size matches, else resampled (timm's
resample_patch_embed). Positional embeddings, the cls token and the final norm are not copied: the
tokenizer's token layout (patches + latent tokens, no cls) differs.

Weights are applied only when a tokenizer trains from scratch (train.train_tokenizer); a checkpoint or
a resumed training state brings its own. The identity of a training holds the file's sha256, not its
path (model.training_identity).
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch

from vltbench.core.errors import UserError
from vltbench.core.hashing import sha256_file

from .losses import load_weights

KEY = "tokenizer.encoder_init"
INIT_FROM = "tokenizer.init_from"  # a finished vltbench tokenizer state (training.state.load_weights)


def weights_sha256(path: str, key: str = KEY + ".weights") -> str:
    """sha256 of the weights file (cached per path, size and mtime: the identity asks for it often)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise UserError(f"{key}: weights file {p} does not exist; give the path of a local file, or set {key} to "
                        "null (nothing is downloaded)")
    s = p.stat()
    return _sha(str(p.resolve()), s.st_size, s.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _sha(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(path)


def _resampler():
    try:
        from timm.layers import resample_patch_embed
    except ImportError:
        return None
    return resample_patch_embed


def _arch(t):
    """The named timm ViT on the meta device (no memory, no download), checked against the tokenizer."""
    import timm

    model = t.encoder_init.model
    if t.arch != "timm":
        raise UserError(f"{KEY} needs tokenizer.arch: timm (timm ViT blocks), got {t.arch!r}; set tokenizer.arch: timm")
    try:
        with torch.device("meta"):
            net = timm.create_model(model, pretrained=False)
    except Exception as e:  # noqa: BLE001 - unknown names, bad kwargs
        raise UserError(f"{KEY}.model: {model!r} is not a usable timm architecture ({str(e).splitlines()[0]})") from None
    blocks, pe = getattr(net, "blocks", None), getattr(net, "patch_embed", None)
    if blocks is None or pe is None or not hasattr(blocks[0], "attn"):
        raise UserError(f"{KEY}.model: {model!r} is not a timm ViT (no blocks / patch_embed); name a ViT such as "
                        "vit_base_patch14_dinov2")
    width, heads = net.embed_dim, blocks[0].attn.num_heads
    if (width, heads) != (t.width, t.heads):
        raise UserError(f"{KEY}.model {model!r} has width {width} and {heads} heads but the tokenizer has "
                        f"width {t.width} and {t.heads} heads; set tokenizer.width: {width} and tokenizer.heads: {heads}")
    if t.enc_depth > len(blocks):
        raise UserError(f"{KEY}.model {model!r} has {len(blocks)} blocks but tokenizer.enc_depth is {t.enc_depth}; "
                        f"set tokenizer.enc_depth to at most {len(blocks)}")
    return net


def _patch_text(src: int, dst: int) -> str:
    if src == dst:
        return "copied"
    return f"resampled from {src} to {dst}" if _resampler() else "random (this timm has no resample_patch_embed)"


def encoder_start_text(t) -> str:
    """How the encoder starts, for records: from the config, the architecture and the file's hash."""
    init = t.encoder_init
    if t.init_from:
        return (f"fine-tuned from the finished tokenizer state {Path(t.init_from).parent.name}/"
                f"{Path(t.init_from).name} (sha256 {weights_sha256(t.init_from, INIT_FROM)[:12]})")
    if not init.weights:
        return "random init"
    net = _arch(t)
    ls = " (LayerScale folded)" if "blocks.0.ls1.gamma" in net.state_dict() else ""
    text = (f"pretrained: {init.model} from {Path(init.weights).name} (sha256 {weights_sha256(init.weights)[:12]}), "
            f"blocks 0-{t.enc_depth - 1}{ls}, patch embedding {_patch_text(net.patch_embed.patch_size[0], t.patch_size)}")
    return text + (f"; then the shared warm start (steps 1-{t.warm_start})" if t.warm_start else "")


def load_encoder_init(t, tok) -> str:
    """Copy the pretrained ViT into the tokenizer `tok` (TokenizerCfg t); returns what was done."""
    init = t.encoder_init
    net = _arch(t)
    ref = net.state_dict()  # the architecture's shapes (meta tensors)
    sd = load_weights(init.weights, f"{KEY}.weights")
    name = Path(init.weights).name

    def take(key: str, ours: str, shape) -> torch.Tensor:
        if key not in sd:
            raise UserError(f"{KEY}.weights: {name} has no {key} (needed for {ours}); pass the weights of "
                            f"{init.model!r}")
        if tuple(sd[key].shape) != tuple(shape):
            raise UserError(f"{KEY}.weights: {name}: {key} has shape {tuple(sd[key].shape)} but {ours} needs "
                            f"{tuple(shape)}; pass the weights of {init.model!r} or change the tokenizer's sizes")
        return sd[key].detach().float()

    own = tok.state_dict()
    new = {}
    for i in range(t.enc_depth):
        for k, v in tok.encoder[i].state_dict().items():
            new[f"encoder.{i}.{k}"] = take(f"blocks.{i}.{k}", f"encoder.{i}.{k}", v.shape)
        for ls, lin in (("ls1", "attn.proj"), ("ls2", "mlp.fc2")):
            if f"blocks.{i}.{ls}.gamma" in sd and f"blocks.{i}.{ls}.gamma" not in ref:
                raise UserError(f"{KEY}.weights: {name} has blocks.{i}.{ls}.gamma (LayerScale) but {init.model!r} "
                                f"has none; set {KEY}.model to the file's architecture")
            if f"blocks.{i}.{ls}.gamma" in ref:  # out = x + gamma * lin(h): fold gamma into lin
                g = take(f"blocks.{i}.{ls}.gamma", f"encoder.{i}.{lin}", (t.width,))
                new[f"encoder.{i}.{lin}.weight"] = new[f"encoder.{i}.{lin}.weight"] * g[:, None]
                new[f"encoder.{i}.{lin}.bias"] = new[f"encoder.{i}.{lin}.bias"] * g
    src, dst = net.patch_embed.patch_size[0], t.patch_size
    w = take("patch_embed.proj.weight", "patch_embed.proj.weight (of the pretrained ViT)",
             ref["patch_embed.proj.weight"].shape)
    resample = _resampler()
    if src == dst or resample is not None:  # else the tokenizer's random patch embedding stays
        new["patch_embed.proj.weight"] = w if src == dst else resample(w, [dst, dst])
        new["patch_embed.proj.bias"] = take("patch_embed.proj.bias", "patch_embed.proj.bias", own["patch_embed.proj.bias"].shape)
    with torch.no_grad():
        for k, v in new.items():
            own[k].copy_(v)
    return (f"{encoder_start_text(t)}; not copied: positional embeddings, cls token and final norm (the "
            "tokenizer's token layout differs)")
