"""Tensors-only loading for code that calls torch.load itself (torch hub's load_state_dict_from_url,
which defaults to weights_only=False, inside torch-fidelity and lpips): a pickle that holds more than
tensors is refused, never run."""

from __future__ import annotations

import os
import re
from contextlib import contextmanager

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
