"""The report page (`vltbench report`): self-contained, every part present, and rendered in a real browser."""

import json
import math
import re
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import vltbench
from vltbench.reporting.page import SCRIPT, browser_dom, find_browser, screenshot
from vltbench.reporting.formats import render
from vltbench.reporting.tables import leaderboard
from vltbench.evaluation.store import ResultStore, build_record, load_frame
from helpers import identity, with_protocol, run_cli_here

PROV = {"vltbench_version": "0.1.0", "git_sha": "0123456789abcdef" * 2 + "01234567",
        "created": "2025-01-01T00:00:00+00:00"}
METHODS = {"merge": (0.0, "global merge"), "tail-drop": (8.0, "truncation")}
EVIL = "</pre><script>alert('x')</script>"  # in a record's config: must come out escaped


def strip(seed: int, shade: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    tiles = [np.clip(rng.normal(shade + rng.uniform(-60, 60, 3), 30, (32, 32, 3)), 0, 255) for _ in range(8)]
    return Image.fromarray(np.concatenate(tiles, axis=1).astype(np.uint8))


def write_results(root: Path, n_samples=300, lengths=(4, 8, 32), seeds=(0, 1)) -> int:
    """Records of two methods (floor, ceilings, PSNR/SSIM, alignment, samples, a loss log beside each
    checkpoint); returns how many."""
    store, n = ResultStore(root), 0
    for mi, (m, (off, fam)) in enumerate(METHODS.items()):
        ckpt = root / "ckpt" / f"{m}.safetensors"
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        with open(ckpt.with_name(f"{ckpt.name}.tokenizer.losses.jsonl"), "w") as f:
            f.writelines(json.dumps({"step": s, "loss": 1 / s + 0.01 * mi, "lr": 1e-3, "elapsed_s": s}) + "\n"
                         for s in range(1, 30))
        for k in lengths:
            for s in seeds:
                ident = identity(m, k, s, n_samples, guidance="search")
                rec = build_record(
                    ident, {"gfid": 50 - 5 * math.log2(k) + off + s, "gfid_bootstrap_std": 0.7, "real_fid": 4.0,
                            "real_fid_bootstrap_std": 0.2, "rfid_full": 10 + off, "rfid_full_bootstrap_std": 0.3,
                            "rfid": 30 - math.log2(k) + off, "rfid_bootstrap_std": 0.5, "psnr": 18 + math.log2(k),
                            "ssim": 0.5 + 0.01 * k, "kid": 0.02},
                    compute={"sampling_gflops": 0.05 * k, "nfe": 50},
                    alignment={"cknna": 1 - 1 / k, "frechet_to_full": 8 / k},
                    artifacts={"samples": f"{s}-{k}.png", "checkpoint": str(ckpt)},
                    config={"dit": {"steps": 10}, "note": EVIL}, provenance=PROV)
                path = store.write(with_protocol(rec, 2.5, family=fam, representation="latents"))
                strip(s, 60 + 90 * mi).save(path.parent / rec["artifacts"]["samples"])
                n += 1
    return n


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    n = write_results(root) + write_results(root, n_samples=100, lengths=(8,), seeds=(0,))
    return root, n, vltbench.report(root)


class Parts(HTMLParser):
    """Tags with their attributes, in order; text of the whole page."""

    def __init__(self, text: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def find(self, tag=None, **attrs):
        return [a for t, a in self.tags if (tag is None or t == tag)
                and all(v in (a.get(k.replace("_", "-")) or "").split() for k, v in attrs.items())]


def test_page_is_self_contained(results):
    root, _, page = results
    assert page == root / "report.html" and page.stat().st_mode & 0o044  # readable by others, as any file
    text = page.read_text()
    p = Parts(text)
    assert not p.find("link") and all("src" not in a for a in p.find("script"))  # no external style / script
    for tag, a in p.tags:
        for key in ("src", "href", "xlink:href", "data", "action"):
            v = a.get(key)
            assert v is None or v.startswith(("#", "data:image/png;base64,")), (tag, key, v[:80])
    assert not re.search(r"url\((?!#)|@import|https?://(?!www\.w3\.org/)", text)  # only the SVG/XLink namespaces
    assert len(SCRIPT.encode()) < 2048 and text.count("<script>") == 1


def test_every_part_present(results):
    root, n, page = results
    text = page.read_text()
    p = Parts(text)
    tables = p.find("table", **{"class": "board"})
    assert [t["id"] for t in tables] == ["g1-table", "g2-table"]  # one leaderboard per comparable group
    assert len(p.find("table", **{"class": "diffs"})) == 2  # and its paired method differences
    rows = [a.get("class") for t, a in p.tags if t == "tr"]
    assert rows.count("floor") == 2 and rows.count("ceiling") == 4  # per group: 1 floor, a ceiling per method
    # the floor and a ceiling with their bootstrap std
    assert "4.00 <span>± 0.2</span>" in text and "10.00 <span>± 0.3</span>" in text
    assert re.search(r"<td class='best[^>]*><strong>", text)
    for g in ("g1", "g2"):
        for fig in ("tradeoff", "rfid", "recon", "alignment"):
            assert len(p.find("figure", id=f"{g}-{fig}")) == 1, (g, fig)
        assert p.find("table", id=f"{g}-samples")
    figs = re.findall(r"<figure id='([^']+)'[^>]*>(<svg[^>]*>)", text)
    assert len(figs) == 10 and all("role='img' aria-label=" in svg for _, svg in figs)  # 2 x 4 + 2 loss curves
    assert [f for f, _ in figs if f.startswith("loss-")] == ["loss-1", "loss-2"]
    ids = re.findall(r'\bid="([^"]+)"', text)
    assert len(ids) == len(set(ids))  # the inline SVGs' ids do not collide
    strips = p.find("img", data_part="strip")
    assert len(strips) == 2 * 3 + 2 * 1 and all(s["alt"].endswith("seed 0") for s in strips)
    assert {s["alt"].split(":")[0] for s in strips} >= {"merge, K=4", "tail-drop, K=32"}
    # provenance: one <details> per record with version, git sha, config and metric spec
    assert text.count("<details class='record'>") == n
    assert text.count(PROV["git_sha"]) >= n and "<h4>config</h4>" in text and "<h4>metric spec</h4>" in text
    assert "inception-v3-tf2015:sha=abc" in text
    assert EVIL not in text and "&lt;/pre&gt;&lt;script&gt;" in text  # escaped


def test_api_cli_and_leaderboard_html(results, tmp_path):
    root, _, _ = results
    with pytest.raises(vltbench.UserError, match="out=FILE.html"):
        vltbench.report(load_frame(root))
    out = vltbench.report(load_frame(root), tmp_path / "frame.html")
    assert "<details class='record'>" in out.read_text()
    r = run_cli_here("report", "--results", root, "--out", tmp_path / "cli" / "page.html")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(tmp_path / "cli" / "page.html")
    r = run_cli_here("report", "--results", tmp_path / "missing")
    assert r.returncode == 2 and r.stderr.startswith("error: results folder") and "--results" in r.stderr
    html = render(leaderboard(load_frame(root)), "html")  # --format html: the page's tables, no figures
    assert html.count("class='board sortable'") == 2 and "<svg" not in html and "<script>" in html


BROWSER = find_browser()


@pytest.mark.skipif(BROWSER is None, reason="no Chromium on PATH (`apt-get install chromium`; .ci/run installs it "
                                            "from Debian's packages): the page is not rendered in a browser")
def test_page_in_a_browser(results, tmp_path):
    """Chromium renders the page headless: the table, every figure and every sample strip are laid out
    with a size, visible, images decoded; the screenshot shows them (not blank) where the DOM puts them."""
    root, _, page = results
    t0 = time.time()
    dom = browser_dom(page, BROWSER)
    boxes = {}
    for tag, a in Parts(dom).tags:
        if "data-part" in a:
            assert "data-box" in a, f"the page's check script did not run: {tag} {a.get('id')}"
            boxes.setdefault(a["data-part"], []).append((a.get("id") or a.get("alt"), a["data-box"]))
    assert {k: len(v) for k, v in boxes.items()} == {"table": 2, "differences": 2, "figure": 10, "samples": 2,
                                                     "strip": 8, "claim": 3}
    height = int(re.search(r'data-height="(\d+)"', dom).group(1))
    png = screenshot(page, tmp_path / "page.png", BROWSER, height=height)
    img = np.asarray(Image.open(png).convert("RGB"))
    assert img.shape[:2] == (height, 1600)
    for part, items in boxes.items():
        for name, box in items:
            w, h, x, y, *flags = box.split()
            w, h, x, y = map(int, (w, h, x, y))
            assert w > 20 and h > 20 and not flags, (part, name, box)  # laid out, visible, decoded
            region = img[y:y + h, x:min(x + w, img.shape[1])]
            colours = len(np.unique(region.reshape(-1, 3), axis=0))
            assert region.std() > 10 and colours >= 8, (part, name, colours)  # drawn, not blank
    assert time.time() - t0 < 60
