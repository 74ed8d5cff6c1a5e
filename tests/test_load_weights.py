"""training.state.load_weights: a finished tokenizer state's weights into another bundle (fine-tuning stages,
scripts/size_small_rgb.py --init-from; scripts/degradation_ceiling.py --state)."""

import pytest
import torch

from vltbench.core.config import load_config
from vltbench.models.bundle import build_bundle
from vltbench.training.state import load_weights, save_state


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
    with pytest.raises(SystemExit, match="not a finished tokenizer training state"):
        load_weights(b, tmp_path / "half" / "tokenizer.safetensors")
    _state(tmp_path / "done" / "tokenizer.safetensors", a, done=True)
    assert load_weights(b, tmp_path / "done" / "tokenizer.safetensors") == "done (identity some-other-training, step 7)"
    for m, n in ((a.tokenizer, b.tokenizer), (a.method, b.method)):
        sa, sb = m.state_dict(), n.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
