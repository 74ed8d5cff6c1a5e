"""The shared warm start (tokenizer.warm_start): a plain autoencoder at K = N for the first steps, the
same for every method, cached once and reused by methods with the same backbone (issue 20)."""

import pytest
import torch
import torch.nn.functional as F

from vltbench.training import loops as train
from vltbench.core.config import load_config
from vltbench.data import load_dataset
from vltbench.core.errors import UserError
from vltbench.models.bundle import build_bundle, training_identity
from helpers import SMALL

WARM = {**SMALL, "data.name": "embedded", "data.image_size": 16, "tokenizer.patch_size": 4,
        "tokenizer.steps": 8, "tokenizer.warm_start": 5, "tokenizer.batch_size": 8}


def _data(cfg):
    d = cfg.data
    return load_dataset(d.name, image_size=d.image_size, train_count=40, val_count=20)


def _trained(method, log=None, **over):
    cfg = load_config("tiny", overrides={**WARM, **over})
    b = build_bundle(cfg, method, 10)
    train.train_tokenizer(b, _data(cfg), "cpu", loss_log=log)
    return b


def test_warm_steps_bypass_the_length_mechanism():
    b = build_bundle(load_config("tiny", overrides=WARM), "merge", 10)
    step = train._TokenizerStep(b.tokenizer, b.method, None, warm_start=5)
    x = torch.rand(2, 3, 16, 16)
    gen = torch.Generator().manual_seed(0)
    mse, aux, _ = step(x, gen, step=4)
    assert aux == {} and torch.equal(gen.get_state(), torch.Generator().manual_seed(0).get_state())  # no K drawn
    assert torch.allclose(mse, F.mse_loss(b.tokenizer.decode(b.tokenizer.encode(x)), x))
    _, aux, _ = step(x, gen, step=5)
    assert "align" in aux  # merge's own mechanism from step warm_start on


def test_reused_warm_stage_gives_the_same_weights_as_training_it(tmp_path, monkeypatch, capfd):
    from vltbench.core import progress

    monkeypatch.setattr(progress, "QUIET", False)  # an earlier quiet run leaves the switch on
    monkeypatch.setenv("VLTBENCH_CACHE", str(tmp_path / "fresh"))
    alone = _trained("merge")  # trains its own warm stage (and caches it)
    monkeypatch.setenv("VLTBENCH_CACHE", str(tmp_path / "shared"))
    other = _trained("tail-drop")  # trains the warm stage first ...
    path = train.warm_path(other)
    assert path.is_file()
    stamp = path.stat().st_mtime_ns
    capfd.readouterr()
    reused = _trained("merge", log=tmp_path / "merge.safetensors")  # ... merge starts from it
    assert "shared warm start (steps 1-5) reused" in "".join(capfd.readouterr())
    rows = train.read_loss_log(train.loss_log_path(tmp_path / "merge.safetensors", "tokenizer"))
    assert [r["step"] for r in rows] == list(range(1, 9))  # the warm stage's lines, then merge's own
    assert train.warm_path(reused) == path and path.stat().st_mtime_ns == stamp
    a, b = alone.tokenizer.state_dict(), reused.tokenizer.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(alone.method.table, reused.method.table)


def test_backbones_that_differ_warm_up_apart():
    cfg = load_config("tiny", overrides=WARM)
    paths = {m: train.warm_path(build_bundle(cfg, m, 10)) for m in ("merge", "tail-drop", "tome", "nested-dropout")}
    assert paths["merge"] == paths["tail-drop"] == paths["tome"]  # same backbone: one warm stage
    assert paths["nested-dropout"] != paths["merge"]  # causal latent attention: its own


def test_warm_start_is_in_the_identity_and_off_by_default():
    off = load_config("tiny", overrides=SMALL)
    assert off.tokenizer.warm_start == 0 or "warm_start" in training_identity(off, "merge", 10)["tokenizer"]
    a = training_identity(load_config("tiny", overrides={**SMALL, "tokenizer.warm_start": 0}), "merge", 10)
    b = training_identity(load_config("tiny", overrides={**SMALL, "tokenizer.warm_start": 2}), "merge", 10)
    assert "warm_start" not in a["tokenizer"] and b["tokenizer"]["warm_start"] == 2  # old checkpoints still match


def test_warm_start_must_leave_steps_for_the_mechanism():
    with pytest.raises(UserError, match="warm_start=8 must be below steps=8"):
        load_config("tiny", overrides={**WARM, "tokenizer.warm_start": 8})


def test_records_say_how_the_tokenizer_started():
    on = build_bundle(load_config("tiny", overrides=WARM), "tail-drop", 10).method.describe()
    assert on["tokenizer_warm_start"].startswith("shared warm start: steps 1-5 of 8")
    off = build_bundle(load_config("tiny", overrides={**WARM, "tokenizer.warm_start": 0}), "tail-drop", 10)
    assert off.method.describe()["tokenizer_warm_start"].startswith("none")
