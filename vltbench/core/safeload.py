"""Tensors-only loading, for code that calls torch.load itself (torch hub's load_state_dict_from_url,
which defaults to weights_only=False, inside torch-fidelity and lpips) and for the released files the
importers read (load_official): a pickle that holds more than tensors is refused, never run."""

from __future__ import annotations

import os
import pickle
import re
from contextlib import contextmanager
from pathlib import Path

from .errors import UserError

_FORCE, _NO_FORCE = "TORCH_FORCE_WEIGHTS_ONLY_LOAD", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"


@contextmanager
def tensors_only():
    """Every torch.load inside reads with weights_only=True, whatever its caller passes (torch's own
    switch, the environment variable TORCH_FORCE_WEIGHTS_ONLY_LOAD; restored afterwards)."""
    saved = {k: os.environ.pop(k, None) for k in (_FORCE, _NO_FORCE)}
    os.environ[_FORCE] = "1"
    try:
        yield
    finally:
        os.environ.pop(_FORCE, None)
        os.environ.update({k: v for k, v in saved.items() if v is not None})


def refusal(e: BaseException) -> str:
    """The one useful line of torch's weights-only refusal (it names the global the pickle wanted,
    e.g. 'Unsupported global: GLOBAL builtins.open'), without its terminal escapes and advice."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e))
    m = re.search(r"Unsupported (global: GLOBAL|operand) \S+", text)
    if m:
        return f"it asks for {m.group(0).split()[-1]}, which is no tensor"
    first = (text.strip().splitlines() or [type(e).__name__])[0]
    return " ".join(first.split())[:200]


def load_official(path: Path, option: str, loads: str = "tensors and containers", safe_globals=()):
    """torch.load(weights_only=True) of a released file, memory-mapped (a release may hold GBs of training
    state next to what is used), with only `safe_globals` allowed beyond tensors and containers (`loads`
    says so in the refusal). A refused pickle, or a file torch cannot read, is one UserError naming `option`."""
    import torch

    try:
        with torch.serialization.safe_globals(list(safe_globals)):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as e:
        m = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(e)) or re.search(r"GLOBAL ([\w.]+)", str(e))
        what = f"the global {m.group(1)}" if m else "an object that is not a tensor or container"
        raise UserError(f"{option}: {path} was refused without running it: its pickle asks for {what}, which could "
                        f"run code; vltbench loads only {loads} (pass the official file unchanged)") from None
    except Exception as e:  # noqa: BLE001 - not a torch file at all, truncated, ...
        raise UserError(f"{option}: {path} is not a readable torch checkpoint ({str(e).splitlines()[0][:200]}); "
                        "pass the official file") from None
