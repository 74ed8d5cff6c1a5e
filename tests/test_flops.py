"""FLOP counting: exact analytic DiT count, attention counted, per-stage compute of every method."""

import pytest
import torch
from helpers import SMALL

from vltbench.core import registry
from vltbench.core.config import load_config
from vltbench.evaluation.metrics.flops import count, dit_forward_count, flops_rows, stage_flops
from vltbench.models.blocks import Attention
from vltbench.models.bundle import build_bundle
from vltbench.models.dit import DiT
from vltbench.models.flow import sampling_nfe
from vltbench.models.lengths import prefix_view, view_from_labels

METHODS = registry.methods.names()  # every registered method, built-in or installed
N, D_IN, W, DEPTH, HEADS, FREQ = 32, 16, 32, 2, 2, 256


@pytest.fixture(scope="module")
def cfg():
    return load_config("tiny", overrides=SMALL)


@pytest.fixture(scope="module")
def dit():
    torch.manual_seed(0)
    return DiT(N, D_IN, W, DEPTH, HEADS, num_classes=10)


def analytic_dit(L, d=D_IN, w=W, depth=DEPTH, freq=FREQ):
    """FMAs of one DiT forward, batch 1, L tokens, plain (prefix) view, mlp ratio 4."""
    x_embed = L * d * w
    t_mlp = freq * w + w * w  # TimestepEmbedder: Linear(256, w), Linear(w, w) on one vector
    block = (12 * L * w * w  # qkv 3, proj 1, mlp 8 (hidden 4w)
             + 2 * L * L * w  # attention: Q K^T + attn V, summed over heads
             + 6 * w * w  # adaLN Linear(w, 6w) on the conditioning vector
             + 2 * 4 * L * w)  # two LayerNorms without affine: fvcore counts 4 per element
    final = 4 * L * w + 2 * w * w + L * w * d  # final LayerNorm, final adaLN Linear(w, 2w), out Linear(w, d)
    return x_embed + t_mlp + depth * block + final


@pytest.mark.parametrize("L", [1, 7, 16, 32])
def test_dit_count_is_exact(dit, L):
    c = dit_forward_count(dit, prefix_view(L, N))
    assert c.total == analytic_dit(L)
    assert c.by_op["scaled_dot_product_attention"] == DEPTH * 2 * L * L * W


def test_attention_term_is_quadratic(dit):
    l1, l2 = 32, 8
    diff = dit_forward_count(dit, prefix_view(l1, N)).total - dit_forward_count(dit, prefix_view(l2, N)).total
    linear_per_token = D_IN * W + DEPTH * (12 * W * W + 8 * W) + 4 * W + W * D_IN
    assert diff == 2 * (l1 ** 2 - l2 ** 2) * W * DEPTH + (l1 - l2) * linear_per_token


def test_attention_is_counted_not_skipped(dit):
    c = dit_forward_count(dit, prefix_view(16, N))
    assert not [op for op in c.skipped if "attention" in op], c.skipped
    assert c.by_op.get("scaled_dot_product_attention", 0) > 0
    # bool masks (the causal encoder) and additive biases are handled like no mask
    attn, x = Attention(16, 2), torch.randn(1, 5, 16)
    plain = count(attn, (x,))
    for mask in (torch.ones(5, 5, dtype=torch.bool).tril(), torch.randn(1, 1, 1, 5)):
        c = count(attn, (x, mask))
        assert c.by_op["scaled_dot_product_attention"] == plain.by_op["scaled_dot_product_attention"] == 2 * 5 * 5 * 16
        assert not [op for op in c.skipped if "attention" in op]


def test_elementwise_ops_are_recorded_as_skipped(dit):
    c = dit_forward_count(dit, prefix_view(8, N))
    for op in ("aten::add", "aten::gelu", "aten::silu"):
        assert c.skipped.get(op, 0) > 0


def test_merge_bias_counts_like_unbiased_attention(dit):
    k = 8
    labels = torch.arange(N) % k  # sizes 4: a non-trivial log(m_j) bias
    merged = dit_forward_count(dit, view_from_labels(labels, k))
    plain = dit_forward_count(dit, prefix_view(k, N))
    assert merged.by_op["scaled_dot_product_attention"] == plain.by_op["scaled_dot_product_attention"]
    # the only extra term: merging the positional embedding, P^T p (N * K * w FMAs)
    assert merged.total - plain.total == merged.by_op["einsum"] == N * k * W


@pytest.fixture(scope="module")
def bundles(cfg):
    out = {}
    for m in METHODS:
        b = build_bundle(cfg, m, 10)
        b.method.freeze()
        out[m] = b
    return out


@pytest.mark.parametrize("method", METHODS)
def test_stage_flops_every_method(bundles, cfg, method):
    b = bundles[method]
    small, full = stage_flops(b, 4, cfg.sampler, 1.5), stage_flops(b, 32, cfg.sampler, 1.5)
    for s in (small, full):
        for key in ("dit_forward_gflops", "sampling_gflops", "encoder_gflops", "decoder_gflops"):
            assert s[key] > 0, key
        assert all(n >= 0 for n in s["params"].values()) and s["params"]["dit"] > 0 and s["params"]["tokenizer"] > 0
        assert not [op for op in s["skipped_ops"] if "attention" in op]
        total, both = sampling_nfe(cfg.sampler.steps, cfg.sampler.shift, 1.5, cfg.sampler.cfg_interval)
        assert s["nfe"] == total == cfg.sampler.steps - 1 + both and s["nfe_cfg"] == both > 0
        assert s["sampling_gflops"] == pytest.approx(s["dit_forward_gflops"] * total, rel=1e-12)
        assert "fused multiply-add" in s["convention"]
    assert small["dit_forward_gflops"] < full["dit_forward_gflops"]
    assert small["encoder_gflops"] == full["encoder_gflops"]
    assert 4 <= small["decoder_tokens"] <= 32 and full["decoder_tokens"] == 32
    if small["decoder_tokens"] < 32:  # truncation: the decoder sees the K tokens only
        assert small["decoder_gflops"] < full["decoder_gflops"]
    else:
        assert small["decoder_gflops"] == full["decoder_gflops"]
    if method == "tail-drop":
        assert small["decoder_tokens"] == 4


def test_guidance_adds_one_evaluation_per_cfg_step(bundles, cfg):
    b = bundles["merge"]
    g, plain = stage_flops(b, 8, cfg.sampler, 1.5), stage_flops(b, 8, cfg.sampler, 1.0)
    assert plain["nfe"] == cfg.sampler.steps - 1 and plain["nfe_cfg"] == 0
    assert g["nfe"] == plain["nfe"] + g["nfe_cfg"]
    assert g["dit_forward_gflops"] == plain["dit_forward_gflops"]


def test_flops_rows(bundles, cfg):
    rows = flops_rows(bundles["tail-drop"], [4, 16], cfg.sampler, 1.5)
    assert [r["length"] for r in rows] == [4, 16] and all(r["method"] == "tail-drop" for r in rows)
    assert rows[0]["sampling_gflops"] < rows[1]["sampling_gflops"]
    assert {"params_dit", "params_tokenizer", "params_method", "skipped_ops", "decoder_gflops"} <= set(rows[0])
