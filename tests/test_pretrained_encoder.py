"""tokenizer.encoder_init (issue 20): the encoder starts from a local pretrained ViT (upstream: DINOv2),
LayerScale folded; the file's sha256 is in the identity; records say how the encoder started; a
checkpoint or a resumed state never re-applies it. Tiny random ViTs with DINOv2-S's block shapes."""

import pytest
import torch
from safetensors.torch import save_file

from vltbench.models import pretrained
from vltbench.training import loops as train
from vltbench.core.config import load_config
from vltbench.data import load_dataset
from vltbench.core.errors import UserError
from vltbench.models.bundle import build_bundle, load_bundle, save_bundle, training_identity
from helpers import SMALL

timm = pytest.importorskip("timm")
from timm.models.vision_transformer import VisionTransformer  # noqa: E402

MODEL = "vit_small_patch14_dinov2"  # width 384, 6 heads, patch 14, LayerScale: the files below fit its blocks
BASE = {**SMALL, "tokenizer.arch": "timm", "tokenizer.width": 384, "tokenizer.heads": 6,
        "tokenizer.enc_depth": 2, "tokenizer.dec_depth": 1, "tokenizer.encoder_init.model": MODEL}


def _vit(path, seed=0, mlp_ratio=4.0):
    """A 2-block ViT (patch 14) with random weights and non-trivial LayerScale, saved as safetensors."""
    torch.manual_seed(seed)
    vit = VisionTransformer(img_size=28, patch_size=14, embed_dim=384, depth=2, num_heads=6, mlp_ratio=mlp_ratio,
                            init_values=0.1, num_classes=0).eval()
    with torch.no_grad():
        for name, p in vit.named_parameters():
            p.add_(torch.randn_like(p) * 0.05) if not name.endswith("gamma") else p.uniform_(0.3, 2.0)
    save_file({k: v.contiguous() for k, v in vit.state_dict().items()}, str(path))
    return vit, str(path)


@pytest.fixture(scope="module")
def vit(tmp_path_factory):
    return _vit(tmp_path_factory.mktemp("vit") / "dinov2-s.safetensors")


def _cfg(weights, **over):
    return load_config("tiny", overrides={**BASE, "tokenizer.encoder_init.weights": weights, **over})


def test_encoder_blocks_compute_the_pretrained_blocks(vit):
    src, path = vit
    cfg = _cfg(path, **{"data.image_size": 28, "tokenizer.patch_size": 14})
    tok = build_bundle(cfg, "tail-drop", 10).tokenizer
    text = pretrained.load_encoder_init(cfg.tokenizer, tok)
    x = torch.randn(2, 9, 384)
    with torch.no_grad():
        for i in range(2):  # LayerScale folded into attn.proj / mlp.fc2: the same function
            assert torch.allclose(tok.encoder[i](x), src.blocks[i](x), atol=1e-5, rtol=1e-5)
        img = torch.randn(2, 3, 28, 28)
        assert torch.equal(tok.patch_embed(img), src.patch_embed(img))  # same patch size: copied
    assert "blocks 0-1 (LayerScale folded), patch embedding copied" in text and "not copied: positional" in text


def test_patch_embedding_is_resampled_when_the_patch_size_differs(vit):
    from timm.layers import resample_patch_embed

    src, path = vit
    cfg = _cfg(path, **{"data.image_size": 32, "tokenizer.patch_size": 16})  # the paper's 14 -> 16
    tok = build_bundle(cfg, "tail-drop", 10).tokenizer
    assert "patch embedding resampled from 14 to 16" in pretrained.load_encoder_init(cfg.tokenizer, tok)
    want = resample_patch_embed(src.patch_embed.proj.weight.detach(), [16, 16])
    assert torch.allclose(tok.patch_embed.proj.weight, want) and torch.equal(tok.patch_embed.proj.bias, src.patch_embed.proj.bias)


def test_mismatches_are_one_line_saying_what_to_change(vit, tmp_path):
    _, path = vit
    _, other = _vit(tmp_path / "mlp3.safetensors", mlp_ratio=3.0)
    cfg = _cfg(other)
    with pytest.raises(UserError) as e:
        pretrained.load_encoder_init(cfg.tokenizer, build_bundle(cfg, "tail-drop", 10).tokenizer)
    msg = str(e.value)
    assert "\n" not in msg and "blocks.0.mlp.fc1.weight has shape (1152, 384)" in msg and "(1536, 384)" in msg
    with pytest.raises(UserError, match="set tokenizer.width: 384 and tokenizer.heads: 6"):
        build_bundle(_cfg(path, **{"tokenizer.width": 64, "tokenizer.heads": 4}), "tail-drop", 10)
    with pytest.raises(UserError, match="set tokenizer.enc_depth to at most 12"):
        build_bundle(_cfg(path, **{"tokenizer.enc_depth": 13}), "tail-drop", 10)
    with pytest.raises(UserError, match="needs arch: timm"):
        _cfg(path, **{"tokenizer.arch": "vit"})
    with pytest.raises(UserError, match="tokenizer.encoder_init.weights: weights file .*nope.safetensors does not exist"):
        build_bundle(_cfg(str(tmp_path / "nope.safetensors")), "tail-drop", 10)
    cfg = _cfg(path, **{"tokenizer.enc_depth": 3})  # the file holds 2 blocks
    with pytest.raises(UserError, match="has no blocks.2.norm1.weight"):
        pretrained.load_encoder_init(cfg.tokenizer, build_bundle(cfg, "tail-drop", 10).tokenizer)


def test_identity_holds_the_file_content_not_its_path(vit, tmp_path):
    _, path = vit
    off = training_identity(load_config("tiny", overrides=SMALL), "merge", 10)
    assert "encoder_init" not in off["tokenizer"]  # existing identities (shipped checkpoints) unchanged
    copy = tmp_path / "copy.safetensors"
    copy.write_bytes(open(path, "rb").read())
    a, b = training_identity(_cfg(path), "merge", 10), training_identity(_cfg(str(copy)), "merge", 10)
    assert a == b and a["tokenizer"]["encoder_init"]["sha256"] == pretrained.weights_sha256(path)
    _, other = _vit(tmp_path / "other.safetensors", seed=1)
    assert training_identity(_cfg(other), "merge", 10) != a


def test_records_say_how_the_encoder_started(vit):
    _, path = vit
    notes = build_bundle(_cfg(path, **{"tokenizer.patch_size": 16, "tokenizer.warm_start": 0}), "merge", 10).method.describe()
    sha = pretrained.weights_sha256(path)[:12]
    assert notes["tokenizer_encoder_start"] == (f"pretrained: {MODEL} from dinov2-s.safetensors (sha256 {sha}), "
                                                "blocks 0-1 (LayerScale folded), patch embedding resampled from 14 to 16")
    both = build_bundle(_cfg(path, **{"tokenizer.warm_start": 2}), "merge", 10).method.describe()
    assert both["tokenizer_encoder_start"].endswith("; then the shared warm start (steps 1-2)")
    assert both["tokenizer_warm_start"].startswith("shared warm start: steps 1-2")
    off = build_bundle(load_config("tiny", overrides=SMALL), "merge", 10).method.describe()
    assert off["tokenizer_encoder_start"] == "random init"


def test_training_applies_it_once_and_loading_never(vit, tmp_path, monkeypatch):
    monkeypatch.setenv("VLTBENCH_CACHE", str(tmp_path / "cache"))
    src, path = vit
    cfg = _cfg(path, **{"tokenizer.patch_size": 16, "tokenizer.steps": 2, "tokenizer.warm_start": 0, "tokenizer.batch_size": 2,
                        "tokenizer.lr": 1e-9, "tokenizer.warmup": 1, "tokenizer.ema": 0.999})  # EMA as the preset
    ds = load_dataset("embedded", image_size=32, train_count=8, val_count=4)
    b = build_bundle(cfg, "tail-drop", 10)
    train.train_tokenizer(b, ds, "cpu")
    x = torch.randn(1, 5, 384)
    with torch.no_grad():  # trained from the pretrained blocks (lr ~ 0: still them, in the EMA weights too)
        assert torch.allclose(b.tokenizer.encoder[1](x), src.blocks[1](x), atol=1e-4)
    ckpt = tmp_path / "tok.safetensors"
    save_bundle(b, ckpt)

    def boom(*a, **k):
        raise AssertionError("pretrained weights re-applied")

    monkeypatch.setattr(train, "load_encoder_init", boom)
    monkeypatch.setattr(pretrained, "load_weights", boom)
    loaded = load_bundle(ckpt, cfg, "tail-drop", 10)
    sd = b.tokenizer.state_dict()
    assert all(torch.equal(sd[k], v) for k, v in loaded.tokenizer.state_dict().items())
    again = build_bundle(cfg, "tail-drop", 10)
    train.train_tokenizer(again, ds, "cpu")  # the finished state: loaded, not re-initialised
    assert all(torch.equal(sd[k], v) for k, v in again.tokenizer.state_dict().items())
