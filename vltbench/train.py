"""Training: stage 1 the tokenizer (with the method's length mechanism), stage 2 the DiT(s) on cached latents."""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F

from . import progress
from .data import Dataset
from .device import to_float
from .errors import UserError
from .flow import EMA, flow_loss
from .latents import cached_latents
from .model import Bundle


class TrainingDiverged(UserError):
    pass


def lr_lambda(warmup: int, total: int):
    """Linear warm-up, then cosine decay to 10%."""
    def f(step):
        if step < warmup:
            return (step + 1) / warmup
        p = (step - warmup) / max(1, total - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, p)))
    return f


def _check_finite(loss: torch.Tensor, stage: str, step: int) -> None:
    if not torch.isfinite(loss):
        raise TrainingDiverged(f"{stage} loss is {loss.item()} at step {step}; lower the learning rate "
                               f"({stage}.lr) or check the data")


def batch_images(ds: Dataset, idx: torch.Tensor, gen: torch.Generator, device) -> torch.Tensor:
    x = to_float(ds.train.images(idx.numpy()))
    if ds.flip:
        flip = torch.rand(len(idx), generator=gen) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    return x.to(device)


def train_tokenizer(bundle: Bundle, ds: Dataset, device) -> dict:
    cfg = bundle.cfg.tokenizer
    tok, method = bundle.tokenizer.to(device).train(), bundle.method.to(device).train()
    gen = torch.Generator().manual_seed(bundle.cfg.seed)
    params = list(tok.parameters()) + list(method.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, betas=(0.9, 0.99), weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg.warmup, cfg.steps))
    t0, losses = time.perf_counter(), []
    with progress.task(f"{bundle.method_name}: tokenizer", cfg.steps) as bar:
        for step in range(cfg.steps):
            x = batch_images(ds, torch.randint(len(ds.train), (cfg.batch_size,), generator=gen), gen, device)
            dec_in, aux = method.train_tokens(tok.encode(x), gen)
            rec = F.mse_loss(tok.decode(dec_in), x)
            loss = rec + sum(aux.values(), torch.zeros((), device=device))
            _check_finite(loss, "tokenizer", step)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            sched.step()
            losses.append(rec.item())
            bar.advance(info=f"mse {sum(losses[-50:]) / len(losses[-50:]):.4f}")
    method.freeze()
    tok.eval(), method.eval()
    bundle.stages = ["tokenizer"]
    return {"tokenizer_s": time.perf_counter() - t0, "tokenizer_final_mse": sum(losses[-50:]) / len(losses[-50:])}


def train_dits(bundle: Bundle, ds: Dataset, device, lengths: list[int] | None = None) -> dict:
    """Joint: one DiT over the shared K schedule. Separate: one DiT per length (same steps each)."""
    z, y = cached_latents(bundle, ds, device)
    flat = z.reshape(-1, z.shape[-1])
    bundle.latent_mean, bundle.latent_std = flat.mean(0), flat.std(0).clamp_min(1e-6)
    zs = bundle.standardise(z)
    keys = ["joint"] if bundle.cfg.generator == "joint" else [str(k) for k in (lengths or bundle.cfg.lengths.train)]
    out = {}
    for key in keys:
        t0 = time.perf_counter()
        bundle.dits[key], loss = _train_one_dit(bundle, z, zs, y, None if key == "joint" else int(key), device)
        out[f"dit_{key}_s"], out[f"dit_{key}_final_loss"] = time.perf_counter() - t0, loss
    bundle.stages = ["tokenizer", "dit"]
    return out


def _train_one_dit(bundle: Bundle, z, zs, y, fixed_k: int | None, device):
    cfg = bundle.cfg.dit
    method = bundle.method.to(device)
    torch.manual_seed(bundle.cfg.seed + 1)
    dit = bundle.new_dit().to(device).train()
    ema = EMA(dit, cfg.ema)
    gen = torch.Generator().manual_seed(bundle.cfg.seed + 2)
    dev_gen = torch.Generator(device).manual_seed(bundle.cfg.seed + 3)
    opt = torch.optim.AdamW(dit.parameters(), lr=cfg.lr, betas=(0.9, 0.99), weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg.warmup, cfg.steps))
    views, losses = {}, []
    label = "joint" if fixed_k is None else f"K={fixed_k}"
    with progress.task(f"{bundle.method_name}: DiT {label}", cfg.steps) as bar:
        for step in range(cfg.steps):
            idx = torch.randint(len(zs), (cfg.batch_size,), generator=gen)
            k = fixed_k or method.sample_length(gen)
            if method.data_dependent:
                view = method.view(k, z[idx]).to(device)
            else:
                view = views.setdefault(k, method.view(k).to(device))
            loss = flow_loss(dit, zs[idx].to(device), y[idx].to(device), view, dev_gen, cfg.label_dropout)
            _check_finite(loss, "dit", step)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(dit.parameters(), cfg.grad_clip)
            opt.step()
            sched.step()
            ema.update(dit)
            losses.append(loss.item())
            bar.advance(info=f"loss {sum(losses[-50:]) / len(losses[-50:]):.4f} K={k}")
    return ema.model, sum(losses[-50:]) / len(losses[-50:])
