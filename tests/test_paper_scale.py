"""Paper-scale presets (issue 15): the official LGM recipe, the lightning generator, the K cycle."""

import json

import pytest
import torch

from vltbench.core.config import load_config
from vltbench.data import load_dataset
from vltbench.core.errors import UserError
from vltbench.models.bundle import build_bundle
from vltbench.training.loops import lr_lambda, train_dits
from helpers import SMALL


@pytest.mark.parametrize("preset,size", [("imagenet256", "B"), ("imagenet256-xl", "XL")])
def test_presets_carry_the_official_recipe(preset, size):
    c = load_config(preset)
    d, t = c.dit, c.tokenizer
    # movinghoon/lgm LightningDiT/train.py --use_aligned_schedule, README --num_tokens_list
    assert (d.arch, d.size, d.lr, d.lr_schedule, d.warmup, d.weight_decay, d.betas, d.grad_clip, d.ema,
            d.label_dropout, d.batch_size, d.steps) == ("lightning", size, 2e-4, "constant", 0, 0.0, (0.9, 0.95),
                                                        0.0, 0.9999, 0.1, 1024, 500_000)
    assert c.lengths.dit_cycle == [128, 128, 128, 128, 64, 64, 32] and c.tokenizer.n_tokens not in c.lengths.dit_cycle
    # tokenizer/config.yaml
    assert (t.arch, t.lr, t.weight_decay, t.betas, t.lr_schedule, t.warmup, t.grad_clip, t.batch_size, t.steps,
            t.ema) == ("timm", 1e-4, 1e-4, (0.9, 0.95), "cosine", 5000, 1.0, 64, 240_000, 0.9999)
    assert (c.sampler.steps, c.sampler.shift, tuple(c.sampler.cfg_interval)) == (25, 0.3, (0.15, 1.0))


def test_tiny_preset_keeps_the_plain_dit_and_vit_tokenizer():
    c = load_config("tiny")
    assert (c.dit.arch, c.tokenizer.arch, c.lengths.dit_cycle, c.dit.betas) == ("dit", "vit", None, (0.9, 0.99))


@pytest.mark.parametrize("key,value,words", [
    ("dit.arch", "vit", "dit.arch"), ("tokenizer.arch", "lightning", "tokenizer.arch"),
    ("dit.lr_schedule", "linear", "dit.lr_schedule"), ("dit.betas", [0.9], "dit.betas"), ("dit.betas", [0.9, 1.0], "betas must be two numbers"),
    ("lengths.dit_cycle", [0, 4], "lengths.dit_cycle must lie in 1..tokenizer.n_tokens"),
    ("lengths.dit_cycle", [], "lengths.dit_cycle"), ("tokenizer.losses.adversarial.weight", -1, "adversarial.weight"),
])
def test_bad_new_options_are_one_line_errors(key, value, words):
    with pytest.raises(UserError) as e:
        load_config("tiny", overrides={key: value})
    assert words in str(e.value) and "\n" not in str(e.value)


def test_constant_schedule_after_warmup():
    f = lr_lambda(2, 10, "constant")
    assert [f(s) for s in range(5)] == [0.5, 1.0, 1.0, 1.0, 1.0]
    assert lr_lambda(0, 10, "cosine")(9) < 0.2


def test_dit_cycles_k_with_the_lightning_generator(tmp_path):
    over = {**SMALL, "dit.arch": "lightning", "dit.steps": 6, "dit.batch_size": 8, "dit.lr_schedule": "constant",
            "dit.warmup": 0, "dit.grad_clip": 0, "dit.betas": [0.9, 0.95], "lengths.dit_cycle": [16, 16, 8],
            "data.train_count": 26, "data.val_count": 13}
    cfg = load_config("tiny", overrides=over)
    b = build_bundle(cfg, "tail-drop", 13)
    b.stages = ["tokenizer"]
    ds = load_dataset("embedded", image_size=32, train_count=26, val_count=13)
    ckpt = tmp_path / "m.safetensors"
    out = train_dits(b, ds, "cpu", loss_log=ckpt)
    assert torch.isfinite(torch.tensor(out["dit_joint_final_loss"]))
    lines = [json.loads(x) for x in (tmp_path / "m.safetensors.dit-joint.losses.jsonl").read_text().splitlines()]
    assert [x["K"] for x in lines] == [16, 16, 8, 16, 16, 8]
    assert len({x["lr"] for x in lines}) == 1
    assert b.dits["joint"].arch == "lightning"
