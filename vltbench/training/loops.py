"""Training: stage 1 the tokenizer (with the method's length mechanism), stage 2 the DiT(s) on cached latents.

The same loops run in one process and under `torchrun` (DDP). Every random draw is made for the
whole global batch (`batch_size` in the config) from generators that are identical on every rank;
each rank then takes its slice of that batch, and the loss is weighted by the slice's share, so
P processes x B/P samples take the same steps as 1 process x B (up to float summation order).
Rank 0 alone logs and writes files; the EMA is updated identically on every rank after the synced step.

Resume: every `ckpt_every` steps (and when a stage ends) rank 0 writes the stage's training state
(vltbench.training.state: weights, EMA, optimizer, scheduler, generator states, step) as one safetensors file with JSON
metadata, atomically, under cache_dir("train-state"), keyed by the training identity. Starting the
same training again continues from it (with any number of processes); the folder is removed once
the final checkpoint is written. A non-finite loss stops training with the step named and the last
good state left intact.

Loss logs: every stage writes its full loss curve as JSON lines (step, loss, K for a DiT, lr,
elapsed_s) beside the checkpoint it produces, `<checkpoint>.<stage>.losses.jsonl` (stage: tokenizer,
dit-joint or dit-<K>), rank 0 only; a resumed stage first drops the lines after its resumed step, so
no step is logged twice. With VLTBENCH_TENSORBOARD=DIR the same values also go to TensorBoard (when
torch.utils.tensorboard imports). Logging reads values only: it changes neither the training nor
its identity.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from vltbench.core import dist, progress
from vltbench.core.atomic import atomic_path
from vltbench.core.device import to_float
from vltbench.core.errors import UserError
from vltbench.core.hashing import hash_obj
from vltbench.data import Dataset
from vltbench.models.bundle import Bundle
from vltbench.models.flow import EMA, flow_draws, flow_loss
from vltbench.models.pretrained import load_encoder_init

from .latents import cached_latents
from .state import Saver, load_state, load_warm, load_weights, save_warm, state_dir, warm_path


class TrainingDiverged(UserError):
    pass


def lr_lambda(warmup: int, total: int, schedule: str = "cosine"):
    """Linear warm-up, then cosine decay to 10% (schedule cosine) or the full rate (constant)."""
    def f(step):
        if step < warmup:
            return (step + 1) / warmup
        if schedule == "constant":
            return 1.0
        p = (step - warmup) / max(1, total - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, p)))
    return f


def _check_finite(loss: torch.Tensor | float, stage: str, step: int, saved: tuple[Path, int] | None = None,
                  who: str = "") -> None:
    value = loss.item() if torch.is_tensor(loss) else float(loss)
    if not math.isfinite(value):
        if saved is not None:
            kept = f"; the last good training state (step {saved[1]}) is kept at {saved[0]} and a restart resumes from it"
        else:
            kept = f"; no training state was saved before it (one is written every {stage}.ckpt_every steps)"
        raise TrainingDiverged(f"{stage} loss is {value} at step {step}{who}; lower the learning rate "
                               f"({stage}.lr) or check the data{kept}")


def batch_images(ds: Dataset, idx: torch.Tensor, gen: torch.Generator, device, part: slice = slice(None)) -> torch.Tensor:
    """The images of idx[part], flipped by draws made for the whole of idx (so shards agree)."""
    x = to_float(ds.train.images(idx[part].numpy()))
    if ds.flip:
        flip = (torch.rand(len(idx), generator=gen) < 0.5)[part]
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    return x.to(device)


# ---- loss logs -----------------------------------------------------------------------------------

def loss_log_path(checkpoint: str | Path, stage: str) -> Path:
    """The loss log of `stage` (tokenizer, dit-joint, dit-<K>) beside `checkpoint`."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(f"{checkpoint.name}.{stage}.losses.jsonl")


def read_loss_log(path: str | Path) -> list[dict]:
    """The rows of a loss log; a line cut short by a killed writer (or otherwise unreadable) is skipped."""
    rows = []
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError):
        return rows
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), int) and isinstance(row.get("loss"), (int, float)):
            rows.append(row)
    return rows


class LossLog:
    """Appends one JSON line per step to the stage's loss log (rank 0; nothing when `checkpoint` is
    None). `start`: the steps already done (a resumed stage); lines after it are dropped first."""

    def __init__(self, checkpoint: Path | None, stage: str, start: int):
        self.file = self.tb = None
        if checkpoint is None or not dist.is_main():
            return
        self.path = loss_log_path(checkpoint, stage)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept = [r for r in read_loss_log(self.path) if r["step"] <= start] if start else []
        with atomic_path(self.path) as tmp:
            tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
        self.file = open(self.path, "a")
        if tb_dir := os.environ.get("VLTBENCH_TENSORBOARD"):
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as e:
                progress.log(f"VLTBENCH_TENSORBOARD is set but TensorBoard is unavailable ({e}); loss logs only")
            else:
                self.tb = SummaryWriter(str(Path(tb_dir) / f"{Path(checkpoint).name}.{stage}"),
                                        purge_step=start + 1 if start else None)

    def write(self, step: int, loss: float, lr: float, elapsed_s: float, k: int | None = None) -> None:
        """`step`: steps done after this one (1-based)."""
        if self.file is None:
            return
        row = {"step": step, "loss": loss, **({"K": k} if k is not None else {}), "lr": lr,
               "elapsed_s": round(elapsed_s, 3)}
        self.file.write(json.dumps(row) + "\n")
        self.file.flush()
        if self.tb is not None:
            self.tb.add_scalar("loss", loss, step)
            self.tb.add_scalar("lr", lr, step)
            if k is not None:
                self.tb.add_scalar("K", k, step)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
        if self.tb is not None:
            self.tb.close()
            self.tb = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _DDP(nn.parallel.DistributedDataParallel):
    """DDP that lets callers read the wrapped module's attributes (e.g. dit.null_class)."""

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.module, name)


def _wrap(module: nn.Module, find_unused: bool) -> nn.Module:
    """DDP under torchrun (gradients averaged over ranks in backward), the module itself in one process.
    find_unused: a method's parameters may sit out a step (e.g. a mask token when K = N); the DiT's never do."""
    if dist.world_size() == 1:
        return module
    # device_ids=None: the module and its inputs are already on this rank's device.
    return _DDP(module, find_unused_parameters=find_unused)


class _TokenizerStep(nn.Module):
    """Tokenizer + method (+ the REPA projector) as one module, so DDP sees the whole forward.
    Returns the MSE, the weighted auxiliary losses (the method's and tokenizer.losses') and the
    reconstruction (what the discriminator sees)."""

    def __init__(self, tok, method, aux: "TokenizerAux | None" = None, warm_start: int = 0):
        super().__init__()
        self.tok, self.method = tok, method
        self.aux = aux
        self.warm_start = warm_start
        if aux is not None and aux.repa is not None:
            self.repa_proj = aux.projector

    def forward(self, x, gen, step: int = 0):
        aux_cfg = self.aux
        if aux_cfg is not None and aux_cfg.repa is not None:
            z, patches = self.tok.encode(x, return_patches=True)
        else:
            z, patches = self.tok.encode(x), None
        if step < self.warm_start:  # shared warm start: a plain autoencoder at K = N, the method sits out
            dec_in, aux = z, {}
        else:
            dec_in, aux = self.method.train_tokens(z, gen)
        rec_img = self.tok.decode(dec_in)
        if aux_cfg is not None:
            aux = {**aux, **aux_cfg.losses(self, x, rec_img, patches, step)}
        return F.mse_loss(rec_img, x), aux, rec_img


class TokenizerAux:
    """The configured tokenizer losses (vltbench.models.losses); frozen networks stay outside the module tree."""

    def __init__(self, bundle: Bundle, device):
        from vltbench.models import losses as L
        c = bundle.cfg.tokenizer.losses
        self.cfg = c
        self.perceptual = (L.Perceptual(c.perceptual.model, c.perceptual.weights).to(device)
                           if c.perceptual.weight > 0 else None)
        self.repa = L.RepaTarget(c.repa.model, c.repa.weights).to(device) if c.repa.weight > 0 else None
        self.projector = None
        if self.repa is not None:
            width = bundle.tokenizer.width
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(bundle.cfg.seed + 4)
                self.projector = L.RepaProjector(width, c.repa.proj_dim or width, self.repa.dim).to(device)
        self.disc = None
        if c.adversarial.weight > 0:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(bundle.cfg.seed + 5)
                self.disc = L.PatchDiscriminator(c.adversarial.channels, c.adversarial.layers).to(device)

    def __deepcopy__(self, memo):  # the tokenizer's EMA copy shares the frozen networks, never copies them
        return self

    @staticmethod
    def wanted(bundle: Bundle) -> bool:
        c = bundle.cfg.tokenizer.losses
        return any(x.weight > 0 for x in (c.perceptual, c.adversarial, c.repa))

    def losses(self, step_module, x, rec_img, patches, step: int) -> dict:
        from vltbench.models import losses as L
        c, out = self.cfg, {}
        if self.perceptual is not None and step >= c.perceptual.start:
            out["perceptual"] = c.perceptual.weight * self.perceptual(rec_img, x)
        if self.disc is not None and step >= c.adversarial.start:
            out["adversarial"] = c.adversarial.weight * L.generator_adv_loss(self.disc, rec_img)
        if self.repa is not None:
            target = self.repa(x, step_module.tok.grid)
            out["repa"] = c.repa.weight * L.repa_loss(step_module.repa_proj(patches), target)
        return out


def _hinge(logits, n_real: int):
    from vltbench.models.losses import hinge_d_loss
    return hinge_d_loss(logits[:n_real], logits[n_real:])


def _step_loss(loss, rec, stage: str, step: int, share: float, saver: Saver) -> float:
    """Backward of this rank's share; returns the global-batch value of `rec`. Non-finite -> TrainingDiverged."""
    if dist.world_size() == 1:
        _check_finite(loss, stage, step, saver.saved)
        loss.backward()
        return rec.item()
    (loss * (share * dist.world_size())).backward()  # DDP averages: sum_r share_r * grad_r = global mean
    value, bad = dist.reduce_mean_and_flag(rec.item(), share, not torch.isfinite(loss).item())
    if bad:
        _check_finite(float("nan") if math.isfinite(value) else value, stage, step, saver.saved,
                      who=f" (on rank {dist.rank()})" if not torch.isfinite(loss).item() else "")
    return value


def adamw(params, lr: float, weight_decay: float, betas: tuple[float, float] = (0.9, 0.99),
          extra_groups: list[dict] | None = None) -> torch.optim.AdamW:
    """The optimizer of every stage. fused=True runs one kernel over all tensors (CPU and CUDA);
    PyTorch's default on CPU is a per-tensor loop, 2.5x slower for the tiny DiT (results/PERFORMANCE.md).
    extra_groups: further parameter groups (the discriminator), stepped when only they have gradients."""
    groups = [{"params": list(params)}] + list(extra_groups or [])
    fused = all(p.device.type in ("cpu", "cuda") for g in groups for p in g["params"]) or None
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), weight_decay=weight_decay, fused=fused)


def clip_grads(params, max_norm: float) -> torch.Tensor | None:
    """Global-norm gradient clipping with the multi-tensor kernels (PyTorch uses them on CPU only if asked).
    max_norm 0: no clipping (the LGM generator recipe)."""
    if not max_norm:
        return None
    return torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=True)


# ---- the shared warm start -----------------------------------------------------------------------

def warm_shareable(bundle: Bundle) -> bool:
    """The warm stage is method-independent (and so cached for reuse) when nothing but the tokenizer
    trains in it: no EMA (it would average the method's parameters too) and no auxiliary losses."""
    return bundle.cfg.tokenizer.warm_start > 0 and bundle.cfg.tokenizer.ema is None and not TokenizerAux.wanted(bundle)


# ---- stage 1: tokenizer --------------------------------------------------------------------------

def train_tokenizer(bundle: Bundle, ds: Dataset, device, loss_log: Path | None = None) -> dict:
    """loss_log: the checkpoint this training produces; its tokenizer loss log goes beside it."""
    cfg = bundle.cfg.tokenizer
    tok, method = bundle.tokenizer.to(device).train(), bundle.method.to(device).train()
    gen = torch.Generator().manual_seed(bundle.cfg.seed)
    aux = TokenizerAux(bundle, device) if TokenizerAux.wanted(bundle) else None
    step_module = _TokenizerStep(tok, method, aux, cfg.warm_start)
    params = list(step_module.parameters())  # tokenizer, method (, REPA projector)
    disc = aux.disc if aux is not None else None
    groups = [] if disc is None else [{"params": list(disc.parameters()),
                                      "lr": cfg.losses.adversarial.lr or cfg.lr}]
    opt = adamw(params, cfg.lr, cfg.weight_decay, cfg.betas, groups)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg.warmup, cfg.steps, cfg.lr_schedule))
    ident = hash_obj({"stage": "tokenizer", "identity": bundle.identity})
    ema = EMA(step_module, cfg.ema) if cfg.ema is not None else None
    modules = {"tokenizer": tok, "method": method, **({"ema": ema.model} if ema else {}),
               **({"repa_proj": step_module.repa_proj} if aux is not None and aux.repa is not None else {}),
               **({"disc": disc} if disc is not None else {})}
    path = state_dir(bundle) / "tokenizer.safetensors"
    st = load_state(path, ident, modules, opt, sched, {"gen": gen})
    start, losses, before = (st["step"], st["losses"], st["elapsed_s"]) if st else (0, [], 0.0)
    if st and st["done"]:
        progress.log(f"{bundle.method_name}: tokenizer already trained (state {path})")
        tok.eval(), method.eval()
        bundle.stages = ["tokenizer"]
        return {"tokenizer_s": before, "tokenizer_final_mse": st["final"]}
    if st:
        progress.log(f"{bundle.method_name}: tokenizer resumes at step {start} from {path}")
    share = warm_shareable(bundle)
    if not st and share and (w := load_warm(warm_path(bundle), bundle, step_module, opt, sched, gen)) is not None:
        start, before = cfg.warm_start, w["elapsed_s"]
        losses = [r["loss"] for r in w["rows"]][-50:]
        if loss_log is not None and dist.is_main():
            log_path = loss_log_path(loss_log, "tokenizer")
            log_path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(log_path) as tmp:
                tmp.write_text("".join(json.dumps(r) + "\n" for r in w["rows"]))
        progress.log(f"{bundle.method_name}: shared warm start (steps 1-{start}) reused from {warm_path(bundle)}")
    if not st and start == 0 and (cfg.encoder_init.weights or cfg.init_from):  # a resumed or reused state has its own
        if cfg.init_from:
            progress.log(f"{bundle.method_name}: tokenizer starts from {load_weights(bundle, Path(cfg.init_from))}")
        else:
            progress.log(f"{bundle.method_name}: encoder {load_encoder_init(cfg, tok)}")
        if ema is not None:  # the EMA starts from the same weights
            with torch.no_grad():
                for p, q in zip(ema.model.parameters(), step_module.parameters()):
                    p.copy_(q)
    saver = Saver(path, ident, cfg.ckpt_every, start, st is not None)
    model = _wrap(step_module, find_unused=True)
    disc_model = _wrap(disc, find_unused=False) if disc is not None else None
    lo, hi = dist.shard_bounds(cfg.batch_size)
    part_share, part = (hi - lo) / cfg.batch_size, slice(lo, hi)
    t0 = time.perf_counter()

    def kw():
        return dict(modules=modules, opt=opt, sched=sched, gens={"gen": gen},
                    extra={"losses": losses[-50:], "elapsed_s": before + time.perf_counter() - t0,
                           "final": sum(losses[-50:]) / max(1, len(losses[-50:]))})

    with progress.task(f"{bundle.method_name}: tokenizer", cfg.steps, completed=start) as bar, \
            LossLog(loss_log, "tokenizer", start) as log:
        for step in range(start, cfg.steps):
            x = batch_images(ds, torch.randint(len(ds.train), (cfg.batch_size,), generator=gen), gen, device, part)
            rec, aux_losses, rec_img = model(x, gen, step)
            if dist.world_size() > 1:
                dist.sync_generator(gen)  # a method's per-sample draws differ in size between shards
            loss = rec + sum(aux_losses.values(), torch.zeros((), device=device))
            opt.zero_grad(set_to_none=True)
            value = _step_loss(loss, rec, "tokenizer", step, part_share, saver)
            clip_grads(params, cfg.grad_clip)
            lr = sched.get_last_lr()[0]  # the rate of this step
            opt.step()
            if disc is not None and step >= cfg.losses.adversarial.start:
                # the discriminator's own step (hinge loss), on real and detached reconstructed images;
                # only its gradients exist now, so the same optimizer steps its parameter group alone
                opt.zero_grad(set_to_none=True)
                logits = disc_model(torch.cat([x, rec_img.detach()]))
                d_loss = _hinge(logits, x.shape[0])
                _step_loss(d_loss, d_loss, "discriminator", step, part_share, saver)
                clip_grads(disc.parameters(), cfg.grad_clip)
                opt.step()
            sched.step()
            if ema is not None:
                ema.update(step_module)
            losses.append(value)
            log.write(step + 1, value, lr, before + time.perf_counter() - t0)
            bar.advance(info=f"mse {sum(losses[-50:]) / len(losses[-50:]):.4f}")
            saver.maybe(step + 1, cfg.steps, kw)
            if share and step + 1 == cfg.warm_start and dist.is_main() and not warm_path(bundle).is_file():
                save_warm(warm_path(bundle), bundle, step_module, opt, sched, gen,
                          read_loss_log(loss_log_path(loss_log, "tokenizer")) if loss_log is not None else
                          [{"step": i + 1, "loss": v} for i, v in enumerate(losses)],
                          before + time.perf_counter() - t0)
    if ema is not None:  # the EMA weights become the tokenizer; merge's table is frozen from them
        with torch.no_grad():
            for p, q in zip(step_module.parameters(), ema.model.parameters()):
                p.copy_(q)
    method.freeze()
    tok.eval(), method.eval()
    bundle.stages = ["tokenizer"]
    saver.save(cfg.steps, True, **kw())
    return {"tokenizer_s": before + time.perf_counter() - t0, "tokenizer_final_mse": sum(losses[-50:]) / len(losses[-50:])}


# ---- stage 2: DiT(s) -----------------------------------------------------------------------------

def train_dits(bundle: Bundle, ds: Dataset, device, lengths: list[int] | None = None,
               loss_log: Path | None = None) -> dict:
    """Joint: one DiT over the shared K schedule. Separate: one DiT per length (same steps each).
    loss_log: the checkpoint this training produces; each DiT's loss log goes beside it."""
    with dist.main_first():  # rank 0 encodes and caches the latents; the others read the cache
        z, y = cached_latents(bundle, ds, device)
    flat = z.reshape(-1, z.shape[-1])
    bundle.latent_mean, bundle.latent_std = flat.mean(0), flat.std(0).clamp_min(1e-6)
    zs = bundle.standardise(z)
    keys = ["joint"] if bundle.cfg.generator == "joint" else [str(k) for k in (lengths or bundle.cfg.lengths.train)]
    out = {}
    for key in keys:
        t0 = time.perf_counter()
        fixed = None if key == "joint" else int(key)
        bundle.dits[key], loss, before = _train_one_dit(bundle, z, zs, y, fixed, device, loss_log)
        out[f"dit_{key}_s"], out[f"dit_{key}_final_loss"] = before + time.perf_counter() - t0, loss
    bundle.stages = ["tokenizer", "dit"]
    return out


def _train_one_dit(bundle: Bundle, z, zs, y, fixed_k: int | None, device, loss_log: Path | None = None):
    cfg = bundle.cfg.dit
    method = bundle.method.to(device)
    torch.manual_seed(bundle.cfg.seed + 1)
    dit = bundle.new_dit().to(device).train()
    ema = EMA(dit, cfg.ema)
    gen = torch.Generator().manual_seed(bundle.cfg.seed + 2)
    dev_gen = torch.Generator(device).manual_seed(bundle.cfg.seed + 3)
    opt = adamw(dit.parameters(), cfg.lr, cfg.weight_decay, cfg.betas)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg.warmup, cfg.steps, cfg.lr_schedule))
    cycle = bundle.cfg.lengths.dit_cycle
    label = "joint" if fixed_k is None else f"K={fixed_k}"
    key = "joint" if fixed_k is None else str(fixed_k)
    ident = hash_obj({"stage": f"dit-{key}", "identity": bundle.identity,
                      "latents": [float(bundle.latent_mean.sum()), float(bundle.latent_std.sum())]})
    modules, gens = {"dit": dit, "ema": ema.model}, {"gen": gen, "dev_gen": dev_gen}
    path = state_dir(bundle) / f"dit-{key}.safetensors"
    st = load_state(path, ident, modules, opt, sched, gens)
    start, losses, before = (st["step"], st["losses"], st["elapsed_s"]) if st else (0, [], 0.0)
    if st and st["done"]:
        progress.log(f"{bundle.method_name}: DiT {label} already trained (state {path})")
        return ema.model, st["final"], before
    if st:
        progress.log(f"{bundle.method_name}: DiT {label} resumes at step {start} from {path}")
    saver = Saver(path, ident, cfg.ckpt_every, start, st is not None)
    model = _wrap(dit, find_unused=False)
    lo, hi = dist.shard_bounds(cfg.batch_size)
    share = (hi - lo) / cfg.batch_size
    views = {}
    t0 = time.perf_counter()

    def kw():
        return dict(modules=modules, opt=opt, sched=sched, gens=gens,
                    extra={"losses": losses[-50:], "elapsed_s": before + time.perf_counter() - t0,
                           "final": sum(losses[-50:]) / max(1, len(losses[-50:]))})

    with progress.task(f"{bundle.method_name}: DiT {label}", cfg.steps, completed=start) as bar, \
            LossLog(loss_log, f"dit-{key}", start) as log:
        for step in range(start, cfg.steps):
            idx = torch.randint(len(zs), (cfg.batch_size,), generator=gen)
            # K: fixed (separate DiTs), cycled (lengths.dit_cycle, the LGM recipe) or drawn from the schedule
            k = fixed_k or (cycle[step % len(cycle)] if cycle else method.sample_length(gen))
            mine = idx[lo:hi]
            if method.data_dependent:
                view = method.view(k, z[mine]).to(device)
            else:
                view = views.setdefault(k, method.view(k).to(device))
            draws = flow_draws((cfg.batch_size, *zs.shape[1:]), dev_gen, device, zs.dtype, cfg.label_dropout)
            draws = tuple(d[lo:hi] if d is not None else None for d in draws)
            loss = flow_loss(model, zs[mine].to(device), y[mine].to(device), view, draws=draws)
            opt.zero_grad(set_to_none=True)
            value = _step_loss(loss, loss, "dit", step, share, saver)
            clip_grads(dit.parameters(), cfg.grad_clip)
            lr = sched.get_last_lr()[0]  # the rate of this step
            opt.step()
            sched.step()
            ema.update(dit)  # after the synced step: identical on every rank
            losses.append(value)
            log.write(step + 1, value, lr, before + time.perf_counter() - t0, k=int(k))
            bar.advance(info=f"loss {sum(losses[-50:]) / len(losses[-50:]):.4f} K={k}")
            saver.maybe(step + 1, cfg.steps, kw)
    saver.save(cfg.steps, True, **kw())
    return ema.model, sum(losses[-50:]) / len(losses[-50:]), before
