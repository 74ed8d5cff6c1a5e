"""`vltbench import one-d-piece` / `import titok`: the released TiTok-family tokenizers, imported, reproduce the
official code's outputs.

tests/fixtures/titok/<family> holds numbers produced by the official code (turingmotors/One-D-Piece and
bytedance/1d-tokenizer at the commits in official.json) outside this project: the stage-2 model (encoder with
the legacy reshape, VQ, decoder, MaskGIT-VQGAN pixel decoder) built at a tiny size with seeded fp16 weights,
two images, and the official encoder output, codes, VQ embeddings and decode at K = 1, 8, 32, 256 (One-D-Piece)
/ K = N = 32 (TiTok), plus the same with the non-legacy reshape (bytedance is_legacy False) and with LayerNorm
eps 1e-6. These tests write the weights as the release's pytorch_model.bin, import them, compare in float32.
"""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path

import pytest
import torch
from helpers import run_benchmark_dry_run, run_cli_here
from titok_layout import FAMILIES, meta, outputs, real_size_weights, weights, write_official_files

from vltbench.core.errors import UserError

# Measured (float32, CPU): encoder output within 1.5e-6 of the official, decodes (values up to ~4) within
# 2e-5. A wrong LayerNorm eps (1e-6 for torch's 1e-5) moves the encoder output by 7e-5 and the decodes by
# 1.3e-4..2.3e-4; the non-legacy reshape by > 1 (test_gate_*): both tolerances sit between.
TOL_ENC = 1e-5
TOL_DEC = 5e-5


def _import(tmp: Path, family: str, **kw):
    from vltbench.core.config import load_config
    from vltbench.models.bundle import load_bundle
    from vltbench.models.official_titok import config_path, import_titok

    f = write_official_files(tmp, family)
    out = import_titok(family, f["weights"], tmp / "imported.safetensors", official_config=f["official_config"],
                       config=f["config"], **kw)
    bundle = load_bundle(out, load_config("titok-official", config_path(out)), "tail-drop", 1000)
    return bundle, out, f


@pytest.fixture(scope="module", params=FAMILIES)
def imported(request, tmp_path_factory):
    family = request.param
    bundle, out, f = _import(tmp_path_factory.mktemp(family), family)
    return family, bundle, out, f


def _x(family):
    return outputs(family)["images"] * 2 - 1  # upstream [0, 1] -> vltbench [-1, 1]


def _lengths(family):
    return meta(family)["lengths"]


def _dev(a, b):
    return (a - b).abs().max().item()


def test_encode_matches_official(imported):
    family, bundle, _, _ = imported
    o = outputs(family)
    with torch.no_grad():
        zc = bundle.tokenizer.encode_continuous(_x(family))
        zq, codes = bundle.tokenizer.encode(_x(family), return_codes=True)
    assert _dev(zc, o["encoder_out"][:, :, 0].transpose(1, 2)) < TOL_ENC
    assert torch.equal(codes, o["codes"][:, 0])
    assert _dev(zq, o["encode"][:, :, 0].transpose(1, 2)) < 1e-6


def test_decode_at_each_k_matches_official(imported):
    family, bundle, _, _ = imported
    o = outputs(family)
    with torch.no_grad():
        z = bundle.tokenizer.encode(_x(family))
        for k in _lengths(family):
            x = bundle.method.reconstruct_tokens(z, k) if hasattr(bundle.method, "reconstruct_tokens") else z[:, :k]
            assert x.shape[1] == k
            y = (bundle.tokenizer.decode(x) + 1) / 2
            assert _dev(y, o[f"decode_k{k}"]) < TOL_DEC, k


def _variant(family, **overrides):
    """The fixture's weights in a tokenizer built with other settings (the same state dict)."""
    from vltbench.core.config import load_config
    from vltbench.models.bundle import build_bundle
    from vltbench.models.official_titok import sizes_from_weights, tokenizer_state

    sd = weights(family)
    s = sizes_from_weights(sd, sd, "fixture")
    o = {"data.image_size": s["image_size"], "tokenizer.n_tokens": s["n_tokens"], "tokenizer.latent_dim": s["latent_dim"],
         "tokenizer.width": s["width"], "tokenizer.enc_depth": s["enc_depth"], "tokenizer.dec_depth": s["dec_depth"],
         "tokenizer.heads": 2, "tokenizer.titok.codebook_size": s["codebook_size"], "tokenizer.titok.pixel": s["pixel"],
         "lengths.train": [s["n_tokens"]], "lengths.probs": [1.0], "lengths.dit_cycle": [s["n_tokens"]], **overrides}
    tok = build_bundle(load_config("titok-official", None, o), "tail-drop", 1000).tokenizer
    tok.load_state_dict(tokenizer_state(sd, sd, tok, "fixture", "fixture", False)[0])
    return tok.eval()


@pytest.mark.parametrize("family", FAMILIES)
def test_gate_the_non_legacy_reshape_exceeds_the_tolerance(family):
    """The released weights depend on the legacy reshape: the fixed order fails the gate, in vltbench and in
    the official code (bytedance is_legacy False with the same weights)."""
    o, n = outputs(family), meta(family)["n_tokens"]
    tok = _variant(family, **{"tokenizer.titok.legacy_reshape": False})
    with torch.no_grad():
        zq, codes = tok.encode(_x(family), return_codes=True)
        y = (tok.decode(zq) + 1) / 2
    assert _dev(y, o[f"decode_k{n}"]) > 100 * TOL_DEC
    assert (codes != o["codes"][:, 0]).sum() > 0
    assert _dev(y, o[f"nonlegacy_decode_k{n}"]) < TOL_DEC  # and it is upstream's non-legacy path
    assert _dev(o[f"nonlegacy_decode_k{n}"], o[f"decode_k{n}"]) > 100 * TOL_DEC


@pytest.mark.parametrize("family", FAMILIES)
def test_gate_a_wrong_layernorm_eps_exceeds_the_tolerance(family):
    o, n = outputs(family), meta(family)["n_tokens"]
    tok = _variant(family, **{"tokenizer.norm_eps": 1e-6})
    with torch.no_grad():
        zc = tok.encode_continuous(_x(family))
        y = (tok.decode(tok.encode(_x(family))) + 1) / 2
    assert _dev(zc, o["encoder_out"][:, :, 0].transpose(1, 2)) > TOL_ENC
    assert _dev(y, o[f"decode_k{n}"]) > TOL_DEC
    assert _dev(y, o[f"eps1e-6_decode_k{n}"]) < TOL_DEC  # the official code with eps 1e-6 agrees with it
    assert _dev(o[f"eps1e-6_decode_k{n}"], o[f"decode_k{n}"]) > TOL_DEC


def test_origin_metadata_and_labels(imported):
    from vltbench.core.hashing import sha256_file
    from vltbench.models.bundle import read_metadata
    from vltbench.models.imported import origin_note

    family, bundle, out, f = imported
    origin = json.loads(read_metadata(out)["origin"])
    assert origin["kind"] == {"one-d-piece": "official One-D-Piece release", "titok": "official TiTok release"}[family]
    assert origin["tokenizer"]["sha256"] == sha256_file(f["weights"])
    assert origin["official_config"]["sha256"] == sha256_file(f["official_config"])
    assert origin["legacy_reshape"] is True and origin["command"] == f"vltbench import {family}"
    assert origin["sizes"]["n_tokens"] == meta(family)["n_tokens"]
    assert bundle.origin == origin
    assert f"vltbench import {family}" in origin_note(origin) and origin["kind"] in origin_note(origin)
    if family == "titok":  # one fixed K per checkpoint
        assert bundle.cfg.lengths.train == [32]


def _fails(tmp, family, sd=None, match="", official=None, **kw):
    from vltbench.models.official_titok import import_titok

    f = write_official_files(tmp, family, sd)
    if official is not None:
        f["official_config"].write_text(json.dumps(official))
    with pytest.raises(UserError, match=match) as e:
        import_titok(family, f["weights"], tmp / "x.safetensors", official_config=f["official_config"],
                     config=f["config"], **kw)
    assert "\n" not in str(e.value)
    assert not (tmp / "x.safetensors").exists()
    return str(e.value)


def test_unknown_missing_and_misshaped_keys_are_one_error_each(tmp_path):
    sd = weights("titok")
    sd["decoder.extra.weight"] = torch.zeros(3)
    _fails(tmp_path / "a", "titok", sd, "unknown key decoder.extra.weight")
    sd = weights("titok")
    del sd["decoder.ln_post.bias"]
    _fails(tmp_path / "b", "titok", sd, "missing key decoder.ln_post.bias")
    sd = weights("titok")
    sd["encoder.transformer.1.mlp.c_fc.bias"] = torch.zeros(5)
    _fails(tmp_path / "c", "titok", sd, r"encoder.transformer.1.mlp.c_fc.bias has shape \(5,\)")


def test_disagreeing_or_unsupported_official_config_values_are_refused(tmp_path):
    off = meta("one-d-piece")["official_config"]
    bad = json.loads(json.dumps(off))
    bad["model"]["vq_model"]["token_size"] = 12
    _fails(tmp_path / "a", "one-d-piece", None, "token_size is 12 but the weights have 8", official=bad)
    bad = json.loads(json.dumps(off))
    bad["model"]["vq_model"]["is_legacy"] = False
    _fails(tmp_path / "b", "one-d-piece", None, "is_legacy", official=bad)
    bad = json.loads(json.dumps(off))
    bad["model"]["vq_model"]["vit_enc_model_size"] = "small"  # upstream's small is 512 wide, 8 blocks
    _fails(tmp_path / "c", "one-d-piece", None, "vit_enc_model_size is 'small'", official=bad)
    sd = weights("titok")  # the non-legacy (RGB) decoder of the vq8k / VAE releases
    sd["decoder.conv_out.weight"] = torch.zeros(3, 3, 3, 3)
    _fails(tmp_path / "d", "titok", sd, "predicts RGB pixels")


class _Payload:
    """Unpickling this runs open(marker, 'w'): it would create the file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("option", ["weights", "pixel_decoder"])
def test_a_pickle_with_a_code_payload_is_refused_and_never_runs(tmp_path, option):
    from vltbench.models.official_titok import import_titok

    marker = tmp_path / "payload-ran"
    evil = tmp_path / "evil.bin"
    sd = weights("one-d-piece")
    if option == "pixel_decoder":  # the weights without their pixel stage, the pickle as the VQGAN file
        sd = {k: v for k, v in sd.items() if not k.startswith(("pixel_decoder.", "pixel_quantize."))}
    torch.save({"decoder.conv_in.weight": torch.zeros(1), "x": _Payload(marker)}, evil)
    live = tmp_path / "live.bin"  # the same payload is live: an unsafe load runs it
    torch.save({"x": _Payload(tmp_path / "live-ran")}, live)
    torch.load(live, weights_only=False)
    assert (tmp_path / "live-ran").exists()
    f = write_official_files(tmp_path / "rel", "one-d-piece", sd)
    args = {"weights": evil, "pixel_decoder": None} if option == "weights" else {"weights": f["weights"],
                                                                                 "pixel_decoder": evil}
    with pytest.raises(UserError, match="refused without running it"):
        import_titok("one-d-piece", args["weights"], tmp_path / "x.safetensors", pixel_decoder=args["pixel_decoder"],
                     config=f["config"])
    assert not marker.exists()
    assert not (tmp_path / "x.safetensors").exists()


def test_pixel_decoder_from_the_maskgit_vqgan_file(tmp_path):
    """Weights without their pixel stage + maskgit-vqgan-imagenet-f16-256.bin's layout (encoder.* skipped by
    name, decoder.* / quantize.* taken): the same model as the fixture."""
    from vltbench.core.config import load_config
    from vltbench.models.bundle import load_bundle, read_metadata
    from vltbench.models.official_titok import config_path, import_titok

    sd = weights("titok")
    vq = {"decoder." + k[len("pixel_decoder."):]: v for k, v in sd.items() if k.startswith("pixel_decoder.")}
    vq["quantize.embedding.weight"] = sd["pixel_quantize.embedding.weight"]
    vq["encoder.conv_in.weight"] = torch.zeros(32, 3, 3, 3)
    sd = {k: v for k, v in sd.items() if not k.startswith(("pixel_decoder.", "pixel_quantize."))}
    f = write_official_files(tmp_path, "titok", sd)
    torch.save(vq, tmp_path / "maskgit-vqgan.bin")
    out = import_titok("titok", f["weights"], tmp_path / "x.safetensors", pixel_decoder=tmp_path / "maskgit-vqgan.bin",
                       config=f["config"])
    origin = json.loads(read_metadata(out)["origin"])
    assert origin["pixel_decoder"]["file"] == "maskgit-vqgan.bin" and origin["skipped"]["count"] == 1
    b = load_bundle(out, load_config("titok-official", config_path(out)), "tail-drop", 1000)
    with torch.no_grad():
        y = (b.tokenizer.decode(b.tokenizer.encode(_x("titok"))) + 1) / 2
    assert _dev(y, outputs("titok")["decode_k32"]) < TOL_DEC


def _real(tmp_path, family, variant):
    from vltbench.core.config import load_config
    from vltbench.models.bundle import load_bundle
    from vltbench.models.official_titok import config_path, import_titok

    w = tmp_path / "pytorch_model.bin"
    torch.save(real_size_weights(family, variant), w)
    out = import_titok(family, w, tmp_path / "real.safetensors")
    b = load_bundle(out, load_config("titok-official", config_path(out)), "tail-drop", 1000)
    keys = meta(family)["real_size_keys"][variant]
    # summed into one parameter each at import: the class tokens into their first positions, the mask token
    # into the patch positions, the latent tokens' positions into the latent tokens
    folded = ("encoder.class_embedding", "decoder.class_embedding", "decoder.mask_token",
              "encoder.latent_token_positional_embedding")
    total = sum(math.prod(s) for k, s in keys.items() if k not in folded)
    assert sum(p.numel() for p in b.tokenizer.parameters()) == total
    assert b.origin["skipped"]["count"] == 0
    return b


def test_real_size_import_one_d_piece_s(tmp_path):
    """The real One-D-Piece-S-256 key list (official.json, built from the official code at real size) imports:
    every key consumed, sizes and heads from upstream's size table, 256 px."""
    b = _real(tmp_path, "one-d-piece", "S")
    t = b.cfg.tokenizer
    assert (t.width, t.enc_depth, t.heads, t.n_tokens, t.latent_dim, b.cfg.data.image_size) == (512, 8, 8, 256, 12, 256)


@pytest.mark.slow
@pytest.mark.parametrize("family,variant", [("one-d-piece", "B"), ("one-d-piece", "L"), ("titok", "L32"),
                                            ("titok", "B64"), ("titok", "S128")])
def test_real_size_import_other_releases(tmp_path, family, variant):
    b = _real(tmp_path, family, variant)
    assert b.cfg.tokenizer.heads == {512: 8, 768: 12, 1024: 16}[b.cfg.tokenizer.width]


def test_cli_imports_both_families(tmp_path):
    for family in FAMILIES:
        f = write_official_files(tmp_path / family, family)
        r = run_cli_here("import", family, "--weights", str(f["weights"]), "--official-config", str(f["official_config"]),
                         "--config", str(f["config"]), "--out", str(tmp_path / family / "x.safetensors"))
        assert r.returncode == 0, r.stderr
        assert "official" in r.stdout and (tmp_path / family / "x.yaml").is_file()
    r = run_cli_here("import", "titok", "--weights", str(tmp_path / "nope.bin"), "--out", str(tmp_path / "y.safetensors"))
    assert r.returncode != 0 and "error:" in r.stderr and "does not exist" in r.stderr


def test_pickle_module_is_not_used_to_read(tmp_path, monkeypatch):
    """Reading goes through torch.load(weights_only=True), never pickle.load."""
    def boom(*a, **k):
        raise AssertionError("pickle.load called")
    monkeypatch.setattr(pickle, "load", boom)
    from vltbench.models.official_titok import load_weights

    f = write_official_files(tmp_path, "titok")
    assert set(load_weights(f["weights"], "--weights")) == set(weights("titok"))


EVAL = ("tokenizer: {heads: 2}\ndata: {name: embedded, train_count: 64, val_count: 64}\n"
        "eval: {extractor: randproj, n_samples: 16, n_ref: 32, batch_size: 16, kid_subset_size: 8}\ndevice: cpu\n")


def test_tokenizer_only_sweep_of_an_imported_release_writes_records_table_and_plot(tmp_path):
    """`vltbench eval-tokenizer` over K of the imported One-D-Piece fixture, and TiTok as one point at its K."""
    from vltbench.evaluation.tokenizer_only import load_records
    from vltbench.models.official_titok import config_path, import_titok

    (tmp_path / "eval.yaml").write_text(EVAL)
    outs = {}
    for family in FAMILIES:
        f = write_official_files(tmp_path / family, family)
        outs[family] = import_titok(family, f["weights"], tmp_path / f"{family}.safetensors", config=tmp_path / "eval.yaml")
    res = tmp_path / "results"
    for family, ks in (("one-d-piece", "1,8,32,256"), ("titok", "32")):
        out = outs[family]
        r = run_cli_here("eval-tokenizer", "--checkpoint", str(out), "--lengths", ks, "--preset", "titok-official",
                         "--config", str(config_path(out)), "--results", str(res), "-q")
        assert r.returncode == 0, r.stderr
    r = run_cli_here("eval-tokenizer", "--checkpoint", str(outs["titok"]), "--lengths", "8", "--preset",
                     "titok-official", "--config", str(config_path(outs["titok"])), "--results", str(res), "-q")
    assert r.returncode != 0 and "decodes only K = 32" in r.stderr
    recs = load_records(res / "tokenizer_only")
    assert sorted((x["origin"], x["length"]) for x in recs) == [
        ("official One-D-Piece release", 1), ("official One-D-Piece release", 8), ("official One-D-Piece release", 32),
        ("official One-D-Piece release", 256), ("official TiTok release", 32)]
    for x in recs:
        m = x["metrics"]
        assert math.isfinite(m["rfid"]) and m["rfid"] >= 0 and 0 < m["psnr"] < 100 and -1 <= m["ssim"] <= 1
        assert x["compute"]["decoder_gflops"] > 0 and x["compute"]["decoder_tokens"] == x["length"]
        assert "[official" in x["label"]
    dec = {x["length"]: x["compute"]["decoder_gflops"] for x in recs if x["origin"].endswith("One-D-Piece release")}
    assert dec[1] < dec[256]  # the decoder's cost grows with K
    table = (res / "tokenizer_only" / "table.md").read_text()
    assert "[official One-D-Piece release]" in table and "[official TiTok release]" in table
    for name in ("rfid_vs_k.png", "rfid_vs_k.svg", "table.csv"):
        assert (res / "tokenizer_only" / name).stat().st_size > 0


# A DiT trained by vltbench on an imported tokenizer's latents (`vltbench train --tokenizer`), tiny sizes.
DIT = EVAL + ("dit: {size: null, width: 32, depth: 1, heads: 2, steps: 4, batch_size: 8}\n"
              "lengths: {train: [8, 256], probs: [0.5, 0.5], dit_cycle: null}\n"
              "sampler: {steps: 3, guidance: fixed, cfg_scale: 1.5}\n")


def _import_for_dit(tmp: Path, family: str) -> tuple[Path, Path, dict]:
    from vltbench.models.official_titok import config_path, import_titok

    (tmp / "dit.yaml").write_text(DIT)
    f = write_official_files(tmp / family, family)
    out = import_titok(family, f["weights"], tmp / f"{family}.safetensors", official_config=f["official_config"],
                       config=tmp / "dit.yaml")
    return out, config_path(out), f


def test_a_dit_trains_on_an_imported_tokenizer_and_evaluates_at_two_k(tmp_path):
    """The gate: `vltbench train --tokenizer` trains only the DiT, on the frozen imported One-D-Piece fixture's
    latents; `vltbench eval --checkpoint` sweeps K = 8 and 256; the records say the tokenizer was imported (its
    files by sha256) and the DiT trained by vltbench, and are labelled apart from trained tail-drop."""
    from safetensors.torch import load_file

    from vltbench.core.hashing import sha256_file
    from vltbench.evaluation.store import load_frame, read_record
    from vltbench.models.bundle import read_metadata
    from vltbench.training.loops import loss_log_path, read_loss_log

    tok, cfg, f = _import_for_dit(tmp_path, "one-d-piece")
    ckpt = tmp_path / "odp-dit.safetensors"
    common = ("--method", "tail-drop", "--preset", "titok-official", "--config", str(cfg), "-q")
    r = run_cli_here("train", *common, "--tokenizer", str(tok), "--out", str(ckpt))
    assert r.returncode == 0, r.stderr
    meta = read_metadata(ckpt)
    assert meta["stages"] == "tokenizer,dit" and meta["dits"] == "joint"
    origin = json.loads(meta["origin"])
    assert origin["kind"] == "official One-D-Piece release"
    assert origin["dit"]["tokenizer_checkpoint"] == {"file": tok.name, "sha256": sha256_file(tok)}
    before, after = load_file(str(tok)), load_file(str(ckpt))
    frozen = [k for k in before if k.startswith(("tokenizer.", "method."))]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)  # the release's weights, unchanged
    assert any(k.startswith("dit.joint.") for k in after) and "stats.std" in after
    losses = read_loss_log(loss_log_path(ckpt, "dit-joint"))
    assert [x["step"] for x in losses] == [1, 2, 3, 4] and {x["K"] for x in losses} <= {8, 256}
    assert all(math.isfinite(x["loss"]) for x in losses)

    res = tmp_path / "results"
    r = run_cli_here("eval", *common, "--checkpoint", str(ckpt), "--lengths", "8,256", "--seeds", "0",
                     "--results", str(res))
    assert r.returncode == 0, r.stderr
    df = load_frame(res)
    assert sorted(df["length"]) == [8, 256]
    assert set(df["method"]) == {"tail-drop [official One-D-Piece release + vltbench DiT]"}
    assert set(df["checkpoint_hash"]) == {sha256_file(ckpt)}
    assert all(math.isfinite(v) and v >= 0 for v in df["gfid"])
    for path in df["path"]:
        rec = read_record(path)
        imp = rec["imported"]
        assert imp["generator_trained_by"] == "vltbench" and imp["tokenizer_trained_by"].startswith("upstream")
        assert imp["files"]["tokenizer"] == {"file": "pytorch_model.bin", "sha256": sha256_file(f["weights"])}
        assert imp["files"]["official_config"]["sha256"] == sha256_file(f["official_config"])
        assert imp["tokenizer_checkpoint"]["sha256"] == sha256_file(tok) and imp["legacy_reshape"] is True
        assert any("the DiT was trained by vltbench" in n and sha256_file(f["weights"])[:12] in n for n in rec["notes"])

    # the same checkpoint as --tokenizer again: it already holds a generator
    from vltbench.core.config import load_config
    from vltbench.training.checkpoints import imported_tokenizer
    with pytest.raises(UserError, match="already holds a generator"):
        imported_tokenizer(ckpt, load_config("titok-official", cfg), "tail-drop", 13)


def test_train_on_an_imported_tokenizer_refuses_what_would_not_match(tmp_path):
    """One error line each: a vltbench-trained checkpoint, another method, a config whose tokenizer differs
    from the import's, a fixed-K release (TiTok) asked to train other K, a missing file."""
    from vltbench.core.config import load_config
    from vltbench.training.checkpoints import imported_tokenizer

    tok, cfg, _ = _import_for_dit(tmp_path, "one-d-piece")
    shipped = Path(__file__).parents[1] / "vltbench" / "assets" / "tiny-tail-drop.safetensors"
    with pytest.raises(UserError, match="trained by vltbench, not imported"):
        imported_tokenizer(shipped, load_config("tiny"), "tail-drop", 10)
    with pytest.raises(UserError, match="is a tail-drop checkpoint; pass --method tail-drop"):
        imported_tokenizer(tok, load_config("titok-official", cfg), "merge", 13)
    with pytest.raises(UserError, match=r"imported with tokenizer.width=32, the config has 64.*one-d-piece.yaml"):
        imported_tokenizer(tok, load_config("titok-official", cfg, {"tokenizer.width": 64}), "tail-drop", 13)
    with pytest.raises(UserError, match="does not exist"):
        imported_tokenizer(tmp_path / "none.safetensors", load_config("titok-official", cfg), "tail-drop", 13)
    b = imported_tokenizer(tok, load_config("titok-official", cfg), "tail-drop", 13)
    assert b.stages == ["tokenizer"] and b.num_classes == 13 and not any(p.requires_grad for p in b.tokenizer.parameters())

    ttok, tcfg, _ = _import_for_dit(tmp_path, "titok")
    with pytest.raises(UserError, match=r"decodes only K = 32, but the config trains K = \[8, 32\]"):
        imported_tokenizer(ttok, load_config("titok-official", tcfg, {"lengths.train": [8, 32],
                                                                      "lengths.probs": [0.5, 0.5]}), "tail-drop", 13)

    # a DiT on the TiTok fixture trains at its one K; the sweep refuses other K before any cell is computed
    import vltbench
    ckpt = vltbench.train("tail-drop", preset="titok-official", config=tcfg, tokenizer=ttok, quiet=True)
    with pytest.raises(UserError, match=r"--lengths 8: the official TiTok release decodes only K = 32"):
        vltbench.evaluate("tail-drop", [8], preset="titok-official", config=tcfg, checkpoint=ckpt, train=False,
                          results=tmp_path / "res", quiet=True)
    assert not list((tmp_path / "res").rglob("*.json"))


@pytest.mark.slow
@pytest.mark.ci
def test_gpu_benchmark_dry_run(tmp_path):
    """benchmarks/titok_official.py (rFID / PSNR / speed per K of the real releases on a GPU) runs every step on
    the tiny official-layout files and prints its measurements."""
    rep, stdout = run_benchmark_dry_run("titok_official", tmp_path)
    assert rep["dry_run"] and [x["family"] for x in rep["releases"]] == ["one-d-piece", "titok"]
    assert [row["K"] for row in rep["releases"][0]["per_k"]] == [1, 8, 256]
    assert [row["K"] for row in rep["releases"][1]["per_k"]] == [32]
    for rel in rep["releases"]:
        assert rel["origin"].startswith("official") and rel["n_images"] == 16
        for row in rel["per_k"]:
            assert row["encode_images_per_s"] > 0 and row["decode_images_per_s"] > 0 and 0 < row["psnr"] < 100
    assert "one-d-piece-tiny K=256: rFD_randproj" in stdout and "decode" in stdout
    assert (tmp_path / "runs" / "tokenizer_only" / "rfid_vs_k.png").stat().st_size > 0
    assert str(tmp_path) not in (tmp_path / "titok_official.json").read_text()  # portable: no machine path
