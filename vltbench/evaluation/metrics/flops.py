"""FLOPs per image with fvcore, on the DiT convention (METHODS.md, "Conventions for reporting compute").

Convention (the one DiT's published GFLOPs use, and fvcore's):
- one fused multiply-add = one FLOP; "GFLOPs" = 1e9 of those; measured at batch size 1 (per image);
- counted: every linear / matmul / einsum (fvcore's handles, plus an exact 2-operand einsum handle
  here), layer norms (fvcore: 4 per element without affine, 5 with), and the attention matmuls,
  which fvcore does not count: handles registered here for `aten::scaled_dot_product_attention`
  (the op a torch.jit trace of our Attention shows) and the fused SDPA kernels' op names, each
  counting Q K^T (B*H*Lq*Lk*Dqk) + attn @ V (B*H*Lq*Lk*Dv) FMAs. The additive bias / bool mask
  passed as attn_mask (merge's proportional attention, the causal encoder mask) and the softmax
  are elementwise and are NOT counted, so biased and unbiased attention at equal K cost the same;
  is_causal=True is still counted as the full Lq x Lk product;
- not counted: elementwise ops (add, mul, gelu, silu, softmax, exp, ...) and embeddings; fvcore
  reports them as unsupported and they are kept in `skipped` / `skipped_ops` (op -> number of
  calls) so a reader can see what the total leaves out. Shape/view ops fvcore ignores by design
  (view, reshape, cat, ...) are not listed.

Stages (`stage_flops`):
- dit_forward_gflops: one denoiser forward per image per network evaluation at length K, through
  the method's own LengthView (merged positional embeddings P^T p — an einsum, counted — and the
  proportional-attention bias, not counted). Merging the input latents / noise (P^T z) happens
  outside the DiT and is not counted (N*K*d FMAs, negligible).
- nfe / sampling_gflops: `vltbench.models.flow.sampling_nfe` returns (network evaluations per image,
  of which CFG steps); an Euler step inside the CFG interval runs the cond and the uncond branch
  (one forward on a doubled batch), and sampling_nfe already counts it as 2 evaluations, so
  nfe = (steps - 1) + cfg_steps and sampling_gflops = dit_forward_gflops * nfe.
- encoder_gflops: tokenizer encoder, one image. decoder_gflops: tokenizer decoder, one image, on
  what the method's expand() gives at length K (tail-drop: K tokens; the others: N). The decoder
  is reported separately and never folded into sampling_gflops; expand() itself (unmerge / mask
  fill) is not counted.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from collections import Counter
from dataclasses import dataclass, field
from math import prod
from typing import Any

import torch
from torch import nn

from vltbench.core.errors import UserError

CONVENTION = ("fvcore: 1 fused multiply-add = 1 FLOP, GFLOPs = 1e9 FLOPs, per image (batch 1); attention "
              "Q K^T and attn V matmuls counted, softmax / attention bias / elementwise ops not counted "
              "(listed in skipped_ops); dit_forward_gflops per network evaluation; sampling_gflops = "
              "dit_forward_gflops x nfe with CFG evaluations counted twice; tokenizer decoder reported "
              "separately, not in sampling_gflops")

# Op names attention can take in a trace: the jit trace of F.scaled_dot_product_attention on this
# torch version shows the first; the fused kernels (dispatcher / export level) share its q, k, v
# argument order and are registered too so a trace that reaches them is counted, not skipped.
ATTENTION_OPS = (
    "aten::scaled_dot_product_attention",
    "aten::_scaled_dot_product_attention_math",
    "aten::_scaled_dot_product_flash_attention",
    "aten::_scaled_dot_product_flash_attention_for_cpu",
    "aten::_scaled_dot_product_efficient_attention",
    "aten::_scaled_dot_product_cudnn_attention",
)


@dataclass
class FlopCount:
    total: float  # FLOPs (FMAs), not GFLOPs
    by_op: dict[str, float] = field(default_factory=dict)  # fvcore's op names (e.g. "linear")
    skipped: dict[str, int] = field(default_factory=dict)  # op -> calls fvcore did not count

    @property
    def gflops(self) -> float:
        return self.total / 1e9


def _shape(val) -> list[int]:
    from fvcore.nn.jit_handles import get_shape

    s = get_shape(val)
    if s is None:
        raise RuntimeError("FLOP count: a traced tensor has no complete shape; cannot count it")
    return list(s)


def sdpa_flop_jit(inputs: list[Any], outputs: list[Any]) -> float:
    """Q K^T (B*H*Lq*Lk*Dqk) + attn @ V (B*H*Lq*Lk*Dv) FMAs; bias/mask add and softmax not counted."""
    q, k, v = (_shape(x) for x in inputs[:3])
    batch = prod(q[:-2])  # B * H (and any other leading dims)
    lq, dqk = q[-2], q[-1]
    lk, dv = k[-2], v[-1]
    return float(batch * lq * lk * (dqk + dv))


def einsum_flop_jit(inputs: list[Any], outputs: list[Any]) -> float:
    """Exact FMAs of a two-operand einsum (product of every index size, broadcast '...' included);
    other einsums fall back to fvcore's handle."""
    from fvcore.nn.jit_handles import einsum_flop_jit as fv_einsum

    equation = inputs[0].toIValue().replace(" ", "")
    operands = list(inputs[1].node().inputs())
    lhs = equation.split("->")[0].split(",")
    if len(lhs) != 2 or len(operands) != 2:
        return fv_einsum(inputs, outputs)
    sizes: dict[str, int] = {}
    ell: list[list[int]] = []
    for term, val in zip(lhs, operands):
        shape = _shape(val)
        letters = term.replace("...", "")
        n_ell = len(shape) - len(letters)
        if "..." in term:
            i = term.index("...")
            ell.append(shape[i:i + n_ell])
            shape = shape[:i] + shape[i + n_ell:]
        for c, s in zip(letters, shape):
            sizes[c] = max(sizes.get(c, 1), s)
    bshape = list(torch.broadcast_shapes(*[torch.Size(e) for e in ell])) if ell else []
    return float(prod(sizes.values()) * prod(bshape))


@contextlib.contextmanager
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fvcore's import-time torch.jit.script deprecation, tracer warnings
        yield


def count(module: nn.Module, inputs: tuple) -> FlopCount:
    """FLOPs (FMAs) of `module(*inputs)` with fvcore plus the attention / einsum handles above."""
    with _quiet():
        from fvcore.nn import FlopCountAnalysis

        handles = {name: sdpa_flop_jit for name in ATTENTION_OPS}
        handles["aten::einsum"] = einsum_flop_jit
        fa = (FlopCountAnalysis(module, tuple(inputs)).set_op_handle(**handles)
              .unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none"))
        with torch.no_grad():
            total = float(fa.total())
            by_op = {k: float(v) for k, v in fa.by_operator().items()}
            skipped = {k: int(v) for k, v in sorted(fa.unsupported_ops().items())}
    return FlopCount(total, by_op, skipped)


# --- model stages ----------------------------------------------------------------------------------

class _DiTStep(nn.Module):
    """One denoiser evaluation with a fixed length view (the view is not a tensor input)."""

    def __init__(self, dit: nn.Module, view):
        super().__init__()
        self.dit, self.view = dit, view

    def forward(self, x, t, y):
        return self.dit(x, t, y, self.view)


class _Encode(nn.Module):
    def __init__(self, tok):
        super().__init__()
        self.tok = tok

    def forward(self, x):
        return self.tok.encode(x)


class _Decode(nn.Module):
    def __init__(self, tok):
        super().__init__()
        self.tok = tok

    def forward(self, z):
        return self.tok.decode(z)


def dit_forward_count(dit: nn.Module, view) -> FlopCount:
    """One DiT forward at batch size 1 on the K tokens of `view` (None: the full N)."""
    k = dit.n_tokens if view is None else view.k
    p = next(dit.parameters())
    x = torch.zeros(1, k, dit.in_dim, dtype=p.dtype, device=p.device)
    t = torch.full((1,), 0.5, dtype=p.dtype, device=p.device)
    y = torch.zeros(1, dtype=torch.long, device=p.device)
    return count(_DiTStep(dit, view), (x, t, y))


def _sampler_fields(bundle, sampler, cfg_scale):
    s = bundle.cfg.sampler if sampler is None else sampler
    get = (lambda key: s[key]) if isinstance(s, dict) else (lambda key: getattr(s, key))
    try:
        steps, shift, interval = int(get("steps")), float(get("shift")), tuple(get("cfg_interval"))
        scale = float(get("cfg_scale") if cfg_scale is None else cfg_scale)
    except (KeyError, AttributeError, TypeError, ValueError) as e:
        raise UserError(f"sampler settings need steps, shift, cfg_scale and cfg_interval ({e}); "
                        "pass config.sampler") from None
    if steps < 2:
        raise UserError(f"sampler.steps={steps}: need at least 2 grid points (1 network evaluation)")
    return steps, shift, scale, interval


def _probe_latents(bundle, seed: int = 0) -> torch.Tensor:
    """Latents of one random image, for the view of a data-dependent method (e.g. tome)."""
    tok = bundle.tokenizer
    p = next(tok.parameters())
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, 3, tok.image_size, tok.image_size, generator=g).mul(2).sub(1).to(p.device, p.dtype)
    with torch.no_grad():
        return tok.encode(x)


def _n_params(module: nn.Module | None) -> int:
    return 0 if module is None else int(sum(p.numel() for p in module.parameters()))


def _dit(bundle, k: int):
    """The bundle's DiT for K; an untrained one of the same architecture when none is loaded
    (FLOPs and parameter counts do not depend on weights)."""
    key = "joint" if bundle.cfg.generator == "joint" else str(k)
    return bundle.dits[key] if key in bundle.dits else bundle.new_dit()


def stage_flops(bundle, k: int, sampler=None, cfg_scale: float | None = None, *, z: torch.Tensor | None = None,
                _encoder: FlopCount | None = None) -> dict:
    """Compute per image for one (method, length K); see the module docstring for what is counted.

    sampler: a SamplerCfg (or a dict with steps, shift, cfg_scale, cfg_interval; None: the bundle's);
    cfg_scale overrides sampler.cfg_scale (1.0: no guidance). z: (1, N, d) latents for a
    data-dependent method's view (default: bundle.tokenizer.encode of one random image).
    Returns dit_forward_gflops, nfe, nfe_cfg, sampling_gflops, encoder_gflops, decoder_gflops,
    decoder_tokens, params {dit, tokenizer, method}, skipped_ops (op -> calls, summed over the DiT
    forward, encoder and decoder traces, each traced once), convention."""
    from vltbench.models.flow import sampling_nfe

    method = bundle.method
    steps, shift, scale, interval = _sampler_fields(bundle, sampler, cfg_scale)
    if method.data_dependent:
        z = _probe_latents(bundle) if z is None else z[:1]
        view = method.view(k, z)
    else:
        view = method.view(k)
    dit = _dit(bundle, k)
    fwd = dit_forward_count(dit, view)
    nfe, nfe_cfg = sampling_nfe(steps, shift, scale, interval)

    tok = bundle.tokenizer
    p = next(tok.parameters())
    if _encoder is None:
        img = torch.zeros(1, 3, tok.image_size, tok.image_size, dtype=p.dtype, device=p.device)
        _encoder = count(_Encode(tok), (img,))
    zk = torch.zeros(1, k, tok.latent_dim, dtype=p.dtype, device=p.device)
    with torch.no_grad():
        dec_in = method.expand(zk, view.to(p.device))
    dec = count(_Decode(tok), (dec_in,))

    skipped = Counter(fwd.skipped) + Counter(_encoder.skipped) + Counter(dec.skipped)
    return {
        "dit_forward_gflops": fwd.gflops,
        "nfe": int(nfe),
        "nfe_cfg": int(nfe_cfg),
        "sampling_gflops": fwd.gflops * nfe,
        "encoder_gflops": _encoder.gflops,
        "decoder_gflops": dec.gflops,
        "decoder_tokens": int(dec_in.shape[1]),
        "params": {"dit": _n_params(dit), "tokenizer": _n_params(tok), "method": _n_params(method)},
        "skipped_ops": dict(sorted(skipped.items())),
        "convention": CONVENTION,
    }


def flops_rows(bundle, lengths, sampler=None, cfg_scale: float | None = None) -> list[dict]:
    """One flat row per K for a CLI table: method, length, the stage_flops numbers, params_<part>,
    and skipped ops as one short string. The encoder is traced once (it does not depend on K)."""
    tok = bundle.tokenizer
    p = next(tok.parameters())
    img = torch.zeros(1, 3, tok.image_size, tok.image_size, dtype=p.dtype, device=p.device)
    enc = count(_Encode(tok), (img,))
    z = _probe_latents(bundle) if bundle.method.data_dependent else None
    rows = []
    for k in lengths:
        s = stage_flops(bundle, k, sampler, cfg_scale, z=z, _encoder=enc)
        row = {"method": bundle.method_name, "length": int(k)}
        row.update({key: s[key] for key in ("dit_forward_gflops", "nfe", "nfe_cfg", "sampling_gflops",
                                            "encoder_gflops", "decoder_gflops", "decoder_tokens")})
        row.update({f"params_{part}": n for part, n in s["params"].items()})
        row["skipped_ops"] = ", ".join(f"{re.sub('^aten::', '', op)} x{n}" for op, n in s["skipped_ops"].items())
        rows.append(row)
    return rows
