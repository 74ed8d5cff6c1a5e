"""`vltbench import lgm`: the official LGM checkpoints, imported, reproduce the official code's outputs.

tests/fixtures/lgm holds numbers produced by the official code (github.com/movinghoon/lgm at the commit in
official.json) outside this project: its tokenizer (SoftVQModel2 with merging) and LightningDiT built at a
tiny size with seeded random weights (fp16-representable values, stored as fp16), the inputs, and the
official encode / decode at several K / velocity on merged views / sampling outputs. These tests write the
same weights in the official file layout (a torch pickle with the argparse Namespace and the EMA dict,
xl.pth's {model, model_ema}), import them, and compare in float32.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from helpers import run_benchmark_dry_run, run_cli_here
from lgm_layout import META, OUT, write_official_files
from vltbench.core.errors import UserError
from vltbench.models.lengths import view_from_labels

TOL = 1e-5


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    from vltbench.models.official_lgm import import_lgm
    from vltbench.core.config import load_config
    from vltbench.models.bundle import load_bundle

    tmp = tmp_path_factory.mktemp("lgm")
    f = write_official_files(tmp)
    out = import_lgm(f["tokenizer"], f["generator"], tmp / "lgm.safetensors", latent_stats=f["latent_stats"],
                     config=f["config"])
    cfg = load_config("lgm-official-xl", f["config"])
    bundle = load_bundle(out, cfg, "merge", 10)
    return bundle, out, f


def _max_dev(a, b):
    return (a - b).abs().max().item()


def test_encode_matches_official(imported):
    bundle, _, _ = imported
    with torch.no_grad():
        z = bundle.tokenizer.encode(OUT["images"])
    assert _max_dev(z, OUT["encode"]) < TOL


@pytest.mark.parametrize("k", [4, 8, 16, 32])
def test_decode_at_k_matches_official(imported, k):
    bundle, _, _ = imported
    m = bundle.method
    with torch.no_grad():
        z = bundle.tokenizer.encode(OUT["images"])
        view = m.view(k)
        x = bundle.tokenizer.decode(m.expand(view.merge(z), view))
    assert _max_dev(x, OUT[f"decode_k{k}"]) < TOL


def test_merge_table_gives_official_groupings(imported):
    """vltbench's frozen table, from merge_module.embeddings with blocks 4, partitions the positions as
    the official MergeModule does at every K (cluster numbering may differ)."""
    table = imported[0].method.table
    for k in range(4, 32):
        ours, theirs = table[k - 1], OUT[f"labels_k{k}"]
        pairs = {(int(a), int(b)) for a, b in zip(ours, theirs)}
        assert len(pairs) == k == len(set(ours.tolist())), k


def _official_view(k):
    return None if k == 32 else view_from_labels(OUT[f"labels_k{k}"], k)


@pytest.mark.parametrize("k", [8, 16, 32])
def test_velocity_on_merged_views_matches_official(imported, k):
    dit = imported[0].dits["joint"]
    with torch.no_grad():
        v = dit(OUT[f"vel_x_k{k}"], OUT[f"vel_t_k{k}"], OUT[f"vel_y_k{k}"], _official_view(k))
    assert _max_dev(v, OUT[f"velocity_k{k}"]) < TOL


@pytest.mark.parametrize("k", [8, 32])
def test_sampler_matches_official(imported, k):
    """8 Euler points, shift 0.2, per-position CFG 4.0 from t = 0.15, pooled noise: the official
    LightningDiT.generate on the same full-space noise."""
    from vltbench.models.flow import sample
    from vltbench.models.lengths import LengthView

    dit = imported[0].dits["joint"]
    view = _official_view(k) or LengthView(32, 32)
    s = META["sampler"]
    x = sample(dit, view, OUT[f"sample_y_k{k}"], OUT[f"sample_noise_k{k}"], steps=s["steps"], shift=s["shift"],
               cfg_scale=s["cfg"], cfg_interval=tuple(s["cfg_interval"]))
    assert _max_dev(x, OUT[f"sample_k{k}"]) < TOL


def test_bundle_records_origin_and_key_accounting(imported):
    from vltbench.models.bundle import read_metadata
    from vltbench.core.hashing import sha256_file

    bundle, out, f = imported
    origin = json.loads(read_metadata(out)["origin"])
    assert origin["kind"] == "official LGM release"
    assert origin["tokenizer"]["sha256"] == sha256_file(f["tokenizer"])
    assert origin["generator"]["sha256"] == sha256_file(f["generator"])
    assert origin["tokenizer"]["args"]["tau"] == pytest.approx(0.07) and origin["tokenizer"]["args"]["vq_model"] == "SoftVQ-2"
    assert origin["skipped"]["count"] == len(META["tokenizer_training_only_keys"]) + 2  # + decoder patch embedding
    assert torch.equal(bundle.latent_mean, f["stats"]["mean"].reshape(-1))
    assert bundle.stages == ["tokenizer", "dit"]


def test_every_official_inference_key_is_consumed_once():
    """At the real sizes (the official key names and shapes, from the official code at the fixture's
    commit): every tokenizer key is consumed or skipped by name, every generator key consumed."""
    from vltbench.core.config import load_config
    from vltbench.models.bundle import build_bundle
    from vltbench.models.official_lgm import Keys, dit_state, tokenizer_state

    cfg = load_config("lgm-official-xl")
    with torch.device("meta"):
        bundle = build_bundle(cfg, "merge", 1000)
        tok_sd = {k: torch.empty(s) for k, s in META["tokenizer_full_keys"].items()}
        gen_sd = {k: torch.empty(s) for k, s in META["generator_full_keys"].items()}
        consumed = []
        orig = Keys.take
        try:
            Keys.take = lambda self, key, shape=None: consumed.append(key) or orig(self, key, shape)
            _, _, skipped = tokenizer_state(tok_sd, bundle, "tokenizer.pt")
            assert sorted(consumed + list(skipped)) == sorted(tok_sd) and len(set(consumed)) == len(consumed)
            assert {k.split(".")[0] for k in skipped} == {"repa_model", "decoder_dino", "post_quant_conv_dino",
                                                        "to_pixel_dino", "quantize", "decoder"}
            consumed.clear()
            dit_state(gen_sd, bundle.new_dit(), 28, "xl.pth")
            assert sorted(consumed) == sorted(gen_sd)
        finally:
            Keys.take = orig


def _import(f, tmp_path, **kw):
    from vltbench.models.official_lgm import import_lgm

    args = dict(tokenizer=f["tokenizer"], generator=f["generator"], latent_stats=f["latent_stats"], config=f["config"])
    args.update(kw)
    return import_lgm(out=tmp_path / "x.safetensors", **args)


def test_unknown_missing_and_misshaped_keys_are_one_error(tmp_path):
    f = write_official_files(tmp_path)
    ckpt = torch.load(f["generator"], weights_only=True)
    for change, needle in [(lambda d: d.update({"extra.weight": torch.zeros(1)}), "unknown key extra.weight"),
                           (lambda d: d.pop("final_layer.linear.bias"), "missing key final_layer.linear.bias"),
                           (lambda d: d.update({"pos_embed": torch.zeros(1, 32, 63)}), "pos_embed has shape (1, 32, 63)")]:
        bad = {"model": dict(ckpt["model"]), "model_ema": dict(ckpt["model_ema"])}
        change(bad["model_ema"])
        torch.save(bad, tmp_path / "bad.pth")
        with pytest.raises(UserError, match=needle.replace("(", r"\(").replace(")", r"\)")):
            _import(f, tmp_path, generator=tmp_path / "bad.pth")


def test_payload_pickle_is_refused_without_running(tmp_path):
    f = write_official_files(tmp_path)
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    torch.save({"model": {}, "steps": Payload(), "ema": {}}, tmp_path / "evil.pt")
    with pytest.raises(UserError, match="refused without running it: its pickle asks for the global getattr"):
        _import(f, tmp_path, tokenizer=tmp_path / "evil.pt")
    assert not marker.exists()


def test_lora_checkpoint_is_refused_with_the_reason(tmp_path):
    f = write_official_files(tmp_path)
    gen = torch.load(f["generator"], weights_only=True)
    gen["model"]["transformer.blocks.0.attn.qkv.lora_A.weight"] = torch.zeros(4, 64)
    torch.save(gen, tmp_path / "lora_32.pth")
    with pytest.raises(UserError, match="LoRA.*plain.*noise"):
        _import(f, tmp_path, generator=tmp_path / "lora_32.pth")


def test_cli_import_lgm(tmp_path):
    from typer.testing import CliRunner

    from vltbench.cli import app
    f = write_official_files(tmp_path)
    out = tmp_path / "cli.safetensors"
    r = CliRunner().invoke(app, ["import", "lgm", "--tokenizer", str(f["tokenizer"]), "--generator", str(f["generator"]),
                                 "--latent-stats", str(f["latent_stats"]), "--config", str(f["config"]), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert out.is_file() and "official LGM release" in r.output
    r = run_cli_here("import", "lgm", "--tokenizer", tmp_path / "nope.pt", "--out", out)
    assert r.returncode == 2 and r.stderr.startswith("error: --tokenizer:") and "does not exist" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_eval_sweep_on_the_imported_checkpoint_is_labelled(imported, tmp_path):
    """`vltbench eval --method merge --checkpoint lgm.safetensors --preset lgm-official-xl` runs the normal
    sweep (here on a tiny ImageNet-layout folder, randproj features); the per-K official scales are used,
    and records, leaderboard, report page and check label the model as imported."""
    import vltbench
    from test_data import write_images
    from vltbench.reporting.formats import render

    _, out, f = imported
    for split in ("train", "val"):
        for c in range(10):
            write_images(tmp_path / "imnet" / split / f"n{c:02d}", 4, size=(40, 36), seed=c)
    res = tmp_path / "res"
    with pytest.warns(UserWarning):  # 20 samples < the 64-d randproj features: the harness says so
        df = vltbench.evaluate("merge", [8, 16], preset="lgm-official-xl", config=f["config"], checkpoint=out,
                               train=False, data_root=tmp_path / "imnet", extractor="randproj", n_samples=20,
                               results=res, quiet=True,
                               overrides={"eval.n_ref": 20, "eval.batch_size": 20, "eval.kid_subset_size": 10,
                                          "sampler.cfg_scale_per_length": {8: 4.0, 16: 3.0}})
    assert list(df["method"]) == ["merge [official LGM release]"] * 2 and df["gfid"].notna().all()
    assert list(df["length"]) == [8, 16]  # the requested order
    recs = {int(r["identity"]["length"]): r for r in (json.loads(Path(p).read_text()) for p in df["path"])}
    assert {k: r["guidance"]["scale"] for k, r in recs.items()} == {8: 4.0, 16: 3.0}
    rec = recs[8]
    assert rec["origin"] == "official LGM release"
    assert any(n.startswith("imported model: official LGM release") for n in rec["notes"])
    md = render(vltbench.leaderboard(res), "md")
    assert "merge [official LGM release]" in md and "guidance fixed per K (K=8: 4, K=16: 3; else 4)" in md
    assert "merge [official LGM release]" in vltbench.report(res).read_text()
    assert {r.method for r in vltbench.check(res, res).rows} == {"merge [official LGM release]"}


@pytest.mark.slow
@pytest.mark.ci
def test_gpu_benchmark_dry_run(tmp_path):
    """benchmarks/lgm_official.py (PSNR per K, gFID@10k of the real release on a GPU) runs every step on
    the tiny official-layout files."""
    rep, _ = run_benchmark_dry_run("lgm_official", tmp_path)
    assert rep["dry_run"] and set(rep["psnr"]["per_k"]) == {"8", "16", "32"}
    assert {row["length"] for row in rep["generation"]["rows"]} == {8, 16}
    assert all(row["method"] == "merge [official LGM release]" for row in rep["generation"]["rows"])


def test_args_that_disagree_with_the_configuration_are_one_error(tmp_path):
    f = write_official_files(tmp_path)
    with pytest.raises(UserError, match=r"tokenizer.pt args: num_latent_tokens is 32 but the configuration needs 64; "
                                        r"set tokenizer.n_tokens: 32"):
        _import(f, tmp_path, overrides={"tokenizer.n_tokens": 64})
    with pytest.raises(UserError, match="--latent-stats is needed with --generator"):
        _import(f, tmp_path, latent_stats=None)
    tok_only = _import(f, tmp_path, generator=None, latent_stats=None)  # the tokenizer alone
    from vltbench.models.bundle import read_metadata
    assert read_metadata(tok_only)["stages"] == "tokenizer"
    import vltbench
    from test_data import write_images
    for split in ("train", "val"):
        for c in range(10):
            write_images(tmp_path / "imnet" / split / f"n{c:02d}", 2, size=(40, 36), seed=c)
    with pytest.raises(UserError, match="imported tokenizer without a generator; import it again with"):
        vltbench.evaluate("merge", [8], preset="lgm-official-xl", config=f["config"], checkpoint=tok_only, train=False,
                          data_root=tmp_path / "imnet", results=tmp_path / "res", extractor="randproj")


def test_official_tokenizer_options_train_and_default_state_dict_is_unchanged():
    """The options are trainable parts (prefix tokens and codebooks receive gradients); without them the
    tokenizer's parameters are exactly the earlier ones (shipped checkpoints load: test_api / identity tests)."""
    from vltbench.models.tokenizer import Tokenizer

    torch.manual_seed(0)
    plain = Tokenizer(16, 4, 8, 4, 32, 1, 1, 2, arch="timm")
    assert not any(k.startswith(("enc_prefix", "dec_prefix", "codebook")) for k in plain.state_dict())
    tok = Tokenizer(16, 4, 8, 4, 32, 1, 1, 2, arch="timm", prefix_token=True, quantizer="softvq", codebooks=2,
                    codebook_size=16, norm_eps=1e-6, pixel_order="pqc")
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    z = tok.encode(x)
    assert z.shape == (2, 8, 4) and (z.norm(dim=-1) <= 1 + 1e-5).all()  # a mixture of unit codewords
    ((tok.decode(z) - x) ** 2).mean().backward()
    for name in ("enc_prefix", "dec_prefix", "codebook"):
        assert getattr(tok, name).grad.abs().sum() > 0, name
