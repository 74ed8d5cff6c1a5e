"""A method's model bundle: tokenizer + method module + latent statistics + DiT(s), and its checkpoint.

Checkpoints are single safetensors files (no pickle: untrusted files cannot run code) with JSON
metadata: format, method, N, the resolved training config and which stages are trained. The
checkpoint hash (sha256 of the file) identifies the model in result records.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from vltbench.core import registry
from vltbench.core.atomic import atomic_path
from vltbench.core.config import Config, validate_options
from vltbench.core.errors import UserError
from vltbench.core.hashing import hash_obj, sha256_file

from . import method_code, shipped
from .dit import DiT
from .imported import describe_imported, dit_trained_here
from .method import Method
from .method_code import describe as describe_code
from .method_code import identity_part
from .pretrained import INIT_FROM, encoder_start_text, weights_sha256
from .tokenizer import Tokenizer

FORMAT = "vltbench-checkpoint/1"
# Bumped whenever the training code changes what a config trains to, so a checkpoint trained by older
# code is never taken for this one. 2: loss weight m_j K / sum(m) (was m_j K / N, which down-weighted
# short prefixes by K / N); merge exploration noise asymmetric as upstream; merge blocks default 1.
TRAINING_RECIPE = 2


# Options added after checkpoints were shipped: left out of the identity while they hold these
# defaults (what older code did), so the shipped checkpoints still match; any other value is hashed.
IDENTITY_DEFAULTS = {
    "tokenizer": {"arch": "vit", "warm_start": 0, "prefix_token": False, "norm_eps": None, "pixel_order": "cpq", "refine": 0,
                  "quantizer": {"kind": "none", "codebooks": 4, "codebook_size": 8192, "temperature": 0.07},
                  "titok": {"codebook_size": 4096, "legacy_reshape": True,
                            "pixel": {"hidden": 128, "channel_mult": [1, 1, 2, 2, 4], "res_blocks": 2,
                                      "z_channels": 256, "codes": 1024}},
                  "encoder_init": {"model": None, "weights": None}, "init_from": None,
                  "betas": [0.9, 0.99], "lr_schedule": "cosine",
                  "losses": {"perceptual": {"model": None, "weights": None, "weight": 0.0, "start": 0},
                             "adversarial": {"weight": 0.0, "start": 0, "channels": 64, "layers": 3, "lr": None},
                             "repa": {"model": None, "weights": None, "weight": 0.0, "proj_dim": None}}},
    "dit": {"arch": "dit", "betas": [0.9, 0.99], "lr_schedule": "cosine", "norm_eps": None},
    "lengths": {"dit_cycle": None},
}


def training_identity(cfg: Config, method: str, num_classes: int, code: dict | bool = True,
                      imported: bool = False) -> dict:
    """What determines the trained weights (eval and sampler settings do not): the config and the
    method's code (vltbench.models.method_code; `code`: True = the installed code, a fingerprint = that
    code, False = leave it out, as the shipped checkpoints' identity was hashed before it existed).
    imported: a model trained elsewhere (`vltbench import lgm`): the data it is evaluated on did not
    train it, so only the dataset's kind and image size are part of it, not its folder or counts."""
    r = cfg.resolved(method)
    if imported:
        r["data"] = {"name": r["data"]["name"], "image_size": r["data"]["image_size"]}
    for section, defaults in IDENTITY_DEFAULTS.items():
        for key, value in defaults.items():
            if r[section].get(key) == value:
                r[section].pop(key)
    if (init := r["tokenizer"].get("encoder_init")) is not None:  # the file's content, not its path
        r["tokenizer"]["encoder_init"] = {"model": init["model"], "sha256": weights_sha256(init["weights"])}
    if (start := r["tokenizer"].get("init_from")) is not None:
        r["tokenizer"]["init_from"] = {"sha256": weights_sha256(start, INIT_FROM)}
    ident = {"method": method, "data": r["data"], "tokenizer": r["tokenizer"], "dit": r["dit"],
             "lengths": r["lengths"], "options": r["methods"][method], "seed": r["seed"],
             "generator": r["generator"], "num_classes": num_classes, "recipe": TRAINING_RECIPE}
    if code is not False:
        ident["method_code"] = identity_part(method_code.code(method) if code is True else code)
    return ident


def bundle_identity(cfg: Config, method: str, num_classes: int, origin: dict | None, code: dict | bool = True) -> dict:
    """The training identity of a bundle of this origin. Trained by vltbench: the config's. Imported whole
    (LGM): without the data folder and counts (they trained nothing). An imported tokenizer with a DiT
    vltbench trained on it: the config's (the data trained the DiT) plus the tokenizer checkpoint's sha256,
    the weights its latents came from, which no config value determines."""
    if dit_trained_here(origin):
        ident = training_identity(cfg, method, num_classes, code=code)
        ident["tokenizer_checkpoint"] = origin["dit"]["tokenizer_checkpoint"]["sha256"]
        return ident
    return training_identity(cfg, method, num_classes, code=code, imported=origin is not None)


@dataclass
class Bundle:
    cfg: Config
    method_name: str
    num_classes: int
    tokenizer: Tokenizer
    method: Method
    dits: dict[str, DiT] = field(default_factory=dict)  # "joint" or str(K) for separate
    latent_mean: torch.Tensor | None = None  # (d,) per-channel standardisation of latents
    latent_std: torch.Tensor | None = None
    stages: list[str] = field(default_factory=list)  # "tokenizer", "dit"
    # where an imported model comes from (vltbench/models/official_lgm.py); None: trained by vltbench
    origin: dict | None = None

    @property
    def n_tokens(self) -> int:
        return self.cfg.tokenizer.n_tokens

    @property
    def identity(self) -> dict:
        return bundle_identity(self.cfg, self.method_name, self.num_classes, self.origin)

    def to(self, device) -> "Bundle":
        self.tokenizer.to(device)
        self.method.to(device)
        for d in self.dits.values():
            d.to(device)
        if self.latent_mean is not None:
            self.latent_mean, self.latent_std = self.latent_mean.to(device), self.latent_std.to(device)
        return self

    def dit_for(self, k: int) -> DiT:
        key = "joint" if self.cfg.generator == "joint" else str(k)
        if key not in self.dits:
            raise UserError(f"no DiT trained for length {k} (generator={self.cfg.generator}, have {sorted(self.dits)}); "
                            f"train it with `vltbench train --method {self.method_name} --lengths {k}`")
        return self.dits[key]

    def new_dit(self) -> DiT:
        c = self.cfg
        return DiT(c.tokenizer.n_tokens, c.tokenizer.latent_dim, c.dit.width, c.dit.depth, c.dit.heads, self.num_classes,
                   arch=c.dit.arch, norm_eps=c.dit.norm_eps)

    # latents are standardised per channel for the DiT; merging commutes with it (columns of P sum to 1)
    def standardise(self, z: torch.Tensor) -> torch.Tensor:
        return (z - self.latent_mean) / self.latent_std

    def destandardise(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.latent_std + self.latent_mean


def build_bundle(cfg: Config, method_name: str, num_classes: int) -> Bundle:
    cls = registry.get(method_name)
    options = validate_options(cls.Options, cfg.method_options(method_name), method_name)
    t = cfg.tokenizer
    # A method may draw parameters in __init__ (merge's position embedding): seeded too, or the
    # trained weights (and the checkpoint hash in every record) would change from process to process.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed + 1)
        method = cls(t.n_tokens, t.latent_dim, options, cfg.lengths.train, cfg.lengths.probs)
    method.tokenizer_schedule = cfg.lengths.tokenizer_schedule
    method.warm_start = (t.warm_start, t.steps)
    method.encoder_start = encoder_start_text(t)
    if t.ema is not None:
        method.tokenizer_weights = f"EMA weights (decay {t.ema})"
    torch.manual_seed(cfg.seed)
    q = t.quantizer
    if t.arch == "titok":
        from .titok import TiTokTokenizer
        if method.tokenizer_kwargs():
            raise UserError(f"method {method_name} changes the tokenizer ({method.tokenizer_kwargs()}); the TiTok-family "
                            "tokenizer is imported as it was released: use method tail-drop")
        if t.refine:
            raise UserError("tokenizer.refine is an option of the vit / timm tokenizers; the TiTok-family tokenizer "
                            "is imported as it was released: drop --set tokenizer.refine")
        tok = TiTokTokenizer(cfg.data.image_size, t.patch_size, t.n_tokens, t.latent_dim, t.width, t.enc_depth,
                             t.dec_depth, t.heads, codebook_size=t.titok.codebook_size,
                             legacy_reshape=t.titok.legacy_reshape, norm_eps=t.norm_eps,
                             pixel=t.titok.pixel.model_dump())
        return Bundle(cfg, method_name, num_classes, tok, method)
    tok = Tokenizer(cfg.data.image_size, t.patch_size, t.n_tokens, t.latent_dim, t.width, t.enc_depth,
                    t.dec_depth, t.heads, arch=t.arch, prefix_token=t.prefix_token, quantizer=q.kind,
                    codebooks=q.codebooks, codebook_size=q.codebook_size, temperature=q.temperature,
                    norm_eps=t.norm_eps, pixel_order=t.pixel_order, refine=t.refine, **method.tokenizer_kwargs())
    return Bundle(cfg, method_name, num_classes, tok, method)


def save_bundle(bundle: Bundle, path: str | Path, dtype: torch.dtype = torch.float32) -> str:
    """Write the checkpoint atomically; returns its sha256."""
    tensors = {}
    for prefix, module in [("tokenizer", bundle.tokenizer), ("method", bundle.method)]:
        for k, v in module.state_dict().items():
            tensors[f"{prefix}.{k}"] = v
    for key, dit in bundle.dits.items():
        for k, v in dit.state_dict().items():
            tensors[f"dit.{key}.{k}"] = v
    if bundle.latent_mean is not None:
        tensors["stats.mean"], tensors["stats.std"] = bundle.latent_mean, bundle.latent_std
    tensors = {k: (v.to(dtype) if v.is_floating_point() else v).detach().cpu().contiguous() for k, v in tensors.items()}
    meta = {"format": FORMAT, "method": bundle.method_name, "n_tokens": str(bundle.n_tokens),
            "preset": bundle.cfg.preset, "config": json.dumps(bundle.cfg.resolved(bundle.method_name)),
            "identity": hash_obj(bundle.identity), "num_classes": str(bundle.num_classes),
            "method_code": json.dumps(method_code.code(bundle.method_name), sort_keys=True),
            "stages": ",".join(bundle.stages), "dits": ",".join(sorted(bundle.dits))}
    if bundle.origin is not None:
        meta["origin"] = json.dumps(bundle.origin, sort_keys=True)
    try:
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata=meta)
            _canonical_header(tmp)
    except OSError as e:  # disk full, read-only folder: the previous file (if any) is left as it was
        raise UserError(f"checkpoint {path} could not be written ({e.strerror or e}); free space or "
                        "choose another path (--out)") from None
    except SafetensorError as e:
        raise UserError(f"checkpoint {path} could not be written ({e}); free space or choose another path (--out)") from None
    return sha256_file(path)


def _canonical_header(path: str | Path) -> None:
    """Make the file a function of its content: safetensors writes the metadata map in a random (hash)
    order, so two saves of the same weights would differ in bytes and sha256, which names the model
    in result records (cell ids). Rewrite the header JSON with sorted keys: in place when it fits
    (it does: same JSON, other order), padded with spaces as safetensors pads it."""
    with open(path, "r+b") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        if len(text) <= n:
            f.seek(8)
            f.write(text + b" " * (n - len(text)))
            return
        rest = f.read()  # not expected: a longer header moves the data
        text += b" " * (-len(text) % 8)
        f.seek(0)
        f.write(struct.pack("<Q", len(text)) + text + rest)
        f.truncate()


def _not_safetensors(path: str | Path) -> str | None:
    """What the file is instead, when its first bytes give it away (we never unpickle anything)."""
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError:
        return None
    if head[8:9] == b"{":  # a safetensors header (8-byte length, then JSON), however damaged
        return None
    if head.startswith(b"PK\x03\x04"):
        return "a zip archive (torch.save / TorchScript format, which can run code when loaded)"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "a Python pickle (which can run code when loaded)"
    return None


def read_metadata(path: str | Path) -> dict:
    from safetensors import safe_open

    if Path(path).is_dir():
        raise UserError(f"checkpoint {path} is a folder; pass the checkpoint file (.safetensors) inside it")
    if not Path(path).is_file():
        raise UserError(f"checkpoint {path} does not exist; pass an existing file or train one with `vltbench train`")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        if (what := _not_safetensors(path)) is not None:
            raise UserError(f"checkpoint {path} is {what}, not a safetensors file; vltbench loads only safetensors "
                            "checkpoints written by `vltbench train` and never unpickles files") from None
        raise UserError(f"checkpoint {path} is unreadable or truncated ({e}); delete it and retrain, or pass another") from None
    if meta.get("format") != FORMAT:
        raise UserError(f"{path} is not a vltbench checkpoint (format {meta.get('format')!r}); pass a file written by vltbench")
    return meta


def recorded_code(meta: dict, sha: str | None) -> dict | None:
    """The method code a checkpoint was trained with: its metadata's, or for a shipped checkpoint
    written before checkpoints recorded it, its manifest's (bound to the file by its sha256)."""
    if "method_code" in meta:
        try:
            return json.loads(meta["method_code"])
        except json.JSONDecodeError:
            return {}
    if sha is None:
        return None
    entry = shipped.entry_by_sha(sha)
    return entry.get("method_code") if entry else None


def stale_error(path, method_name: str, recorded: dict | None, hint: str | None) -> UserError:
    what = "another version of its code" if recorded is not None else "code it did not record"
    todo = hint or f"`vltbench train --method {method_name}` with the options it was trained with"
    return UserError(f"checkpoint {path} is stale: {method_name} was trained with {what} "
                     f"({describe_code(recorded)}), the installed code is {describe_code(method_code.code(method_name))}; "
                     f"retrain it: run {todo}, or install the code it was trained with")


def load_bundle(path: str | Path, cfg: Config, method_name: str, num_classes: int,
                expected_sha: str | None = None, hint: str | None = None) -> Bundle:
    """Load a checkpoint for (method, config); any mismatch is a one-line error naming both sides.
    A checkpoint that records other method code than the installed one is stale (`hint`: the command
    that retrains it, for the message)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist; train one with `vltbench train --method {method_name}`")
    if expected_sha is not None and (sha := sha256_file(path)) != expected_sha:
        # first: a changed file's metadata is not to be trusted either
        raise UserError(f"checkpoint {path} fails its recorded hash ({sha[:12]} != {expected_sha[:12]}); it is corrupt or was changed")
    meta = read_metadata(path)
    missing = [k for k in ("method", "n_tokens", "identity") if k not in meta]
    if missing or not str(meta.get("n_tokens", "")).isdigit():
        raise UserError(f"checkpoint {path} has incomplete metadata (missing or bad: {', '.join(missing) or 'n_tokens'}); "
                        "pass a checkpoint written by `vltbench train`")
    if meta["method"] != method_name:
        raise UserError(f"checkpoint {path} is for method {meta['method']!r}, not {method_name!r}; pass the right checkpoint")
    if int(meta["n_tokens"]) != cfg.tokenizer.n_tokens:
        raise UserError(f"checkpoint {path} has N={meta['n_tokens']} tokens but the config has "
                        f"tokenizer.n_tokens={cfg.tokenizer.n_tokens}; use the matching preset/config")
    try:
        origin = json.loads(meta["origin"]) if "origin" in meta else None
    except json.JSONDecodeError:
        raise UserError(f"checkpoint {path} has unreadable origin metadata; import it again") from None
    recorded = recorded_code(meta, expected_sha or (None if "method_code" in meta else sha256_file(path)))
    if recorded is not None and identity_part(recorded) != identity_part(method_code.code(method_name)):
        raise stale_error(path, method_name, recorded, hint)
    if recorded is None:
        from vltbench.core import progress
        progress.log(f"{method_name}: checkpoint {path} records no method code (written by an older vltbench); "
                     "loading it as given")
    # metadata without method_code: written before checkpoints recorded it (its identity left it out)
    want = hash_obj(bundle_identity(cfg, method_name, num_classes, origin, code="method_code" in meta))
    if meta["identity"] != want:
        raise UserError(f"checkpoint {path} was trained with another config (identity {meta['identity']} vs {want}); "
                        f"retrain with `vltbench train` or use the config it was trained with")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise UserError(f"checkpoint {path} is unreadable or truncated ({e}); delete it and retrain") from None
    bundle = build_bundle(cfg, method_name, num_classes)
    if origin is not None:
        describe_imported(bundle, origin)
    tensors = {k: (v.float() if v.is_floating_point() else v) for k, v in tensors.items()}

    def part(prefix):
        return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}

    try:
        bundle.tokenizer.load_state_dict(part("tokenizer."))
        bundle.method.load_state_dict(part("method."))
        for key in filter(None, meta.get("dits", "").split(",")):
            dit = bundle.new_dit()
            dit.load_state_dict(part(f"dit.{key}."))
            bundle.dits[key] = dit.eval().requires_grad_(False)
        if "stats.mean" in tensors:
            bundle.latent_mean, bundle.latent_std = tensors["stats.mean"], tensors["stats.std"]
        if hasattr(bundle.method, "check_table"):
            bundle.method.check_table()
    except (RuntimeError, ValueError) as e:
        first = str(e).strip().splitlines()[0]
        raise UserError(f"checkpoint {path} does not match method {method_name} with this config: {first}") from None
    bundle.stages = [s for s in meta.get("stages", "").split(",") if s]
    bundle.tokenizer.eval()
    bundle.method.eval()
    return bundle
