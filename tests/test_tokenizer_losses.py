"""Tokenizer losses (issue 15): perceptual, adversarial and representation alignment, on tiny random
networks saved to local files; gradients flow, the options are recorded and hashed, nothing downloads."""

import pytest
import torch
from safetensors.torch import save_file

from vltbench.core.config import load_config
from vltbench.data import load_dataset
from vltbench.core.errors import UserError
from vltbench.models.losses import Perceptual, RepaTarget, load_weights
from vltbench.models.bundle import build_bundle, training_identity
from vltbench.training.loops import TokenizerAux, _TokenizerStep, train_tokenizer
from helpers import SMALL

timm = pytest.importorskip("timm")


def _save(model, path):
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return str(path)


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    d = tmp_path_factory.mktemp("nets")
    torch.manual_seed(0)
    cnn = timm.create_model("test_resnet", pretrained=False, features_only=True)
    vit = timm.create_model("test_vit", pretrained=False, num_classes=0)
    return {"cnn": _save(cnn, d / "cnn.safetensors"), "vit": _save(vit, d / "vit.safetensors")}


def _cfg(nets, **extra):
    o = {**SMALL, "tokenizer.steps": 3, "tokenizer.warm_start": 0, "tokenizer.batch_size": 4, "tokenizer.arch": "timm",
         "data.train_count": 26, "data.val_count": 13,
         "tokenizer.losses.perceptual.weight": 0.5, "tokenizer.losses.perceptual.model": "test_resnet",
         "tokenizer.losses.perceptual.weights": nets["cnn"],
         "tokenizer.losses.adversarial.weight": 0.1, "tokenizer.losses.adversarial.channels": 8,
         "tokenizer.losses.adversarial.layers": 2,
         "tokenizer.losses.repa.weight": 0.2, "tokenizer.losses.repa.model": "test_vit",
         "tokenizer.losses.repa.weights": nets["vit"], "tokenizer.losses.repa.proj_dim": 16, **extra}
    return load_config("tiny", overrides=o)


def test_missing_weights_file_is_one_line_naming_file_and_key(tmp_path):
    with pytest.raises(UserError) as e:
        load_weights(str(tmp_path / "vgg.safetensors"), "tokenizer.losses.perceptual.weights")
    msg = str(e.value)
    assert "\n" not in msg and "vgg.safetensors" in msg and "tokenizer.losses.perceptual.weights" in msg
    with pytest.raises(UserError, match="tokenizer.losses.repa.weights"):
        RepaTarget("test_vit", str(tmp_path / "nope.safetensors"))


def test_weights_of_another_network_are_refused(nets):
    with pytest.raises(UserError, match="does not fit timm 'test_vit'"):
        RepaTarget("test_vit", nets["cnn"])


def test_torch_file_loads_weights_only(nets, tmp_path):
    from safetensors.torch import load_file
    path = tmp_path / "cnn.pt"
    torch.save(load_file(nets["cnn"]), path)
    p = Perceptual("test_resnet", str(path))
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert p(x, x).item() == 0.0 and p(x, -x).item() > 0


def test_weight_without_network_is_a_config_error():
    with pytest.raises(UserError, match="tokenizer.losses.perceptual.model"):
        load_config("tiny", overrides={"tokenizer.losses.perceptual.weight": 1.0})


def test_every_loss_sends_gradient_to_the_tokenizer(nets):
    cfg = _cfg(nets)
    b = build_bundle(cfg, "merge", 13)
    aux = TokenizerAux(b, "cpu")
    step = _TokenizerStep(b.tokenizer, b.method, aux)
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    rec, losses, rec_img = step(x, torch.Generator().manual_seed(0), step=0)
    assert {"perceptual", "adversarial", "repa"} <= set(losses)
    for name in ("perceptual", "adversarial", "repa"):
        b.tokenizer.zero_grad(set_to_none=True)
        losses[name].backward(retain_graph=True)
        g = sum(p.grad.abs().sum() for p in b.tokenizer.encoder.parameters() if p.grad is not None)
        assert g > 0, name
    # the generator's adversarial term leaves the discriminator without gradient; the frozen nets too
    assert all(p.grad is None for p in aux.disc.parameters())
    assert all(p.grad is None for p in aux.perceptual.net.parameters())
    assert all(p.grad is None for p in aux.repa.net.parameters())
    assert step.repa_proj[0].weight.grad is not None


def test_training_steps_discriminator_and_records_the_losses(nets, tmp_path):
    cfg = _cfg(nets)
    b = build_bundle(cfg, "merge", 13)
    ds = load_dataset("embedded", image_size=32, train_count=26, val_count=13)
    out = train_tokenizer(b, ds, "cpu")
    assert torch.isfinite(torch.tensor(out["tokenizer_final_mse"]))
    r = cfg.resolved("merge")["tokenizer"]["losses"]
    assert r["perceptual"]["weight"] == 0.5 and r["adversarial"]["weight"] == 0.1 and r["repa"]["weight"] == 0.2
    assert r["repa"]["weights"] == nets["vit"]
    ident = training_identity(cfg, "merge", 13)
    assert ident["tokenizer"]["losses"]["repa"]["weight"] == 0.2
    plain = training_identity(load_config("tiny"), "merge", 13)
    assert "losses" not in plain["tokenizer"] and "arch" not in plain["dit"]  # shipped checkpoints still match


def test_discriminator_learns(nets):
    """One hinge step of the discriminator on real vs reconstructed images lowers its loss."""
    from vltbench.models.losses import PatchDiscriminator, hinge_d_loss
    torch.manual_seed(0)
    d = PatchDiscriminator(8, 2)
    opt = torch.optim.SGD(d.parameters(), lr=0.1)
    real, fake = torch.rand(4, 3, 32, 32), -torch.rand(4, 3, 32, 32)
    losses = []
    for _ in range(3):
        opt.zero_grad()
        logits = d(torch.cat([real, fake]))
        loss = hinge_d_loss(logits[:4], logits[4:])
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_refine_head_starts_as_identity_trains_and_is_hashed():
    """tokenizer.refine: a residual conv head after the patch head; off by default (state dict and
    identity of the shipped checkpoints unchanged), the identity at step 0, trained by the tokenizer
    loop, and part of the training identity when on."""
    plain = load_config("tiny", overrides=SMALL)
    assert build_bundle(plain, "tail-drop", 10).tokenizer.refine is None
    assert "refine" not in training_identity(plain, "tail-drop", 10)["tokenizer"]
    cfg = load_config("tiny", overrides={**SMALL, "tokenizer.refine": 8, "tokenizer.steps": 3, "tokenizer.warm_start": 0,
                                         "tokenizer.batch_size": 4})
    assert training_identity(cfg, "tail-drop", 10)["tokenizer"]["refine"] == 8
    torch.manual_seed(0)
    b = build_bundle(cfg, "tail-drop", 10)
    z = b.tokenizer.encode(torch.rand(2, 3, cfg.data.image_size, cfg.data.image_size) * 2 - 1)
    head = b.tokenizer.refine
    b.tokenizer.refine = None
    before = b.tokenizer.decode(z)
    b.tokenizer.refine = head
    assert torch.equal(b.tokenizer.decode(z), before)  # zero-initialised last conv: x + 0
    w0 = head[-1].weight.detach().clone()
    train_tokenizer(b, load_dataset("embedded", image_size=cfg.data.image_size, train_count=20, val_count=10), "cpu")
    assert not torch.equal(head[-1].weight, w0)
