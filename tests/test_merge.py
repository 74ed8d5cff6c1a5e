"""Invariants of the merge method and of the generic length-view DiT (issue 3)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vltbench.core.config import load_config
from vltbench.core.errors import UserError
from vltbench.models.flow import flow_loss, sample
from vltbench.models.lengths import view_from_labels
from vltbench.models.bundle import build_bundle, load_bundle, save_bundle
from vltbench.models.blocks import AdaLNBlock, Attention, LightningBlock
from helpers import SMALL


@pytest.fixture(scope="module", params=["dit", "lightning"])
def cfg(request):
    """Every invariant holds for both generator architectures (dit.arch)."""
    return load_config("tiny", overrides={**SMALL, "dit.arch": request.param})


@pytest.fixture(scope="module")
def merge(cfg):
    b = build_bundle(cfg, "merge", 10)
    b.method.freeze()
    return b


def test_tables_nested_and_data_independent(merge):
    m = merge.method
    table = m.table
    n = m.n_tokens
    for k in range(1, n + 1):
        assert len(torch.unique(table[k - 1])) == k
    for k in range(1, n):  # every cluster at K is a union of clusters at K+1
        coarse, fine = table[k - 1], table[k]
        for c in torch.unique(fine):
            assert len(torch.unique(coarse[fine == c])) == 1
    assert torch.equal(table[n - 1], torch.arange(n))  # K = N: identity, in order
    z1, z2 = torch.randn(2, n, 16), torch.randn(2, n, 16)
    assert torch.equal(m.view(8, z1).P, m.view(8, z2).P)  # the same grouping for any image


def test_blocks_respected_when_k_ge_blocks(merge):
    m = merge.method
    n = m.n_tokens
    block = torch.arange(n) // (n // m.options.blocks)
    for k in range(m.options.blocks, n + 1):
        labels = m.table[k - 1]
        for c in torch.unique(labels):
            assert len(torch.unique(block[labels == c])) == 1


def test_table_bit_identical_after_save_load(cfg, merge, tmp_path):
    merge.latent_mean, merge.latent_std = torch.zeros(16), torch.ones(16)
    merge.dits["joint"] = merge.new_dit()
    merge.stages = ["tokenizer", "dit"]
    path = tmp_path / "m.safetensors"
    save_bundle(merge, path)
    loaded = load_bundle(path, cfg, "merge", 10)
    assert torch.equal(loaded.method.table, merge.method.table)
    assert torch.equal(loaded.method.embed, merge.method.embed)
    with pytest.raises(UserError, match="for method 'merge', not 'tome'"):
        load_bundle(path, cfg, "tome", 10)
    other = load_config("tiny", overrides={"tokenizer.n_tokens": 16, "lengths.train": [4, 8, 16],
                                           "lengths.probs": [0.4, 0.3, 0.3]})
    with pytest.raises(UserError, match="N=32"):
        load_bundle(path, other, "merge", 10)


def test_k_equals_n_is_plain_dit_and_tokenizer(merge):
    torch.manual_seed(0)
    dit = merge.new_dit()
    for p in dit.parameters():  # non-zero weights so the test can fail
        p.data.normal_(0, 0.05)
    n = merge.n_tokens
    x, t, y = torch.randn(3, n, 16), torch.rand(3), torch.tensor([1, 2, 10])
    view = merge.method.view(n)
    assert torch.equal(dit(x, t, y, view), dit(x, t, y, None))
    z = F.normalize(torch.randn(3, n, 16), dim=-1)
    assert torch.equal(merge.method.reconstruct_tokens(z, n), z)


@pytest.mark.parametrize("qk_norm", [False, True])
def test_proportional_attention_equals_repeated_tokens(qk_norm):
    torch.manual_seed(0)
    attn = Attention(16, 2, qk_norm=qk_norm)
    sizes = torch.tensor([3.0, 1.0, 2.0, 4.0])
    x = torch.randn(2, 4, 16)
    bias = torch.log(sizes)[None, None, None, :]
    merged = attn(x, bias)
    repeated = torch.repeat_interleave(x, sizes.long(), dim=1)
    full = attn(repeated)
    first = torch.cumsum(sizes.long(), 0) - sizes.long()
    torch.testing.assert_close(merged, full[:, first], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("block", [AdaLNBlock, LightningBlock])
def test_proportional_attention_equals_repeated_tokens_in_a_block(block):
    """A whole DiT block (either arch) on merged tokens with bias log(m) == on the tokens repeated m times."""
    torch.manual_seed(0)
    blk = block(16, 2)
    for p in blk.parameters():  # non-zero adaLN so modulation is exercised
        p.data.normal_(0, 0.1)
    sizes = torch.tensor([3.0, 1.0, 2.0, 4.0])
    x, c = torch.randn(2, 4, 16), torch.randn(2, 16)
    merged = blk(x, c, torch.log(sizes)[None, None, None, :])
    full = blk(torch.repeat_interleave(x, sizes.long(), dim=1), c)
    first = torch.cumsum(sizes.long(), 0) - sizes.long()
    torch.testing.assert_close(merged, full[:, first], rtol=1e-5, atol=1e-5)


def test_pooled_noise_variance_and_weighted_loss(merge):
    view = merge.method.view(6)
    eps = view.merge(torch.randn(20000, merge.n_tokens, 1))[..., 0]
    np.testing.assert_allclose(eps.var(0).numpy(), (1 / view.sizes).numpy(), rtol=0.06)
    # size-weighted loss on merged tokens == full-space MSE on the unmerged prediction
    u, v = torch.randn(5, 6, 16), torch.randn(5, 6, 16)
    weighted = (((u - v) ** 2).mean(-1) * view.sizes * view.k / view.n_tokens).mean()
    full = ((view.unmerge(u) - view.unmerge(v)) ** 2).mean()
    torch.testing.assert_close(weighted, full)


def test_gradient_reaches_embedding_table(cfg):
    b = build_bundle(cfg, "merge", 10)
    z = F.normalize(torch.randn(4, b.n_tokens, 16), dim=-1)
    gen = torch.Generator().manual_seed(0)
    b.method.train_lengths, b.method.train_probs = [8], [1.0]
    out, aux = b.method.train_tokens(z, gen)
    (out.square().sum() + aux["align"]).backward()
    assert b.method.embed.grad is not None and b.method.embed.grad.abs().sum() > 0
    b.method.embed.grad = None
    out, _ = b.method.train_tokens(z, gen)
    out.square().sum().backward()  # the straight-through path alone also reaches the table
    assert b.method.embed.grad.abs().sum() > 0


def test_any_length_samples_and_bad_length(merge):
    dit = merge.new_dit().eval()
    merge.latent_mean, merge.latent_std = torch.zeros(16), torch.ones(16)
    for k in (1, 5, 13, 32):
        view = merge.method.view(k)
        zk = sample(dit, view, torch.tensor([0, 1]), torch.randn(2, 32, 16), steps=4, cfg_scale=2.0)
        assert zk.shape == (2, k, 16)
        img = merge.tokenizer.decode(merge.method.expand(zk, view))
        assert img.shape == (2, 3, 32, 32) and torch.isfinite(img).all()
    for bad in (0, 33, -1):
        with pytest.raises(UserError, match="outside 1..32"):
            merge.method.view(bad)


def test_flow_loss_runs_for_per_image_views(merge):
    dit = merge.new_dit()
    labels = torch.stack([torch.randint(0, 4, (32,)) for _ in range(3)])
    labels[:, :4] = torch.arange(4)  # every cluster non-empty
    view = view_from_labels(labels, 4)
    loss = flow_loss(dit, torch.randn(3, 32, 16), torch.tensor([0, 1, 2]), view)
    assert torch.isfinite(loss)
