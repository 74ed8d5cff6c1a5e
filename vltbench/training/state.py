"""Training state on disk: the resumable state of a stage (save_state / load_state, written every
`ckpt_every` steps by rank 0) and the shared warm start of the tokenizer stage (save_warm /
load_warm), each one safetensors file with JSON metadata, written atomically. No pickle.

The loops in vltbench.training.loops decide when to save and what to restore; this module only
writes and reads the files, refusing (with a log line) one that belongs to another training.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from vltbench.core import dist, progress
from vltbench.core.atomic import atomic_path
from vltbench.core.errors import UserError
from vltbench.core.hashing import hash_obj
from vltbench.core.paths import cache_dir
from vltbench.models.bundle import Bundle

STATE_FORMAT = "vltbench-train-state/1"
WARM_FORMAT = "vltbench-warm-start/1"


# ---- training state (resume) ---------------------------------------------------------------------

def state_dir(bundle: Bundle) -> Path:
    """Where this training's resumable states live (one file per stage / DiT)."""
    return cache_dir("train-state") / bundle.cfg.preset / f"{bundle.method_name}-{hash_obj(bundle.identity, 12)}"


def save_state(path: Path, identity: str, step: int, done: bool, modules: dict[str, nn.Module], opt, sched,
               gens: dict[str, torch.Generator], extra: dict) -> None:
    """One safetensors file (tensors) + JSON metadata (the rest), written atomically. No pickle."""
    tensors = {f"{name}.{k}": v for name, m in modules.items() for k, v in m.state_dict().items()}
    opt_sd = opt.state_dict()
    opt_scalars = {}
    for i, st in opt_sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"opt.{i}.{k}"] = v
            else:
                opt_scalars[f"{i}.{k}"] = v
    for name, g in gens.items():
        tensors[f"rng.{name}"] = g.get_state()
    tensors = {k: v.detach().cpu().clone().contiguous() for k, v in tensors.items()}
    meta = {"format": STATE_FORMAT, "identity": identity, "step": str(step), "done": str(done).lower(),
            "json": json.dumps({"param_groups": opt_sd["param_groups"], "opt_scalars": opt_scalars,
                                "sched": sched.state_dict(), "extra": extra})}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def _read_state(path: Path, fmt: str, identity: str, what: str, instead: str) -> tuple[dict, dict, dict] | None:
    """(tensors, the JSON info, metadata) of a state file of `fmt` for `identity`; None (with a log
    line saying what happens `instead`) when it is another training's or unreadable."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        if meta.get("format") != fmt or meta.get("identity") != identity:
            progress.log(f"{what} {path} is for another training; {instead}")
            return None
        return load_file(str(path)), json.loads(meta["json"]), meta
    except (SafetensorError, OSError, ValueError, KeyError) as e:
        progress.log(f"{what} {path} is unreadable ({e}); {instead}")
        return None


def load_state(path: Path, identity: str, modules: dict[str, nn.Module], opt, sched,
               gens: dict[str, torch.Generator]) -> dict | None:
    """Restore a state written by save_state; None (start afresh) when absent or unusable."""
    if not path.is_file():
        return None
    read = _read_state(path, STATE_FORMAT, identity, "training state", "starting afresh")
    if read is None:
        return None
    tensors, info, meta = read
    for name, m in modules.items():
        pre = f"{name}."
        m.load_state_dict({k[len(pre):]: v for k, v in tensors.items() if k.startswith(pre)})
    state: dict[int, dict] = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, i, key = k.split(".", 2)
            state.setdefault(int(i), {})[key] = v
    for k, v in info["opt_scalars"].items():
        i, key = k.split(".", 1)
        state.setdefault(int(i), {})[key] = v
    opt.load_state_dict({"state": state, "param_groups": info["param_groups"]})  # casts to the params' device
    sched.load_state_dict(info["sched"])
    for name, g in gens.items():
        g.set_state(tensors[f"rng.{name}"])
    return {"step": int(meta["step"]), "done": meta["done"] == "true", **info["extra"]}


def load_weights(bundle: Bundle, path: Path) -> str:
    """The tokenizer (and method) weights of a finished tokenizer state, whatever training wrote it: for a
    stage that starts from an earlier one, or to inspect it. Returns "DIR (identity ..., step ...)"."""
    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
        if meta.get("format") != STATE_FORMAT or meta.get("done") != "true":
            raise UserError(f"{path} is not a finished tokenizer training state; finish that training first")
        for name, module in (("tokenizer", bundle.tokenizer), ("method", bundle.method)):
            keys = [k for k in f.keys() if k.startswith(name + ".")]
            if keys or name == "tokenizer":
                try:
                    module.load_state_dict({k[len(name) + 1:]: f.get_tensor(k) for k in keys})
                except RuntimeError as e:  # torch lists every key; the first line says enough
                    raise UserError(f"{path} holds a {name} of another method or size than "
                                    f"{bundle.method_name}'s ({str(e).splitlines()[0]}); start from a state "
                                    "trained with the same method and tokenizer settings") from None
    return _label(path, meta)


def state_label(path: Path) -> str:
    """"DIR (identity ..., step ...)": which training state a file is, from its metadata."""
    with safe_open(str(path), "pt") as f:
        return _label(path, f.metadata() or {})


def _label(path: Path, meta: dict) -> str:
    return f"{path.parent.name} (identity {meta.get('identity')}, step {meta.get('step')})"


class Saver:
    """Rank 0 writes the state every `every` steps and at the end; remembers the last good one."""

    def __init__(self, path: Path, identity: str, every: int, start: int, resumed: bool):
        self.path, self.identity, self.every = path, identity, every
        self.saved = (path, start) if resumed else None

    def maybe(self, step_done: int, total: int, kw) -> None:
        if self.every and step_done % self.every == 0 and step_done < total:
            self.save(step_done, False, **kw())

    def save(self, step_done: int, done: bool, **kw) -> None:
        if dist.is_main():
            save_state(self.path, self.identity, step_done, done, **kw)
        self.saved = (self.path, step_done)



# ---- the shared warm start -----------------------------------------------------------------------

def warm_identity(bundle: Bundle) -> dict:
    """What determines the warm stage: data, tokenizer recipe, seed and the backbone options a method
    asks for (nested-dropout's causal latents change the function, so it warms up apart)."""
    ident = bundle.identity
    return {"stage": "tokenizer-warm-start", "data": ident["data"], "tokenizer": ident["tokenizer"],
            "seed": ident["seed"], "recipe": ident["recipe"], "backbone": bundle.method.tokenizer_kwargs()}


def warm_path(bundle: Bundle) -> Path:
    return cache_dir("warm-start") / bundle.cfg.preset / f"{hash_obj(warm_identity(bundle), 16)}.safetensors"


def save_warm(path: Path, bundle: Bundle, step_module: nn.Module, opt, sched, gen, rows: list[dict],
              elapsed_s: float) -> None:
    """The tokenizer's weights and optimizer moments, the scheduler and the data generator after the
    warm stage (the method's parameters have had no gradient yet, so carry no optimizer state)."""
    tensors = {}
    for name, p in step_module.named_parameters():
        if name.startswith("tok."):
            tensors[f"w.{name}"] = p.detach()
            for k, v in opt.state.get(p, {}).items():
                tensors[f"opt.{name}.{k}"] = v
    tensors["rng.gen"] = gen.get_state()
    tensors = {k: v.detach().cpu().clone().contiguous() for k, v in tensors.items()}
    meta = {"format": WARM_FORMAT, "identity": hash_obj(warm_identity(bundle)),
            "json": json.dumps({"sched": sched.state_dict(), "rows": rows, "elapsed_s": elapsed_s})}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def load_warm(path: Path, bundle: Bundle, step_module: nn.Module, opt, sched, gen) -> dict | None:
    """Restore a warm stage written by save_warm; None when absent or unusable (then it is trained)."""
    if not path.is_file():
        return None
    read = _read_state(path, WARM_FORMAT, hash_obj(warm_identity(bundle)), "warm-start state",
                       "training the warm stage")
    if read is None:
        return None
    tensors, info, _ = read
    with torch.no_grad():
        for name, p in step_module.named_parameters():
            if name.startswith("tok."):
                p.copy_(tensors[f"w.{name}"])
                st = {k.rsplit(".", 1)[1]: v for k, v in tensors.items() if k.startswith(f"opt.{name}.")}
                if st:  # fused AdamW keeps its step counter on the parameter's device, the others on the CPU
                    on = p.device if opt.defaults.get("fused") else torch.device("cpu")
                    opt.state[p] = {k: v.to(on if k == "step" else p.device) for k, v in st.items()}
    sched.load_state_dict(info["sched"])
    for g, lr in zip(opt.param_groups, sched.get_last_lr()):
        g["lr"] = lr
    gen.set_state(tensors["rng.gen"])
    return info
