"""training.state.load_weights: a finished tokenizer state's weights into another bundle (tokenizer.init_from,
scripts/size_small_rgb.py --init-from; scripts/degradation_ceiling.py --state)."""

import shutil

import pytest
import torch
from helpers import SMALL

from vltbench.core.config import load_config
from vltbench.core.errors import UserError
from vltbench.core.hashing import sha256_file
from vltbench.data import load_dataset
from vltbench.models.bundle import build_bundle, training_identity
from vltbench.training import loops as train
from vltbench.training.state import load_weights, save_state, state_dir


def _state(path, bundle, done: bool):
    params = [*bundle.tokenizer.parameters(), *bundle.method.parameters()]
    opt = torch.optim.AdamW(params)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    save_state(path, "some-other-training", 7, done, {"tokenizer": bundle.tokenizer, "method": bundle.method},
               opt, sched, {"gen": torch.Generator().manual_seed(0)}, {})


def test_loads_a_finished_state_and_refuses_an_unfinished_one(tmp_path):
    cfg = load_config("tiny")
    torch.manual_seed(0)
    a = build_bundle(cfg, "merge", 10)
    torch.manual_seed(1)
    b = build_bundle(cfg, "merge", 10)
    _state(tmp_path / "half" / "tokenizer.safetensors", a, done=False)
    with pytest.raises(UserError, match="not a finished tokenizer training state"):
        load_weights(b, tmp_path / "half" / "tokenizer.safetensors")
    _state(tmp_path / "done" / "tokenizer.safetensors", a, done=True)
    assert load_weights(b, tmp_path / "done" / "tokenizer.safetensors") == "done (identity some-other-training, step 7)"
    for m, n in ((a.tokenizer, b.tokenizer), (a.method, b.method)):
        sa, sb = m.state_dict(), n.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


FINE = {**SMALL, "data.name": "embedded", "data.image_size": 16, "tokenizer.patch_size": 4,
        "tokenizer.steps": 4, "tokenizer.warm_start": 0, "tokenizer.batch_size": 8, "tokenizer.warmup": 1}


def _finished(tmp_path, method):
    """A finished 4-step tokenizer state of `method`, trained in its own cache."""
    cfg = load_config("tiny", overrides={**FINE, "seed": 3})
    b = build_bundle(cfg, method, 10)
    train.train_tokenizer(b, _data(cfg), "cpu")
    return state_dir(b) / "tokenizer.safetensors"


def _data(cfg):
    return load_dataset(cfg.data.name, image_size=cfg.data.image_size, train_count=40, val_count=20)


@pytest.mark.parametrize("method", ["merge", "tail-drop"])
def test_init_from_is_loading_the_state_then_training(tmp_path, method):
    """tokenizer.init_from gives bit for bit the weights of loading the state by hand and training from there
    (what scripts/size_small_rgb.py --init-from did before the key existed); the file's content, not its
    path, is in the identity."""
    state = _finished(tmp_path, method)
    copy = tmp_path / "elsewhere" / "tokenizer.safetensors"
    copy.parent.mkdir()
    shutil.copy(state, copy)
    by_hand = build_bundle(load_config("tiny", overrides=FINE), method, 10)
    load_weights(by_hand, state)
    train.train_tokenizer(by_hand, _data(by_hand.cfg), "cpu")
    cfg = load_config("tiny", overrides={**FINE, "tokenizer.init_from": str(copy)})
    keyed = build_bundle(cfg, method, 10)
    train.train_tokenizer(keyed, _data(cfg), "cpu")
    for m, n in ((by_hand.tokenizer, keyed.tokenizer), (by_hand.method, keyed.method)):
        sa, sb = m.state_dict(), n.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    ident = training_identity(cfg, method, 10)
    assert ident["tokenizer"]["init_from"] == {"sha256": sha256_file(state)}
    assert ident == training_identity(load_config("tiny", overrides={**FINE, "tokenizer.init_from": str(state)}),
                                      method, 10)
    assert keyed.method.describe()["tokenizer_encoder_start"] == (
        f"fine-tuned from the finished tokenizer state elsewhere/tokenizer.safetensors (sha256 {sha256_file(state)[:12]})")
    assert "init_from" not in training_identity(load_config("tiny", overrides=FINE), method, 10)["tokenizer"]


def test_init_from_refuses_what_it_cannot_start_from(tmp_path):
    state = _finished(tmp_path, "merge")
    with pytest.raises(ValueError, match="set tokenizer.warm_start=0"):
        load_config("tiny", overrides={**FINE, "tokenizer.warm_start": 2, "tokenizer.init_from": str(state)})
    missing = load_config("tiny", overrides={**FINE, "tokenizer.init_from": str(tmp_path / "nope.safetensors")})
    with pytest.raises(UserError, match="tokenizer.init_from: weights file .* does not exist"):
        training_identity(missing, "merge", 10)
    wider = load_config("tiny", overrides={**FINE, "tokenizer.width": 48, "tokenizer.init_from": str(state)})
    with pytest.raises(UserError, match="holds a tokenizer of another method or size"):
        train.train_tokenizer(build_bundle(wider, "merge", 10), _data(wider), "cpu")
