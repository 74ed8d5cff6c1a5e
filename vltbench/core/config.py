"""Typed configuration: YAML presets in vltbench/configs/, an optional user file, then CLI overrides.

Every mistake (unparsable YAML, unknown key, wrong type, missing value) is a one-line UserError
that names the file and the dotted key.
"""

from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from . import defaults
from .errors import UserError

DIT_SIZES = {  # depth, width, heads — as in the DiT paper (Peebles & Xie, 2023)
    "S": (12, 384, 6),
    "B": (12, 768, 12),
    "L": (24, 1024, 16),
    "XL": (28, 1152, 16),
}


SEED_MAX = 2**32 - 1  # numpy's and torch's generators take 32-bit seeds (KID's subsets use numpy's)


def _seed(v: int) -> int:
    if not 0 <= v <= SEED_MAX:
        raise ValueError(f"{v} is outside 0..{SEED_MAX} (seeds are 32-bit)")
    return v


Seed = Annotated[int, AfterValidator(_seed)]


class Strict(BaseModel):
    # allow_inf_nan=False: a NaN or inf anywhere (YAML .nan, --set x=nan, an API float) is refused
    # here, before any work, instead of running a whole cell and failing when its record is written.
    model_config = ConfigDict(extra="forbid", frozen=False, allow_inf_nan=False)


def _dataset(v: str) -> str:
    from . import registry

    if v not in registry.datasets:  # a registered dataset (vltbench.data.catalog, plugins)
        raise PydanticCustomError("unknown_dataset", str(registry.datasets.unknown(v)))
    return v


class DataCfg(Strict):
    name: Annotated[str, AfterValidator(_dataset)] = "embedded"
    root: str | None = None
    image_size: int = 32
    train_count: int | None = None
    val_count: int | None = None
    flip: bool = True
    seed: Seed = 0


def _betas(v):
    if len(v) != 2 or not all(0 <= b < 1 for b in v):
        raise ValueError("betas must be two numbers in [0, 1), e.g. [0.9, 0.95]")
    return tuple(v)


class NetworkCfg(Strict):
    """A pretrained network that a tokenizer loss uses: a timm architecture name and a local weights
    file (safetensors, or a torch file loaded with weights_only=True). Nothing is downloaded."""
    model: str | None = None
    weights: str | None = None


class PerceptualLossCfg(NetworkCfg):
    # LPIPS-style: unit-normalised feature differences of a frozen local CNN (timm features_only),
    # averaged over its stages (with LPIPS's learned linear heads when the file has lin.<i>.weight).
    weight: float = Field(0.0, ge=0)
    start: int = Field(0, ge=0)  # step from which it counts (upstream: perceptual_warmup)


class AdversarialLossCfg(Strict):
    # A PatchGAN discriminator trained from scratch with the hinge loss, from step `start` on.
    weight: float = Field(0.0, ge=0)
    start: int = Field(0, ge=0)
    channels: int = Field(64, ge=1)
    layers: int = Field(3, ge=1)
    lr: float | None = Field(None, gt=0)  # None: the tokenizer's lr


class RepaLossCfg(NetworkCfg):
    # REPA-style: negative cosine between an MLP projection of the encoder's patch features and the
    # patch features of a frozen local ViT (timm), resampled to the tokenizer's patch grid.
    weight: float = Field(0.0, ge=0)
    proj_dim: int | None = Field(None, ge=1)  # hidden width of the projector; None: the tokenizer width


class TokenizerLossesCfg(Strict):
    """Auxiliary tokenizer losses on top of the MSE reconstruction (all off by default)."""
    perceptual: PerceptualLossCfg = PerceptualLossCfg()
    adversarial: AdversarialLossCfg = AdversarialLossCfg()
    repa: RepaLossCfg = RepaLossCfg()

    @model_validator(mode="after")
    def _nets(self):
        for name in ("perceptual", "repa"):
            c = getattr(self, name)
            if c.weight > 0 and (not c.model or not c.weights):
                raise ValueError(f"{name} has weight {c.weight} but no model / weights; give both "
                                 f"tokenizer.losses.{name}.model (a timm architecture) and "
                                 f"tokenizer.losses.{name}.weights (a local file), or set its weight to 0")
        return self


class QuantizerCfg(Strict):
    """none: the L2-normalised latents go to the decoder as they are. softvq: upstream LGM's SoftVQ after
    the L2 normalisation: `codebooks` contiguous segments of positions, one L2-normalised codebook of
    `codebook_size` entries each, z_q = softmax(z . E / temperature) . E (vltbench/models/tokenizer.py)."""
    kind: Literal["none", "softvq"] = "none"
    codebooks: int = Field(4, ge=1)
    codebook_size: int = Field(8192, ge=1)
    temperature: float = Field(0.07, gt=0)


class TiTokPixelCfg(Strict):
    """The MaskGIT-VQGAN pixel decoder of the TiTok family (upstream's fixed sizes by default)."""
    hidden: int = Field(128, ge=32)
    channel_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    res_blocks: int = Field(2, ge=1)
    z_channels: int = Field(256, ge=1)
    codes: int = Field(1024, ge=1)


class TiTokCfg(Strict):
    """arch titok only (vltbench/models/titok.py; `vltbench import titok` / `import one-d-piece` set it):
    the VQ codebook, the released weights' legacy reshape before the encoder's 1x1 conv, the pixel decoder."""
    codebook_size: int = Field(4096, ge=1)
    legacy_reshape: bool = True
    pixel: TiTokPixelCfg = TiTokPixelCfg()


class TokenizerCfg(Strict):
    # vit: vltbench's own pre-norm ViT blocks (the shipped tiny checkpoints); timm: timm's
    # vision_transformer.Block and PatchEmbed (qkv bias, LayerNorm eps 1e-6, exact GELU), attention
    # through vltbench's `attend` (the CPU matmul path, SDPA elsewhere). titok: the TiTok / One-D-Piece
    # release's tokenizer on timm blocks (VQ, MaskGIT-VQGAN pixel decoder; imported, not trained here).
    arch: Literal["vit", "timm", "titok"] = "vit"
    titok: TiTokCfg = TiTokCfg()
    # The official LGM tokenizer's differences (`vltbench import lgm`; README "Official checkpoints"),
    # all off by default: a prefix (cls) token in encoder and decoder, the SoftVQ quantizer, the final
    # LayerNorms' eps (None: torch's 1e-5) and the pixel head's channel order within a patch.
    prefix_token: bool = False
    quantizer: QuantizerCfg = QuantizerCfg()
    norm_eps: float | None = Field(None, gt=0)
    pixel_order: Literal["cpq", "pqc"] = "cpq"
    # Channels of a residual 3x3-conv head in pixel space after the patch head (0: none, the tiny
    # preset's and the shipped checkpoints'): lets the decoder mend patch seams and sharpen edges that a
    # per-patch linear head draws blurred (docs/own-data.md).
    refine: int = Field(0, ge=0)
    patch_size: int
    n_tokens: int
    latent_dim: int
    width: int
    enc_depth: int
    dec_depth: int
    heads: int
    steps: int
    batch_size: int
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.99)
    lr_schedule: Literal["cosine", "constant"] = "cosine"  # after the linear warm-up
    warmup: int = 100
    grad_clip: float = Field(1.0, ge=0)  # 0: no clipping
    losses: TokenizerLossesCfg = TokenizerLossesCfg()
    # EMA decay of the tokenizer (and the method's parameters, e.g. merge's table), as upstream
    # tokenizers keep one; the EMA weights become the tokenizer and merge's table is frozen from them.
    # None: no EMA, the last weights are used.
    ema: float | None = None
    # Shared warm start: the first warm_start steps train every method's tokenizer as a plain
    # autoencoder at K = N (no length mechanism), then its own mechanism runs for the remaining steps.
    # Random-init tokens start almost identical, and merge's clusters receive one gradient each, so
    # without it merge's members stay identical (docs/tiny-preset.md, "The shared warm start"). Same for all
    # methods: methods whose backbones match (same tokenizer_kwargs) reuse one cached warm stage.
    warm_start: int = Field(0, ge=0)
    # The encoder's start: a local pretrained timm ViT (model: its timm name, e.g. vit_base_patch14_dinov2
    # as upstream; weights: a local file), its blocks copied into encoder blocks 0..enc_depth-1 when a
    # tokenizer trains from scratch (vltbench/models/pretrained.py). Off (both null): random init. The
    # identity holds the file's sha256, not its path.
    encoder_init: NetworkCfg = NetworkCfg()
    # A fine-tuning stage: a finished vltbench tokenizer training state (its tokenizer.safetensors, of the
    # same method and architecture) whose tokenizer and method weights this training starts from, in place of
    # random init (no warm start). The identity holds the file's sha256, not its path.
    init_from: str | None = None
    # Save a resumable training state every N steps (0: only when the stage ends). Not part of the
    # training identity (excluded from dumps): it does not change the weights.
    ckpt_every: int = Field(500, ge=0, exclude=True)

    _check_betas = field_validator("betas")(classmethod(lambda cls, v: _betas(v)))

    @model_validator(mode="after")
    def _warm(self):
        if self.warm_start >= self.steps:
            raise ValueError(f"warm_start={self.warm_start} must be below steps={self.steps}: the length "
                             "mechanism needs steps of its own; lower tokenizer.warm_start with tokenizer.steps "
                             "(about a third of the steps, as the tiny preset) or set it to 0")
        if self.init_from and (self.warm_start or self.encoder_init.weights):
            raise ValueError("init_from starts from a trained tokenizer: set tokenizer.warm_start=0 and leave "
                             "tokenizer.encoder_init off")
        init = self.encoder_init
        if bool(init.model) != bool(init.weights):
            raise ValueError("encoder_init needs both model (a timm ViT name) and weights (a local file), or neither")
        if init.weights and self.arch != "timm":
            raise ValueError(f"encoder_init needs arch: timm (timm ViT blocks), got {self.arch!r}; set tokenizer.arch: timm")
        return self


class DiTCfg(Strict):
    # dit: the plain DiT (LayerNorm, GELU); lightning: LightningDiT-style (RMSNorm, QK-norm, SwiGLU),
    # the LGM paper's generator. Both take every length view (merged positions, proportional attention).
    arch: Literal["dit", "lightning"] = "dit"
    # lightning's RMSNorm eps; None: timm's 1e-6 (upstream uses torch.nn.RMSNorm's default, the float32
    # machine epsilon 1.1920929e-07: the lgm-official-xl preset sets it)
    norm_eps: float | None = Field(None, gt=0)
    size: Literal["S", "B", "L", "XL"] | None = None  # a published size, or depth/width/heads below
    depth: int | None = None
    width: int | None = None
    heads: int | None = None
    steps: int
    batch_size: int
    lr: float = Field(1e-4, gt=0)
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.99)
    lr_schedule: Literal["cosine", "constant"] = "cosine"  # after the linear warm-up
    warmup: int = 100
    ema: float = 0.9999
    label_dropout: float = 0.1
    grad_clip: float = Field(1.0, ge=0)  # 0: no clipping
    ckpt_every: int = Field(500, ge=0, exclude=True)  # as tokenizer.ckpt_every

    _check_betas = field_validator("betas")(classmethod(lambda cls, v: _betas(v)))

    @model_validator(mode="after")
    def _size(self):
        if self.size is not None:
            self.depth, self.width, self.heads = DIT_SIZES[self.size]
        missing = [k for k in ("depth", "width", "heads") if getattr(self, k) is None]
        if missing:
            raise ValueError(f"give dit.size or all of depth/width/heads (missing {', '.join(missing)})")
        return self


class LengthsCfg(Strict):
    train: list[int]  # the K set that the DiT (all methods) and merge's / tome's tokenizer sample from
    probs: list[float]
    # own: each method's tokenizer draws lengths as its paper does (merge: this schedule per step;
    # nested-dropout: FlexTok's keep_k per sample; tail-drop: One-D-Piece's uniform K per batch);
    # shared: every method's tokenizer draws one K per step from this schedule (ablation).
    tokenizer_schedule: Literal["own", "shared"] = "own"
    # The joint DiT's K per step: None draws from train/probs (above); a list is cycled step by step,
    # K = dit_cycle[step % len] for every method (the LGM generator recipe: 128 x4, 64 x2, 32).
    dit_cycle: list[int] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _check(self):
        if len(self.train) != len(self.probs):
            raise ValueError("lengths.train and lengths.probs must have the same number of entries")
        if abs(sum(self.probs) - 1) > 1e-6:
            raise ValueError(f"lengths.probs must sum to 1 (got {sum(self.probs):.4f})")
        return self


class SamplerCfg(Strict):
    steps: int = Field(25, ge=2)  # grid points of the Euler ODE solver (steps - 1 network evaluations)
    shift: float = Field(0.3, gt=0)  # t' = s t / (1 + (s - 1) t): s <= 0 leaves [0, 1]
    # Guidance protocol. search (default): for every (method, K) the scale is chosen from cfg_scales by
    # the Fréchet distance of select_samples samples (their own seeds) to statistics of the split that
    # is not the test reference, then evaluated once at that scale: the same budget for every method,
    # fair although per-position CFG (merge) acts as 1 + (w - 1) / m_j. fixed: cfg_scale for all.
    guidance: Literal["search", "fixed"] = "search"
    cfg_scales: list[float] = Field(default_factory=lambda: [1.0, 1.5, 2.5, 4.0], min_length=1)
    select_samples: int = Field(150, ge=2)
    # search: while the best scale is the grid's largest (or its smallest, above 1.0), add the next
    # scale beyond it (the grid's edge ratio continued; downwards never below 1.0) with the same
    # budget, at most cfg_extend of them; the record says whether the optimum was bracketed.
    cfg_extend: int = Field(4, ge=0)
    # search: grid scores every scale of cfg_scales; walk scores the middle one and its neighbours, then
    # the unscored neighbours of the best, until they are scored (fewer scales; may miss a second minimum)
    cfg_search: Literal["grid", "walk"] = "grid"
    cfg_scale: float = Field(1.5, ge=0)  # the scale of guidance: fixed
    # guidance: fixed only: a scale per K (upstream's evaluation fixes one per length); K not listed: cfg_scale
    cfg_scale_per_length: dict[int, float] | None = None
    cfg_interval: tuple[float, float] = (0.15, 1.0)

    @field_validator("cfg_interval")
    @classmethod
    def _interval(cls, v):
        if not 0 <= v[0] <= v[1] <= 1:
            raise ValueError(f"must be [low, high] with 0 <= low <= high <= 1 (times of the flow), got {list(v)}")
        return v

    @field_validator("cfg_scales")
    @classmethod
    def _grid(cls, v):
        if any(w < 0 for w in v) or len(set(v)) != len(v):
            raise ValueError("cfg_scales must be distinct scales >= 0 (1.0 = unguided)")
        return sorted(v)


class EvalCfg(Strict):
    # auto: mnist-cnn for mnist, inception for any other dataset (vltbench.evaluation.extractors.domains)
    extractor: str = "auto"
    backend: Literal["torch-fidelity", "clean-fid"] = "torch-fidelity"
    inception_weights: str | None = None
    n_samples: int = Field(1000, ge=1)
    n_ref: int = Field(2000, ge=1)
    # The test reference: a stratified subset of n_ref images of the val or train split, or the path of
    # an ADM reference batch (.npz with mu / sigma, e.g. VIRTUAL_imagenet256_labeled.npz).
    reference: str = "val"
    batch_size: int = Field(100, ge=1)
    kid_subset_size: int = Field(100, ge=1)
    seed: Seed = 0


class SlurmCfg(Strict):
    """Resources of each job of `--executor slurm` (submitit). Excluded from dumps: never in a record."""
    timeout_min: int = 240
    gpus_per_node: int = 0
    tasks_per_node: int = 1  # > 1: each job runs its cell distributed over these tasks (one per GPU)
    cpus_per_task: int = 8
    mem_gb: int | None = None
    array_parallelism: int = 64  # at most this many array tasks run at once
    folder: str | None = None  # submitit's job files and logs; default <results>/.submitit
    additional: dict[str, Any] = {}  # further sbatch options, e.g. {account: A, qos: Q}


class Config(Strict):
    preset: str
    seed: Seed = 0
    device: str = "auto"
    generator: Literal["joint", "separate"] = "joint"
    data: DataCfg
    tokenizer: TokenizerCfg
    dit: DiTCfg
    lengths: LengthsCfg
    sampler: SamplerCfg = SamplerCfg()
    eval: EvalCfg = EvalCfg()
    slurm: SlurmCfg = Field(default_factory=SlurmCfg, exclude=True)
    methods: dict[str, dict[str, Any]] = {}

    @field_validator("lengths")
    @classmethod
    def _lengths_le_n(cls, v, info):
        tok = info.data.get("tokenizer")
        if tok is not None and any(k < 1 or k > tok.n_tokens for k in v.train):
            raise ValueError(f"lengths.train must lie in 1..tokenizer.n_tokens={tok.n_tokens}")
        if tok is not None and v.dit_cycle and any(k < 1 or k > tok.n_tokens for k in v.dit_cycle):
            raise ValueError(f"lengths.dit_cycle must lie in 1..tokenizer.n_tokens={tok.n_tokens}")
        return v

    def method_options(self, name: str) -> dict[str, Any]:
        return dict(self.methods.get(name) or {})

    def resolved(self, method: str) -> dict[str, Any]:
        """The config one method runs with: shared sections + its own section only."""
        d = self.model_dump(mode="json")
        d["methods"] = {method: self.method_options(method)}
        return d


def preset_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("vltbench.configs").iterdir() if p.name.endswith(".yaml"))


def _read_yaml(text: str, source: str) -> dict:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise UserError(f"{source}:{where} is not valid YAML ({getattr(e, 'problem', e)}); fix the syntax") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{source}: the top level must be a mapping of sections, got {type(data).__name__}")
    return data


def _read_preset(preset: str, seen: tuple = ()) -> dict:
    """A preset may start from another one with `extends: NAME` (e.g. imagenet256-xl)."""
    data = _read_yaml(resources.files("vltbench.configs").joinpath(f"{preset}.yaml").read_text(), f"preset {preset}")
    base = data.pop("extends", None)
    if base is None:
        return data
    if base in seen or base not in preset_names():
        raise UserError(f"preset {preset}: extends {base!r}, which is not a usable preset")
    return deep_merge(_read_preset(base, seen + (preset,)), data)


def deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _set_dotted(d: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    for p in parts[:-1]:
        d = d.setdefault(p, {})
    d[parts[-1]] = value


def load_config(preset: str = defaults.PRESET, config_file: str | Path | None = None,
                overrides: dict[str, Any] | None = None, labels: dict[str, str] | None = None) -> Config:
    """Preset YAML, then the user's file on top, then CLI overrides ("section.key": value).

    labels: {"section.key": "--set section.key=VALUE"}: a bad value given there is named so in the error,
    not by the file it overrode."""
    if preset not in preset_names():
        raise UserError(f"unknown preset {preset!r}; choose one of {', '.join(preset_names())}")
    source = f"preset {preset}"
    data = _read_preset(preset)
    if config_file is not None:
        path = Path(config_file)
        if path.is_dir():
            raise UserError(f"config file {path} is a directory; pass a YAML file to --config")
        if not path.is_file():
            raise UserError(f"config file {path} does not exist; pass an existing YAML file to --config")
        source = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise UserError(f"config file {path} is not UTF-8 text (byte {e.start}): pass a YAML file to --config") from None
        data = deep_merge(data, _read_yaml(text, source))
    for key, value in (overrides or {}).items():
        if value is not None:
            _set_dotted(data, key, value)
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        given = [k for k in (labels or {}) if key == k or key.startswith(k + ".")]
        if given:
            source = labels[given[0]]
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key; remove it or fix its spelling"
        elif err["type"] == "missing":
            msg = "required value is missing"
        raise UserError(f"{source}: {key}: {msg}") from None


_STRICT: dict[type, type] = {}


def strict_model(model: type[BaseModel]) -> type[BaseModel]:
    """The options model with unknown keys forbidden, whatever its own model_config says: a misspelt
    option must never fall back silently to its default (a subclass, so instances stay `model`s)."""
    if model.model_config.get("extra") == "forbid":
        return model
    if model not in _STRICT:
        _STRICT[model] = type(model.__name__, (model,), {"model_config": {**model.model_config, "extra": "forbid"},
                                                         "__module__": model.__module__,
                                                         "__qualname__": model.__qualname__})
    return _STRICT[model]


def validate_options(model: type[BaseModel], options: dict, method: str, source: str = "config") -> BaseModel:
    """Validate a method's own section with the method's options model (plugins bring theirs), strictly."""
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise UserError(f"method {method!r}: its Options must be a pydantic BaseModel subclass, got {model!r}")
    if not isinstance(options, dict):
        raise UserError(f"{source}: methods.{method}: expected a mapping of option: value, got {options!r}")
    try:
        opts = strict_model(model).model_validate(options)
        if bad := _unknown_nested(opts, options):
            known = ", ".join(type(_field(opts, bad[:-1])).model_fields) or "none"
            raise UserError(f"{source}: methods.{method}.{'.'.join(bad)}: unknown key; remove it or fix its "
                            f"spelling (options of {method}.{'.'.join(bad[:-1])}: {known})")
        return opts
    except ValidationError as e:
        err = e.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            known = ", ".join(model.model_fields) or "none"
            msg = f"unknown key; remove it or fix its spelling (options of {method}: {known})"
        raise UserError(f"{source}: methods.{method}.{key}: {msg}") from None


def _names(model: type[BaseModel]) -> set[str]:
    return {n for name, f in model.model_fields.items() for n in (name, f.alias) if n}


def _unknown_nested(obj: BaseModel, data: dict, path: tuple = ()) -> tuple | None:
    """The path of the first key, inside a nested options model, that the model does not declare
    (the top level is strict already; a plugin's nested models may not be)."""
    for key, value in data.items():
        if key not in _names(type(obj)):
            return (*path, key) if path else None
        sub = getattr(obj, key, None)
        if isinstance(sub, BaseModel) and isinstance(value, dict):
            if found := _unknown_nested(sub, value, (*path, key)):
                return found
    return None


def _field(obj: BaseModel, path: tuple) -> BaseModel:
    for key in path:
        obj = getattr(obj, key)
    return obj


def check_method_sections(cfg: Config, registered: list[str]) -> None:
    """Every `methods.<name>` section names a registered method (else it would be ignored silently)."""
    import difflib

    for key in cfg.methods:
        if key in registered:
            continue
        spelt = [n for n in registered if n.replace("-", "_") == key.replace("-", "_")]
        close = spelt or difflib.get_close_matches(key, registered, n=1, cutoff=0.6)
        hint = (f"did you mean methods.{close[0]}?" if close else f"registered: {', '.join(registered)}")
        raise UserError(f"methods.{key}: no registered method is named {key!r}; {hint} (a section is spelt "
                        "exactly as `vltbench methods` lists the method's name, hyphens included)")
