"""Shared building blocks: the CPU attention path computes exactly what SDPA computes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vltbench.models import blocks
from vltbench.models.blocks import attend, modulate


def _qkv(b=3, h=2, n=7, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, h, n, d, generator=g, requires_grad=True) for _ in range(3)]


@pytest.mark.parametrize("kind", ["none", "per-key bias", "per-image bias", "bool mask"])
def test_cpu_attention_matches_sdpa_forward_and_backward(kind):
    q, k, v = _qkv()
    n = q.shape[-2]
    bias = {"none": None,
            "per-key bias": torch.randn(1, 1, 1, n).log_softmax(-1),  # merge's log(m_j) shape
            "per-image bias": torch.randn(3, 1, 1, n),
            "bool mask": torch.tril(torch.ones(n, n, dtype=torch.bool))}[kind]
    out = attend(q, k, v, bias)
    g = torch.randn_like(out)
    grads = torch.autograd.grad(out, (q, k, v), g)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    ref_grads = torch.autograd.grad(ref, (q, k, v), g)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::torch.jit.TracerWarning")  # jit.trace is what fvcore uses
def test_long_sequences_and_traces_use_sdpa(monkeypatch):
    """Above the length cap, and inside a jit trace (what fvcore counts), attend calls SDPA itself."""
    calls = []
    real = F.scaled_dot_product_attention
    monkeypatch.setattr(blocks.F, "scaled_dot_product_attention", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    q, k, v = _qkv(n=5)
    attend(q, k, v, None)
    assert calls == []
    monkeypatch.setattr(blocks, "CPU_MATMUL_ATTENTION_MAX_LEN", 4)
    attend(q, k, v, None)
    assert calls == [1]
    monkeypatch.setattr(blocks, "CPU_MATMUL_ATTENTION_MAX_LEN", 512)
    torch.jit.trace(lambda a, b, c: attend(a, b, c, None), (q.detach(), k.detach(), v.detach()))
    assert len(calls) >= 2


def test_modulate_is_scale_then_shift():
    x, shift, scale = torch.randn(2, 5, 4), torch.randn(2, 4), torch.randn(2, 4)
    torch.testing.assert_close(modulate(x, shift, scale), x * (1 + scale[:, None]) + shift[:, None])
