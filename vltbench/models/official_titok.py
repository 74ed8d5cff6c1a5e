"""Import a released TiTok-family tokenizer into one vltbench `tail-drop` checkpoint of `tokenizer.arch: titok`
(`vltbench import one-d-piece`, `vltbench import titok`; docs/released-tokenizers.md).

Read from the official code (github.com/turingmotors/One-D-Piece, github.com/bytedance/1d-tokenizer;
modeling/titok.py and modules/): the releases are the stage-2 TiTok state dict (PyTorchModelHubMixin:
pytorch_model.bin, a pickle of an OrderedDict of tensors, or model.safetensors; config.json beside it), the
encoder, VQ, decoder and the fine-tuned MaskGIT-VQGAN pixel decoder in one dict. --pixel-decoder takes the
pixel stage from maskgit-vqgan-imagenet-f16-256.bin instead (its `encoder.` is unused by decoding; skipped by
name). Pickles are read with torch.load(weights_only=True): tensors and containers only, so a pickle with a
code payload is refused before anything in it runs. Every key is consumed once or skipped by name; an unknown,
missing or mis-shaped key is one UserError naming it, and so is an upstream config value that disagrees
with the weights or that the import does not support (the non-legacy decoders, VAE variants).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import torch

from vltbench.core.errors import UserError
from vltbench.core.hashing import sha256_file
from vltbench.core.safeload import load_official

from .official_lgm import Keys

METHOD = "tail-drop"
PRESET = "titok-official"
FAMILIES = {
    "one-d-piece": {"kind": "official One-D-Piece release", "source": "huggingface.co/turing-motors/One-D-Piece-{S,B,L}-256 "
                    "(code: github.com/turingmotors/One-D-Piece)", "any_prefix": True},
    "titok": {"kind": "official TiTok release", "source": "huggingface.co/yucornetto/tokenizer_titok_{l32,b64,s128}_imagenet "
              "(code: github.com/bytedance/1d-tokenizer)", "any_prefix": False},
}
# upstream's ViT size table (modules/blocks.py TiTokEncoder): width -> (name, depth, heads)
VIT_SIZES = {512: ("small", 8, 8), 768: ("base", 12, 12), 1024: ("large", 24, 16)}
BLOCK_NAMES = [("ln_1.weight", "norm1.weight"), ("ln_1.bias", "norm1.bias"),
               ("attn.in_proj_weight", "attn.qkv.weight"), ("attn.in_proj_bias", "attn.qkv.bias"),
               ("attn.out_proj.weight", "attn.proj.weight"), ("attn.out_proj.bias", "attn.proj.bias"),
               ("ln_2.weight", "norm2.weight"), ("ln_2.bias", "norm2.bias"),
               ("mlp.c_fc.weight", "mlp.fc1.weight"), ("mlp.c_fc.bias", "mlp.fc1.bias"),
               ("mlp.c_proj.weight", "mlp.fc2.weight"), ("mlp.c_proj.bias", "mlp.fc2.bias")]


def load_weights(path: str | Path, option: str) -> dict:
    """A state dict of tensors from a .safetensors file or a torch pickle read with weights_only=True."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{option}: {p} does not exist; pass the downloaded file")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file
        try:
            sd = load_file(str(p))
        except Exception as e:  # noqa: BLE001 - not a safetensors file
            raise UserError(f"{option}: {p} is not a readable safetensors file ({str(e)[:200]})") from None
    else:
        sd = load_official(p, option)
    if isinstance(sd, dict) and isinstance(sd.get("state_dict"), dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise UserError(f"{option}: {p} is not a state dict of tensors; pass the official weights file")
    return dict(sd)


def read_official_config(path: str | Path | None) -> dict:
    """config.json of the Hugging Face release or the repository's YAML: {model: {vq_model}, dataset: ...}."""
    if path is None:
        return {}
    p = Path(path)
    if not p.is_file():
        raise UserError(f"--official-config: {p} does not exist; pass the release's config.json")
    import yaml
    try:
        data = json.loads(p.read_text()) if p.suffix == ".json" else yaml.safe_load(p.read_text())
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        raise UserError(f"--official-config: {p} is not valid {'JSON' if p.suffix == '.json' else 'YAML'} ({e})") from None
    if not isinstance(data, dict) or not isinstance((data.get("model") or {}).get("vq_model"), dict):
        raise UserError(f"--official-config: {p} has no model.vq_model section; pass the release's config.json")
    return data


def _count(sd: dict, prefix: str) -> int:
    return len({m.group(1) for k in sd if (m := re.match(re.escape(prefix) + r"(\d+)\.", k))})


def sizes_from_weights(sd: dict, px: dict, source: str) -> dict:
    """The configuration the weights' shapes give (heads: upstream's size table, None off the table)."""
    need = ("encoder.patch_embed.weight", "encoder.positional_embedding", "latent_tokens", "encoder.conv_out.weight",
            "quantize.embedding.weight", "decoder.decoder_embed.weight")
    for k in need:
        if k not in sd:
            raise UserError(f"{source}: missing key {k}; pass the official TiTok / One-D-Piece weights")
    if "decoder.ffn.2.weight" not in sd or "decoder.conv_out.weight" in sd:
        raise UserError(f"{source}: its decoder predicts RGB pixels (upstream is_legacy: False, e.g. the vq8k / VAE "
                        "releases), not MaskGIT-VQGAN codes: not supported; import the legacy-decoder releases "
                        "(One-D-Piece-*-256, TiTok l32 / b64 / s128)")
    width, _, patch, _ = sd["encoder.patch_embed.weight"].shape
    dwidth = sd["decoder.decoder_embed.weight"].shape[0]
    if dwidth != width:
        raise UserError(f"{source}: encoder width {width} and decoder width {dwidth} differ: not supported")
    grid = math.isqrt(sd["encoder.positional_embedding"].shape[0] - 1)
    enc_depth, dec_depth = _count(sd, "encoder.transformer."), _count(sd, "decoder.transformer.")
    levels = _count(px, "pixel_decoder.up.")
    outs = [px[f"pixel_decoder.up.{i}.block.0.conv1.weight"].shape[0] for i in range(levels)
            if f"pixel_decoder.up.{i}.block.0.conv1.weight" in px]
    if not levels or len(outs) != levels or "pixel_decoder.conv_in.weight" not in px:
        raise UserError(f"{source}: no complete MaskGIT-VQGAN pixel decoder (pixel_decoder.*); pass the stage-2 "
                        "release or --pixel-decoder maskgit-vqgan-imagenet-f16-256.bin")
    hidden = outs[0]
    if any(o % hidden for o in outs):
        raise UserError(f"{source}: pixel decoder levels of {outs} channels are not multiples of the first")
    return {"image_size": grid * patch, "patch_size": int(patch), "width": int(width), "enc_depth": enc_depth,
            "dec_depth": dec_depth, "n_tokens": int(sd["latent_tokens"].shape[0]),
            "latent_dim": int(sd["encoder.conv_out.weight"].shape[0]),
            "codebook_size": int(sd["quantize.embedding.weight"].shape[0]),
            "heads": VIT_SIZES.get(int(width), (None, None, None))[2],
            "pixel": {"hidden": int(hidden), "channel_mult": [o // hidden for o in outs],
                      "res_blocks": _count(px, "pixel_decoder.up.0.block."),
                      "z_channels": int(px["pixel_decoder.conv_in.weight"].shape[1]),
                      "codes": int(px["pixel_quantize.embedding.weight"].shape[0])
                      if "pixel_quantize.embedding.weight" in px else None}}


def check_official_config(off: dict, sizes: dict, family: str) -> None:
    """Upstream's config values against the weights: one line naming the first disagreement."""
    if not off:
        return
    vq, crop = off["model"]["vq_model"], ((off.get("dataset") or {}).get("preprocessing") or {}).get("crop_size")
    unsupported = [("finetune_decoder", True, "only the stage-2 release (MaskGIT-VQGAN pixel decoder) is supported"),
                   ("use_l2_norm", True, "only the L2-normalised VQ releases are supported"),
                   ("is_legacy", True, "only the legacy-decoder releases are supported"),
                   ("quantize_mode", "vq", "only the VQ releases are supported (not VAE)")]
    for key, value, why in unsupported:
        if vq.get(key, value) != value:
            raise UserError(f"--official-config: model.vq_model.{key} is {vq[key]!r}: {why}")
    agree = [("num_latent_tokens", sizes["n_tokens"]), ("token_size", sizes["latent_dim"]),
             ("codebook_size", sizes["codebook_size"]), ("vit_enc_patch_size", sizes["patch_size"]),
             ("vit_dec_patch_size", sizes["patch_size"])]
    for key, value in agree:
        if key in vq and vq[key] != value:
            raise UserError(f"--official-config: model.vq_model.{key} is {vq[key]!r} but the weights have {value!r}; "
                            "pass the config.json of these weights")
    if crop is not None and crop != sizes["image_size"]:
        raise UserError(f"--official-config: dataset.preprocessing.crop_size is {crop!r} but the weights are for "
                        f"{sizes['image_size']} px; pass the config.json of these weights")
    for part, depth in (("vit_enc_model_size", sizes["enc_depth"]), ("vit_dec_model_size", sizes["dec_depth"])):
        name = vq.get(part)
        table = {v[0]: (w, v[1]) for w, v in VIT_SIZES.items()}
        if name is not None and table.get(name) != (sizes["width"], depth):
            raise UserError(f"--official-config: model.vq_model.{part} is {name!r} but the weights are width "
                            f"{sizes['width']}, {depth} blocks; pass the config.json of these weights")
    if family == "titok" and vq.get("strict_length_assertion") is False:
        raise UserError("--official-config: strict_length_assertion is False, a One-D-Piece config; use "
                        "`vltbench import one-d-piece`")


def tokenizer_state(sd: dict, px: dict, tok, source: str, px_source: str, skip_pixel_encoder: bool):
    """(vltbench TiTokTokenizer state dict, skipped keys with why)."""
    what = "not a key of the released TiTok-family tokenizer"
    keys = Keys(sd, source, what)
    pkeys = keys if px is sd else Keys(px, px_source, what)
    if skip_pixel_encoder:
        pkeys.skip(("encoder.",), "the MaskGIT-VQGAN encoder: decoding does not use it")
    own = tok.state_dict()
    g2 = tok.grid ** 2
    new = {}

    def take(k, dst):
        new[dst] = keys.take(k, own[dst].shape)

    new["patch_embed.proj.weight"] = keys.take("encoder.patch_embed.weight", own["patch_embed.proj.weight"].shape)
    take("encoder.patch_embed.bias", "patch_embed.proj.bias")
    w = tok.width
    for part, pre in (("encoder", "enc"), ("decoder", "dec")):
        pos = keys.take(f"{part}.positional_embedding", (g2 + 1, w))
        new[f"{pre}_prefix"] = (keys.take(f"{part}.class_embedding", (1, w)) + pos[:1])[None]
        if part == "encoder":
            new["enc_pos"] = pos[None, 1:]
        else:
            new["mask_tokens"] = keys.take("decoder.mask_token", (1, 1, w)) + pos[None, 1:]
        for ln, ours in (("ln_pre", f"{pre}_ln_pre"), ("ln_post", f"{pre}_norm")):
            take(f"{part}.{ln}.weight", f"{ours}.weight")
            take(f"{part}.{ln}.bias", f"{ours}.bias")
        for i in range(len(getattr(tok, part))):
            for theirs, ours in BLOCK_NAMES:
                take(f"{part}.transformer.{i}.{theirs}", f"{part}.{i}.{ours}")
    n = tok.n_tokens
    new["latent_tokens"] = (keys.take("latent_tokens", (n, w))
                            + keys.take("encoder.latent_token_positional_embedding", (n, w)))[None]
    new["to_latent.weight"] = keys.take("encoder.conv_out.weight", (tok.latent_dim, w, 1, 1))[:, :, 0, 0]
    take("encoder.conv_out.bias", "to_latent.bias")
    take("quantize.embedding.weight", "codebook")
    take("decoder.decoder_embed.weight", "from_latent.weight")
    take("decoder.decoder_embed.bias", "from_latent.bias")
    new["dec_latent_pos"] = keys.take("decoder.latent_token_positional_embedding", (n, w))[None]
    for i in (0, 2):
        shape = own[f"to_codes.{i}.weight"].shape
        new[f"to_codes.{i}.weight"] = keys.take(f"decoder.ffn.{i}.weight", (*shape, 1, 1))[:, :, 0, 0]
        take(f"decoder.ffn.{i}.bias", f"to_codes.{i}.bias")
    # --pixel-decoder's decoder.* / quantize.* were renamed pixel_decoder.* / pixel_quantize.* on reading
    new["pixel_codebook"] = pkeys.take("pixel_quantize.embedding.weight", own["pixel_codebook"].shape)
    for k in own:
        if k.startswith("pixel_decoder."):
            new[k] = pkeys.take(k, own[k].shape)
    keys.finish()
    if pkeys is not keys:
        pkeys.finish()
    missing = sorted(set(own) - set(new))
    if missing:  # a mapping bug: the vltbench module has a part the official one does not
        raise AssertionError(f"unmapped {missing[0]}")
    return new, {**keys.skipped, **(pkeys.skipped if pkeys is not keys else {})}


def import_titok(family: str, weights: str | Path, out: str | Path, *, pixel_decoder: str | Path | None = None,
                 official_config: str | Path | None = None, preset: str = PRESET, config: str | Path | None = None,
                 overrides: dict | None = None) -> Path:
    """Convert a released One-D-Piece / TiTok tokenizer into one vltbench checkpoint at `out`; returns its path."""
    from vltbench.core.config import load_config

    from .bundle import build_bundle, save_bundle
    from .imported import describe_imported

    if family not in FAMILIES:
        raise UserError(f"unknown TiTok family {family!r}; choose one of {', '.join(FAMILIES)}")
    fam = FAMILIES[family]
    sd = load_weights(weights, "--weights")
    px, px_source = sd, f"--weights {Path(weights).name}"
    if pixel_decoder is not None:
        if any(k.startswith(("pixel_decoder.", "pixel_quantize.")) for k in sd):
            raise UserError(f"--pixel-decoder: {Path(weights).name} already holds its fine-tuned pixel decoder "
                            "(pixel_decoder.*); leave --pixel-decoder out")
        raw = load_weights(pixel_decoder, "--pixel-decoder")
        px = {("pixel_" + k if k.startswith(("decoder.", "quantize.")) else k): v for k, v in raw.items()}
        px_source = f"--pixel-decoder {Path(pixel_decoder).name}"
    source = f"--weights {Path(weights).name}"
    sizes = sizes_from_weights(sd, px, source)
    off = read_official_config(official_config)
    check_official_config(off, sizes, family)
    if not fam["any_prefix"] and off.get("model", {}).get("vq_model", {}).get("strict_length_assertion") is False:
        raise UserError("--official-config is a One-D-Piece config; use `vltbench import one-d-piece`")
    user = dict(overrides or {})
    derived = {"data.image_size": sizes["image_size"], "tokenizer.patch_size": sizes["patch_size"],
               "tokenizer.n_tokens": sizes["n_tokens"], "tokenizer.latent_dim": sizes["latent_dim"],
               "tokenizer.width": sizes["width"], "tokenizer.enc_depth": sizes["enc_depth"],
               "tokenizer.dec_depth": sizes["dec_depth"], "tokenizer.titok.codebook_size": sizes["codebook_size"],
               "tokenizer.titok.pixel.hidden": sizes["pixel"]["hidden"],
               "tokenizer.titok.pixel.channel_mult": sizes["pixel"]["channel_mult"],
               "tokenizer.titok.pixel.res_blocks": sizes["pixel"]["res_blocks"],
               "tokenizer.titok.pixel.z_channels": sizes["pixel"]["z_channels"]}
    if sizes["pixel"]["codes"] is not None:
        derived["tokenizer.titok.pixel.codes"] = sizes["pixel"]["codes"]
    if sizes["heads"] is not None:
        derived["tokenizer.heads"] = sizes["heads"]
    for key, value in derived.items():
        if key in user and user[key] != value:
            raise UserError(f"--set {key}={user[key]} disagrees with the weights ({value}); leave it out")
    n = sizes["n_tokens"]
    if not fam["any_prefix"]:  # one fixed K per checkpoint: the decoder was trained at K = N only
        derived.update({"lengths.train": [n], "lengths.probs": [1.0], "lengths.dit_cycle": [n]})
    cfg = load_config(preset, config, {**derived, **user})
    t = cfg.tokenizer
    if t.arch != "titok":
        raise UserError(f"the release needs tokenizer.arch: titok (got {t.arch!r}); use --preset {PRESET}")
    if sizes["heads"] is None and t.width % t.heads:
        raise UserError(f"width {t.width} is not upstream's small / base / large and tokenizer.heads={t.heads} does not "
                        "divide it; set tokenizer.heads (--set)")
    if fam["any_prefix"] is False and any(k != n for k in cfg.lengths.train):
        raise UserError(f"a TiTok checkpoint decodes only K = {n}; lengths.train must be [{n}]")
    bundle = build_bundle(cfg, METHOD, 1000)
    state, skipped = tokenizer_state(sd, px, bundle.tokenizer, source, px_source, pixel_decoder is not None)
    with torch.no_grad():
        bundle.tokenizer.load_state_dict(state)
    bundle.stages = ["tokenizer"]
    origin = {"kind": fam["kind"], "source": fam["source"], "command": f"vltbench import {family}",
              "tokenizer": {"file": Path(weights).name, "sha256": sha256_file(weights), "weights": "released"},
              "pixel_decoder": ({"file": Path(pixel_decoder).name, "sha256": sha256_file(pixel_decoder),
                                 "weights": "MaskGIT-VQGAN"} if pixel_decoder is not None else None),
              "official_config": ({"file": Path(official_config).name, "sha256": sha256_file(official_config),
                                   "values": off} if official_config is not None else None),
              "sizes": sizes, "legacy_reshape": t.titok.legacy_reshape,
              "encoder_start": "trained upstream (TiTok two-stage recipe)",
              "decodes": "any prefix K in 1..N" if fam["any_prefix"] else f"K = {n} only",
              "skipped": {"count": len(skipped), "why": sorted(set(skipped.values()))}}
    describe_imported(bundle, origin)
    save_bundle(bundle, out)
    write_companion_config(config_path(out), cfg.preset, config, {**derived, **user}, origin["kind"])
    return Path(out)


def config_path(out: str | Path) -> Path:
    """The configuration file written beside an imported checkpoint (evaluate / train with --config it)."""
    return Path(out).with_suffix(".yaml")


def write_companion_config(path: Path, preset: str, user_config: str | Path | None, overrides: dict, kind: str) -> None:
    """The sizes the weights gave (and --config / --set) as one YAML over the preset: what `vltbench eval` and
    `vltbench train` need to load the checkpoint (its identity hashes the configuration)."""
    import yaml

    from vltbench.core.config import _read_yaml, _set_dotted, deep_merge

    data = _read_yaml(Path(user_config).read_text(), str(user_config)) if user_config is not None else {}
    for key, value in overrides.items():
        if value is not None:
            _set_dotted(data, key, value)
    data = deep_merge({}, data)
    head = (f"# written by the import of the {kind}: use it as --preset {preset} --config {path.name}\n"
            "# (the sizes come from the weights; edit only evaluation settings)\n")
    path.write_text(head + yaml.safe_dump(data, sort_keys=True))
