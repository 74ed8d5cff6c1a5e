"""Import the official LGM release (movinghoon/LGM: tokenizer.pt, xl.pth; latents_stats.pt of the
dataset movinghoon/ours2-d32) into one vltbench `merge` checkpoint (`vltbench import lgm`).

Read from the official code (github.com/movinghoon/lgm; docs/official-checkpoints.md):
- tokenizer.pt is a torch pickle {model, optimizer, discriminator, optimizer_disc, steps, args, ema}; `args`
  is the argparse.Namespace of tokenizer/train_tokenizer.py, whose floats came from a ruamel.yaml config
  (ruamel's ScalarFloat / ScalarInt / ScalarBoolean). It is loaded with torch.load(weights_only=True),
  which builds only tensors and containers, plus exactly those allow-listed classes: argparse.Namespace,
  and inert float / int subclasses standing in for ruamel's scalars (ruamel is never imported). Any other
  global, e.g. a code payload, stops the load before anything runs.
- The tokenizer (tokenizer/modelling/tokenizer.py SoftVQModel2 + modules/timm_vit) maps onto vltbench's
  `tokenizer.arch: timm` with prefix_token, quantizer softvq, norm_eps 1e-6 and pixel_order pqc:
  cls token + its position -> enc_prefix / dec_prefix; the positions of the patches -> enc_pos; the
  decoder's mask token + patch positions -> mask_tokens; latent tokens + their positions -> latent_tokens;
  LayerScale (ls1 / ls2 gamma) folded into attn.proj / mlp.fc2 (out = x + gamma * (W h + b)).
- The merge table: merge_module.embeddings -> method.embed, frozen as vltbench merge with `blocks` 4 (the
  official MergeModule's four diagonal blocks), the same average-linkage clustering.
- xl.pth holds {model, model_ema} of LightningDiT/models/lightningdit_ours.py (EMA: named parameters);
  a renaming alone loads it into `dit.arch: lightning` (upstream's RMSNorm eps: `dit.norm_eps`).
Every official key is consumed exactly once or skipped by name (training-only networks; the decoder's
patch embedding, which its forward never uses); an unknown key, a missing key or a shape that does not
match is one UserError naming it.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import torch

from vltbench.core import defaults
from vltbench.core.config import Config
from vltbench.core.errors import UserError
from vltbench.core.hashing import sha256_file
from vltbench.core.safeload import load_official

from .imported import ORIGIN, describe_imported

METHOD = "merge"

# Networks that only train the official tokenizer (REPA target and its DINO decoder head, codebook usage
# counter): skipped by name, listed in the bundle's origin.
TOKENIZER_TRAINING_ONLY = ("repa_model.", "decoder_dino.", "post_quant_conv_dino.", "to_pixel_dino.", "projection.",
                           "decoder_hog.", "post_quant_conv_hog.", "to_pixel_hog.", "decoder_clip.",
                           "post_quant_conv_clip.", "to_pixel_clip.", "quantize.codebook_used")
# Inference-model keys the official forward never reads: the decoder starts from mask tokens, not patches.
TOKENIZER_UNUSED = ("decoder.model.patch_embed.",)
# timm ViTs of the official tokenizer: (width, heads), to check the config's heads when the weights are one
KNOWN_VITS = {"vit_small_patch14_dinov2": (384, 6), "vit_base_patch14_dinov2": (768, 12),
              "vit_large_patch14_dinov2": (1024, 16)}


class _YamlFloat(float):
    """Stands in for ruamel.yaml's ScalarFloat while unpickling `args` (a float; its format fields land in
    __dict__ and are dropped)."""


class _YamlInt(int):
    """Stands in for ruamel.yaml's ScalarInt."""


SAFE_GLOBALS = [argparse.Namespace,
                (_YamlFloat, "ruamel.yaml.scalarfloat.ScalarFloat"),
                (_YamlInt, "ruamel.yaml.scalarint.ScalarInt"),
                (_YamlInt, "ruamel.yaml.scalarbool.ScalarBoolean")]


def safe_load(path: str | Path, option: str) -> dict:
    """torch.load(weights_only=True) with only SAFE_GLOBALS allowed; a refusal is one UserError."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{option}: {p} does not exist; pass the downloaded file")
    obj = load_official(p, option, "tensors, containers and argparse.Namespace", SAFE_GLOBALS)
    if not isinstance(obj, dict):
        raise UserError(f"{option}: {p} holds a {type(obj).__name__}, not the official checkpoint's dict")
    return obj


def plain(v):
    """args values as JSON-able Python values (the ruamel stand-ins become float / int / bool)."""
    if isinstance(v, _YamlFloat):
        return float(v)
    if isinstance(v, _YamlInt):
        return int(v)
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if isinstance(v, dict):
        return {str(k): plain(x) for k, x in v.items()}
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return str(v)


class Keys:
    """One official state dict: every key is taken once, skipped by name, or reported."""

    def __init__(self, sd: dict, source: str, what: str = "not an official LGM inference or training-only key"):
        self.what = what
        if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
            raise UserError(f"{source} is not a state dict of tensors; pass the official file unchanged")
        self.sd, self.source, self.used, self.skipped = sd, source, set(), {}

    def take(self, key: str, shape=None) -> torch.Tensor:
        if key not in self.sd:
            raise UserError(f"{self.source}: missing key {key}; pass the official file unchanged")
        if key in self.used:  # a mapping bug, not the user's: every key maps to one place
            raise AssertionError(f"{key} consumed twice")
        t = self.sd[key]
        if shape is not None and tuple(t.shape) != tuple(shape):
            raise UserError(f"{self.source}: {key} has shape {tuple(t.shape)} but the configuration needs "
                            f"{tuple(shape)}; pass the official file or the matching --preset / --set sizes")
        self.used.add(key)
        return t.detach().float()

    def skip(self, prefixes: tuple, why: str) -> None:
        for k in self.sd:
            if k.startswith(prefixes) and k not in self.used:
                self.skipped[k] = why

    def finish(self) -> None:
        rest = sorted(set(self.sd) - self.used - set(self.skipped))
        if rest:
            more = f" (and {len(rest) - 1} more)" if len(rest) > 1 else ""
            raise UserError(f"{self.source}: unknown key {rest[0]}{more}: {self.what}; pass the official "
                            "file unchanged")


# --------------------------------------------------------------------------------------------------
# tokenizer

def _fold_block(keys: Keys, src: str, dst: str, own: dict, new: dict) -> None:
    """One official timm ViT block (with LayerScale) -> vltbench's timm block (without)."""
    for name in ("norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight", "attn.proj.bias",
                 "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias"):
        new[f"{dst}.{name}"] = keys.take(f"{src}.{name}", own[f"{dst}.{name}"].shape)
    width = own[f"{dst}.norm1.weight"].shape[0]
    for ls, lin in (("ls1", "attn.proj"), ("ls2", "mlp.fc2")):
        if f"{src}.{ls}.gamma" in keys.sd:  # x + gamma * (W h + b) = x + (gamma W) h + gamma b
            g = keys.take(f"{src}.{ls}.gamma", (width,))
            new[f"{dst}.{lin}.weight"] = new[f"{dst}.{lin}.weight"] * g[:, None]
            new[f"{dst}.{lin}.bias"] = new[f"{dst}.{lin}.bias"] * g


def tokenizer_state(sd: dict, bundle, source: str) -> tuple[dict, torch.Tensor, dict]:
    """(vltbench tokenizer state dict, merge embeddings, skipped keys with why) from the official dict."""
    keys = Keys(sd, source)
    tok, t = bundle.tokenizer, bundle.cfg.tokenizer
    own = tok.state_dict()
    new = {}
    w = t.width
    n_patches = tok.grid ** 2
    keys.skip(TOKENIZER_TRAINING_ONLY, "training only (REPA / DINO decoder head, codebook usage)")
    keys.skip(TOKENIZER_UNUSED, "unused by inference (the decoder starts from mask tokens, not patches)")
    enc_depth = len({m.group(1) for k in sd if (m := re.match(r"encoder\.model\.blocks\.(\d+)\.", k))})
    dec_depth = len({m.group(1) for k in sd if (m := re.match(r"decoder\.model\.blocks\.(\d+)\.", k))})
    if (enc_depth, dec_depth) != (t.enc_depth, t.dec_depth):
        raise UserError(f"{source}: the official tokenizer has {enc_depth} encoder and {dec_depth} decoder blocks but "
                        f"the configuration has tokenizer.enc_depth={t.enc_depth}, dec_depth={t.dec_depth}; "
                        "set them to match (--set)")
    new["patch_embed.proj.weight"] = keys.take("encoder.model.patch_embed.proj.weight", own["patch_embed.proj.weight"].shape)
    new["patch_embed.proj.bias"] = keys.take("encoder.model.patch_embed.proj.bias", (w,))
    pos = keys.take("encoder.model.pos_embed", (1, n_patches + 1, w))
    new["enc_pos"] = pos[:, 1:]
    new["enc_prefix"] = keys.take("encoder.model.cls_token", (1, 1, w)) + pos[:, :1]
    new["latent_tokens"] = (keys.take("encoder.latent_tokens", own["latent_tokens"].shape)
                            + keys.take("encoder.latent_pos_embed", own["latent_tokens"].shape))
    for i in range(t.enc_depth):
        _fold_block(keys, f"encoder.model.blocks.{i}", f"encoder.{i}", own, new)
    new["enc_norm.weight"] = keys.take("encoder.model.norm.weight", (w,))
    new["enc_norm.bias"] = keys.take("encoder.model.norm.bias", (w,))
    new["to_latent.weight"] = keys.take("quant_conv.weight", own["to_latent.weight"].shape)
    new["to_latent.bias"] = keys.take("quant_conv.bias", own["to_latent.bias"].shape)
    new["codebook"] = keys.take("quantize.embedding", own["codebook"].shape)
    new["from_latent.weight"] = keys.take("post_quant_conv.weight", own["from_latent.weight"].shape)
    new["from_latent.bias"] = keys.take("post_quant_conv.bias", own["from_latent.bias"].shape)
    dpos = keys.take("decoder.model.pos_embed", (1, n_patches + 1, w))
    new["mask_tokens"] = keys.take("decoder.mask_token", (1, 1, w)) + dpos[:, 1:]
    new["dec_prefix"] = keys.take("decoder.model.cls_token", (1, 1, w)) + dpos[:, :1]
    new["dec_latent_pos"] = keys.take("decoder.latent_pos_embed", own["dec_latent_pos"].shape)
    for i in range(t.dec_depth):
        _fold_block(keys, f"decoder.model.blocks.{i}", f"decoder.{i}", own, new)
    new["dec_norm.weight"] = keys.take("decoder.model.norm.weight", (w,))
    new["dec_norm.bias"] = keys.take("decoder.model.norm.bias", (w,))
    new["to_pixels.weight"] = keys.take("decoder.to_pixel.model.weight", own["to_pixels.weight"].shape)
    new["to_pixels.bias"] = keys.take("decoder.to_pixel.model.bias", own["to_pixels.bias"].shape)
    embed = keys.take("merge_module.embeddings", bundle.method.embed.shape)
    keys.finish()
    missing = sorted(set(own) - set(new))
    if missing:  # the configuration asks for parts the official tokenizer does not have
        raise UserError(f"the configuration's tokenizer has {missing[0]}, which the official tokenizer does not; "
                        "use --preset lgm-official-xl")
    return new, embed, keys.skipped


def check_tokenizer_args(args: dict, cfg: Config, widths: dict) -> None:
    """The official args against the configuration: one line naming the first disagreement."""
    t, merge = cfg.tokenizer, cfg.method_options(METHOD)
    want = [("vq_model", "SoftVQ-2", "the SoftVQ tokenizer with merging"),
            ("variable_method", "ours2", "learnable global merging"),
            ("enc_type", "vit", None), ("dec_type", "vit", None), ("to_pixel", "linear", None),
            ("codebook_l2_norm", True, None),
            ("image_size", cfg.data.image_size, "data.image_size"),
            ("encoder_patch_size", t.patch_size, "tokenizer.patch_size"),
            ("decoder_patch_size", t.patch_size, "tokenizer.patch_size"),
            ("num_latent_tokens", t.n_tokens, "tokenizer.n_tokens"),
            ("codebook_embed_dim", t.latent_dim, "tokenizer.latent_dim"),
            ("num_codebooks", t.quantizer.codebooks, "tokenizer.quantizer.codebooks"),
            ("codebook_size", t.quantizer.codebook_size, "tokenizer.quantizer.codebook_size"),
            ("tau", t.quantizer.temperature, "tokenizer.quantizer.temperature"),
            ("merge_dim", merge.get("embed_dim"), "methods.merge.embed_dim")]
    for key, value, where in want:
        got = args.get(key)
        same = abs(got - value) < 1e-9 if isinstance(value, float) and isinstance(got, (int, float)) else got == value
        if not same:
            fix = f"set {where}: {got}" if where and " " not in where else "only the official SoftVQ-2 / ours2 tokenizer is supported"
            raise UserError(f"tokenizer.pt args: {key} is {got!r} but the configuration needs {value!r}; {fix}")
    if args.get("use_rope"):
        raise UserError("tokenizer.pt args: use_rope is set; only the released absolute-position tokenizer is supported")
    for part in ("encoder_model", "decoder_model"):
        name = str(args.get(part, "")).split(".")[0]
        if name in KNOWN_VITS and KNOWN_VITS[name][0] == widths[part] and KNOWN_VITS[name][1] != t.heads:
            raise UserError(f"tokenizer.pt args: {part} {name} has {KNOWN_VITS[name][1]} heads but the configuration has "
                            f"tokenizer.heads={t.heads}; set tokenizer.heads: {KNOWN_VITS[name][1]}")
    required = {"arch": "timm", "prefix_token": True, "pixel_order": "pqc"}
    for key, value in required.items():
        if getattr(t, key) != value:
            raise UserError(f"the official tokenizer needs tokenizer.{key}: {value} (got {getattr(t, key)!r}); "
                            "use --preset lgm-official-xl")
    if t.quantizer.kind != "softvq" or t.norm_eps != 1e-6:
        raise UserError("the official tokenizer needs tokenizer.quantizer.kind: softvq and tokenizer.norm_eps: 1e-6; "
                        "use --preset lgm-official-xl")
    if merge.get("blocks") != 4:
        raise UserError(f"the official merge table clusters within 4 blocks; set methods.merge.blocks: 4 "
                        f"(got {merge.get('blocks')})")


# --------------------------------------------------------------------------------------------------
# generator

DIT_NAMES = [("x_embedder.weight", "x_embed.weight"), ("x_embedder.bias", "x_embed.bias"), ("pos_embed", "pos"),
             ("t_embedder.mlp.0.weight", "t_embed.mlp.0.weight"), ("t_embedder.mlp.0.bias", "t_embed.mlp.0.bias"),
             ("t_embedder.mlp.2.weight", "t_embed.mlp.2.weight"), ("t_embedder.mlp.2.bias", "t_embed.mlp.2.bias"),
             ("y_embedder.embedding_table.weight", "y_embed.weight"),
             ("final_layer.norm.weight", "final_norm.weight"),
             ("final_layer.adaLN_modulation.1.weight", "final_ada.1.weight"),
             ("final_layer.adaLN_modulation.1.bias", "final_ada.1.bias"),
             ("final_layer.linear.weight", "out.weight"), ("final_layer.linear.bias", "out.bias")]
DIT_BLOCK_NAMES = [("norm1.weight", "norm1.weight"), ("norm2.weight", "norm2.weight"),
                   ("attn.qkv.weight", "attn.qkv.weight"), ("attn.qkv.bias", "attn.qkv.bias"),
                   ("attn.q_norm.weight", "attn.q_norm.weight"), ("attn.k_norm.weight", "attn.k_norm.weight"),
                   ("attn.proj.weight", "attn.proj.weight"), ("attn.proj.bias", "attn.proj.bias"),
                   ("mlp.w12.weight", "mlp.fc1.weight"), ("mlp.w12.bias", "mlp.fc1.bias"),
                   ("mlp.w3.weight", "mlp.fc2.weight"), ("mlp.w3.bias", "mlp.fc2.bias"),
                   ("adaLN_modulation.1.weight", "ada.1.weight"), ("adaLN_modulation.1.bias", "ada.1.bias")]


def generator_sizes(sd: dict, source: str) -> dict:
    """What the official generator's shapes say about its configuration."""
    need = ("x_embedder.weight", "pos_embed", "y_embedder.embedding_table.weight", "transformer.blocks.0.attn.q_norm.weight")
    for k in need:
        if k not in sd:
            raise UserError(f"{source}: missing key {k}; pass the official LightningDiT checkpoint (xl.pth)")
    width, in_dim = sd["x_embedder.weight"].shape
    depth = len({m.group(1) for k in sd if (m := re.match(r"transformer\.blocks\.(\d+)\.", k))})
    return {"width": int(width), "latent_dim": int(in_dim), "depth": depth, "n_tokens": int(sd["pos_embed"].shape[1]),
            "heads": int(width // sd["transformer.blocks.0.attn.q_norm.weight"].shape[0]),
            "num_classes": int(sd["y_embedder.embedding_table.weight"].shape[0] - 1)}


def dit_state(sd: dict, dit, depth: int, source: str) -> dict:
    keys = Keys(sd, source)
    own = dit.state_dict()
    new = {ours: keys.take(theirs, own[ours].shape) for theirs, ours in DIT_NAMES}
    for i in range(depth):
        for theirs, ours in DIT_BLOCK_NAMES:
            new[f"blocks.{i}.{ours}"] = keys.take(f"transformer.blocks.{i}.{theirs}", own[f"blocks.{i}.{ours}"].shape)
    keys.finish()
    return new


def _unwrap(sd):
    """A state dict saved from a DDP or torch.compile wrapper has every key under module. / _orig_mod.:
    the same weights, so the prefix is dropped (only when every key has it)."""
    for prefix in ("module.", "_orig_mod."):
        if isinstance(sd, dict) and sd and all(isinstance(k, str) and k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items()}
    return sd


def _lora(sd: dict) -> bool:
    return any("lora_" in k for k in sd)


# --------------------------------------------------------------------------------------------------

def import_lgm(tokenizer: str | Path, generator: str | Path | None, out: str | Path, *,
               latent_stats: str | Path | None = None, ema: bool = True, preset: str = defaults.IMPORT_PRESET,
               config: str | Path | None = None, overrides: dict | None = None) -> Path:
    """Convert the official files into one vltbench merge checkpoint at `out`; returns its path."""
    from vltbench.core.config import load_config

    from .bundle import build_bundle, save_bundle

    cfg = load_config(preset, config, overrides)
    if generator is not None and latent_stats is None:
        raise UserError("--latent-stats is needed with --generator: the generator samples normalised latents "
                        "(latents_stats.pt of the dataset repo movinghoon/ours2-d32); without a generator the "
                        "tokenizer alone is imported")
    tok_ckpt = safe_load(tokenizer, "--tokenizer")
    which = "ema" if ema else "model"
    if tok_ckpt.get(which) is None:
        raise UserError(f"--tokenizer: {tokenizer} has no {which!r} weights (keys: {', '.join(map(str, tok_ckpt))}); "
                        f"pass the official tokenizer.pt{' or use --no-ema' if ema else ''}")
    if not isinstance(tok_ckpt.get("args"), argparse.Namespace):
        raise UserError(f"--tokenizer: {tokenizer} has no argparse args; pass the official tokenizer.pt")
    args = {k: plain(v) for k, v in sorted(vars(tok_ckpt["args"]).items())}
    sd = _unwrap(tok_ckpt[which])
    if not isinstance(sd, dict):
        raise UserError(f"--tokenizer: {tokenizer}'s {which!r} is a {type(sd).__name__}, not a state dict; pass the "
                        "official tokenizer.pt")
    if _lora(sd):
        raise UserError(f"--tokenizer: {tokenizer} holds LoRA weights; pass the official tokenizer.pt")
    widths = {p: int(sd[f"{p.split('_')[0]}.model.pos_embed"].shape[-1]) for p in ("encoder_model", "decoder_model")
              if f"{p.split('_')[0]}.model.pos_embed" in sd}
    check_tokenizer_args(args, cfg, widths)

    num_classes, gen_info, dit_sd = 1000, None, None
    if generator is not None:
        gen_ckpt = safe_load(generator, "--generator")
        if any(_lora(part) for part in gen_ckpt.values() if isinstance(part, dict)) or _lora(gen_ckpt):
            raise UserError(f"--generator: {generator} is a length-specific LoRA checkpoint (lora_32.pth / lora_128.pth): "
                            "not supported. These fine-tune the legacy base generator trained and sampled with plain "
                            "(not pooled) noise, one model per K, which vltbench's single joint generator and pooled-noise "
                            "sampler do not reproduce; import xl.pth, the noise-scale-corrected generator")
        part = "model_ema" if ema else "model"
        if gen_ckpt.get(part) is None:
            raise UserError(f"--generator: {generator} has no {part!r} weights (keys: {', '.join(map(str, gen_ckpt))}); "
                            f"pass the official xl.pth{' or use --no-ema' if ema else ''}")
        dit_sd = _unwrap(gen_ckpt[part])
        sizes = generator_sizes(dit_sd, f"--generator {Path(generator).name} [{part}]")
        d, t = cfg.dit, cfg.tokenizer
        for key, ours in (("width", d.width), ("depth", d.depth), ("heads", d.heads), ("n_tokens", t.n_tokens),
                          ("latent_dim", t.latent_dim)):
            if sizes[key] != ours:
                where = f"dit.{key}" if key in ("width", "depth", "heads") else f"tokenizer.{key}"
                raise UserError(f"--generator: the official generator has {key} {sizes[key]} but the configuration has "
                                f"{where}={ours}; set {where}: {sizes[key]}")
        if d.arch != "lightning":
            raise UserError(f"the official generator is a LightningDiT: set dit.arch: lightning (got {d.arch!r})")
        num_classes = sizes["num_classes"]
        gen_info = {"file": Path(generator).name, "sha256": sha256_file(generator), "weights": part,
                    "config": sizes, "rmsnorm_eps": d.norm_eps}

    bundle = build_bundle(cfg, METHOD, num_classes)
    tok_state, embed, skipped = tokenizer_state(sd, bundle, f"--tokenizer {Path(tokenizer).name} [{which}]")
    with torch.no_grad():
        bundle.tokenizer.load_state_dict(tok_state)
        bundle.method.embed.copy_(embed)
    bundle.method.freeze()  # the official inference clustering: average linkage within the 4 blocks, no noise
    bundle.stages = ["tokenizer"]
    stats_info = None
    if latent_stats is not None:
        stats = safe_load(latent_stats, "--latent-stats")
        if not all(isinstance(stats.get(k), torch.Tensor) for k in ("mean", "std")):
            raise UserError(f"--latent-stats: {latent_stats} has no mean / std tensors; pass latents_stats.pt of "
                            "movinghoon/ours2-d32")
        mean, std = stats["mean"].float().reshape(-1), stats["std"].float().reshape(-1)
        if mean.numel() != cfg.tokenizer.latent_dim or std.numel() != cfg.tokenizer.latent_dim:
            raise UserError(f"--latent-stats: mean / std hold {mean.numel()} / {std.numel()} channels but the latents "
                            f"have {cfg.tokenizer.latent_dim}; pass the statistics of these latents")
        bundle.latent_mean, bundle.latent_std = mean, std
        stats_info = {"file": Path(latent_stats).name, "sha256": sha256_file(latent_stats),
                      "mean": mean.tolist(), "std": std.tolist()}
    if generator is not None:
        dit = bundle.new_dit()
        dit.load_state_dict(dit_state(dit_sd, dit, cfg.dit.depth, f"--generator {Path(generator).name} [{part}]"))
        bundle.dits["joint"] = dit.eval().requires_grad_(False)
        bundle.stages = ["tokenizer", "dit"]
    origin = {"kind": ORIGIN, "source": "huggingface.co/movinghoon/LGM (code: github.com/movinghoon/lgm)",
              "tokenizer": {"file": Path(tokenizer).name, "sha256": sha256_file(tokenizer), "weights": which,
                            "steps": plain(tok_ckpt.get("steps")), "args": args},
              "generator": gen_info, "latent_stats": stats_info,
              "merge_table": f"frozen from merge_module.embeddings {tuple(embed.shape)}, "
                             f"{cfg.method_options(METHOD).get('blocks')} blocks, average linkage",
              "skipped": {"count": len(skipped), "prefixes": sorted({_prefix(k) for k in skipped}),
                          "why": sorted(set(skipped.values()))}}
    describe_imported(bundle, origin)
    save_bundle(bundle, out)
    return Path(out)


def _prefix(key: str) -> str:
    for p in TOKENIZER_TRAINING_ONLY + TOKENIZER_UNUSED:
        if key.startswith(p):
            return p
    return key
