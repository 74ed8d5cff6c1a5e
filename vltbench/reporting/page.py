"""One self-contained HTML page per results folder: what `vltbench report` writes.

Per comparable group: the leaderboard (vltbench.reporting.tables's Table: floor and ceiling rows, ± intervals,
best marked, sortable columns), the figures of vltbench.reporting.figures rendered to inline SVG in memory, the
same-seed sample strip of every method at every K (PNG data URIs) and each record's provenance
(version, git sha, config, metric spec) in a <details>; then the training loss curves where their logs
exist. No external asset, font or script: it opens offline. Everything is readable without JavaScript;
the one inline script (a few hundred bytes) only makes the table headers sort.

Columns, headers and figures come from the records' metric specs (vltbench.evaluation.metrics.specs) and the
Table, so new metrics appear without changes here.
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from vltbench.core import __version__

from .tables import (
    DIFFERENCE_HEADERS,
    Table,
    cell_texts,
    comparable_groups,
    difference_caption,
    difference_cells,
    headers,
    leaderboard,
    summary_lines,
)

e = html.escape

CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:#1a1a1a;
 background:#fff;margin:0 auto;max-width:1800px;padding:0 24px 48px}
h1{font-size:1.6em;margin:.8em 0 .2em}h2{font-size:1.3em;margin:1.6em 0 .4em;border-bottom:2px solid #ddd}
h3{font-size:1.08em;margin:1.2em 0 .4em}
nav ul,ul.notes{margin:.3em 0;padding-left:1.3em}ul.notes{font-size:.88em;color:#444}
dl.group{display:grid;grid-template-columns:max-content auto;gap:.1em 1em;font-size:.9em;margin:.4em 0}
dl.group dt{font-weight:600}dl.group dd{margin:0}
.scroll{overflow-x:auto}
table{border-collapse:collapse;font-size:.82em;font-variant-numeric:tabular-nums}
caption{text-align:left;font-weight:600;padding:.3em 0}
th,td{border-bottom:1px solid #e3e3e3;padding:.25em .45em;text-align:right}
thead th{min-width:3em}tbody th{min-width:9em}td{white-space:nowrap}td.pm{white-space:normal}
.pm span{white-space:nowrap}
th:first-child,td:first-child,tbody th{text-align:left}
thead th{background:#f3f4f6;position:sticky;top:0;vertical-align:bottom}
thead th button{font:inherit;font-weight:600;border:0;background:none;padding:0;cursor:pointer;color:inherit}
thead th[aria-sort=ascending] button::after{content:" \\25B2"}thead th[aria-sort=descending] button::after{content:" \\25BC"}
tr.floor{background:#eef6ee;font-style:italic}tr.ceiling{background:#f4f0fa;font-style:italic}
td.best{font-weight:700;color:#0a6b2b}
figure{margin:1em 1.5em 1em 0;display:inline-block;vertical-align:top;max-width:100%}
figure.half{width:calc(50% - 2em)}figure.wide{width:calc(100% - 1.5em)}figure.half svg,figure.wide svg{width:100%}
figure svg{max-width:100%;height:auto;display:block}figcaption{font-size:.85em;color:#555;max-width:60em}
table.samples td,table.samples th{text-align:center;vertical-align:middle}
table.samples img{image-rendering:pixelated;display:block;margin:auto}
details{margin:.2em 0;font-size:.88em}summary{cursor:pointer}
details pre{background:#f7f7f7;padding:.6em;overflow:auto;max-height:30em;font-size:.92em}
.missing{color:#888}
"""

# header buttons sort the rows (original order: sort by the first column); test runs add ?vltbench-check
# to write every part's box into data-box (what the browser test reads from the DOM)
SCRIPT = """
document.querySelectorAll('table.sortable').forEach(function(t){
var hs=t.tHead.rows[0].cells;[].forEach.call(hs,function(th,i){
var b=document.createElement('button');b.type='button';b.innerHTML=th.innerHTML;th.innerHTML='';th.appendChild(b);
b.onclick=function(){var up=th.getAttribute('aria-sort')!=='ascending';
[].forEach.call(hs,function(h){h.removeAttribute('aria-sort')});th.setAttribute('aria-sort',up?'ascending':'descending');
var tb=t.tBodies[0],rs=[].slice.call(tb.rows);rs.sort(function(x,y){
var a=x.cells[i].dataset.v,c=y.cells[i].dataset.v;if(a===undefined)return c===undefined?0:1;if(c===undefined)return -1;
var d=isNaN(a)||isNaN(c)?a.localeCompare(c):a-c;return up?d:-d});rs.forEach(function(r){tb.appendChild(r)})}})});
if(location.search.indexOf('vltbench-check')>=0)addEventListener('load',function(){
document.documentElement.setAttribute('data-height',document.documentElement.scrollHeight);
document.querySelectorAll('[data-part]').forEach(function(p){var r=p.getBoundingClientRect(),s=getComputedStyle(p);
p.setAttribute('data-box',[r.width,r.height,r.left+scrollX,r.top+scrollY].map(Math.round).join(' ')+(s.visibility=='visible'?'':' hidden')+
(p.naturalWidth===0?' broken':''))})});
"""


def page(title: str, body: str) -> str:
    """The HTML document around `body`: the style and the small script inline, nothing external."""
    return (f"<!doctype html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'>\n<title>{e(title)}</title>\n"
            f"<style>{CSS}</style>\n</head>\n<body>\n{body}\n<script>{SCRIPT}</script>\n</body>\n</html>\n")


# -- the leaderboard table ---------------------------------------------------------------------------
def _sort_value(v) -> str | None:
    if isinstance(v, str):
        return v
    if v is None or v is pd.NA or (isinstance(v, (float, np.floating)) and np.isnan(v)):
        return None
    return repr(float(v)) if isinstance(v, (float, np.floating)) else str(v)


def _breakable(header: str) -> str:
    """A header that may wrap after / and _ (GFLOPs/img, all_pair_cos): narrower columns."""
    return e(header).replace("/", "/<wbr>").replace("_", "_<wbr>")


def _td(text: str, best: bool, attr: str) -> str:
    """A cell; 'mean ± std' may wrap before the ± (never inside a number), so a wide table can narrow."""
    mean, pm, std = text.partition(" ± ")
    body = f"{e(mean)} <span>± {e(std)}</span>" if pm else e(text)
    cls = " ".join(c for c, on in (("best", best), ("pm", bool(pm))) if on)
    return f"<td{f' class={cls!r}' if cls else ''}{attr}>{f'<strong>{body}</strong>' if best else body}</td>"


def table_html(t: Table, tid: str = "") -> str:
    """The Table as an HTML table: mean ± interval cells as the markdown table shows them, best cells bold
    (class best), floor / ceiling rows by class, data-v sort keys for the header buttons."""
    heads = headers(t)
    keys = ["method", "K", "seeds"] + [c.key for c in t.columns] + ["pareto"]
    out = [f"<div class='scroll'><table class='board sortable'{f' id={e(tid)!r}' if tid else ''} data-part='table'>",
           f"<caption>Leaderboard: {e(t.title)}</caption>", "<thead><tr>"
           + "".join(f"<th scope='col'>{_breakable(h)}</th>" for h in heads) + "</tr></thead>", "<tbody>"]
    for i, (row, cells) in enumerate(zip(t.rows.to_dict("records"), cell_texts(t))):
        kind = row["row"]
        tds = [f"<th scope='row' data-v='{i}'>{e(cells[0][0])}</th>"]  # the first column sorts back to this order
        for key, (text, best) in zip(keys[1:], cells[1:]):
            v = _sort_value(row.get(key)) if key != "pareto" else ("1" if row.get("pareto") else "0")
            attr = "" if v is None else f" data-v='{e(v)}'"
            tds.append(_td(text, best, attr))
        out.append(f"<tr class='{e(kind)}'>{''.join(tds)}</tr>")
    out += ["</tbody></table></div>",
            "<p class='notes'>" + ("Best per column in bold (method rows only). " if t.verdict.ok else
                                   "<strong>No best marked: this comparison cannot tell methods apart (first "
                                   "note).</strong> ") + "Floor and ceiling rows (italic) are "
            "references, never ranked. Click a header to sort; the first column restores this order.</p>",
            "<ul class='notes'>" + "".join(f"<li>{e(s)}</li>" for s in summary_lines(t)) + "</ul>"]
    return "\n".join(out + [differences_html(t)])


def differences_html(t: Table) -> str:
    """The paired method-vs-method differences (vltbench.reporting.paired) as small tables."""
    out = []
    for name, d in t.differences.items():
        out += [f"<div class='scroll'><table class='diffs' data-part='differences'><caption>{e(difference_caption(name))}"
                "</caption><thead><tr>" + "".join(f"<th scope='col'>{h}</th>" for h in DIFFERENCE_HEADERS)
                + "</tr></thead><tbody>"]
        out += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in difference_cells(r)) + "</tr>"
                for r in d.itertuples(index=False)]
        out.append("</tbody></table></div>")
    return "\n".join(out)


def claim_html(t: Table) -> str:
    """The paper's claim (global merging beats truncation at K = N/8 and N/4) with its intervals."""
    from .tables import claim

    parts = claim(t)
    if not parts:
        return ""
    out = ["<h3>The paper's claim: global merging vs truncation at K = N/8 and N/4</h3>",
           "<p class='notes'>Rows of the paired differences below: a verdict names a method only when its 95% "
           "interval (t over training seeds) excludes 0 with at least 3 training seeds; otherwise undecided.</p><ul>"]
    for name, d in parts.items():
        for r in d.itertuples(index=False):
            interval = f"[{r.lo:.3g}, {r.hi:.3g}]" if np.isfinite(r.lo) else "(no interval)"
            out.append(f"<li data-part='claim'>{e(name)}, K = {r.K}: {e(r.a)} − {e(r.b)} = {r.diff:.3g} "
                       f"{interval} over {r.seeds} training seed{'s' * (r.seeds != 1)}: "
                       f"<strong>{e(r.verdict)}</strong></li>")
    return "\n".join(out + ["</ul>"])


def _group_dl(t: Table) -> str:
    return ("<dl class='group'>" + "".join(f"<dt>{e(k)}</dt><dd>{e(str(v))}</dd>" for k, v in t.group.items()
                                          if k != "comparable_key") + "</dl>")


def leaderboard_page(tables: list[Table]) -> str:
    """`vltbench leaderboard --format html`: the page's tables alone."""
    body = "\n".join(f"<section><h2>{e(t.title)}</h2>{_group_dl(t)}\n{table_html(t, f'g{i}-table')}</section>"
                     for i, t in enumerate(tables, 1)) or "<p>No result records.</p>"
    return page("vltbench leaderboard", f"<h1>vltbench leaderboard</h1>\n{body}")


# -- figures and images ------------------------------------------------------------------------------
_ID = re.compile(r'\bid="([^"]+)"')


def svg_text(fig, prefix: str, label: str) -> str:
    """A matplotlib figure as inline SVG: no XML prolog or metadata block, its ids prefixed (several SVGs
    share one page) and not random (the same records give the same page), labelled for screen readers."""
    from matplotlib import rc_context

    buf = io.StringIO()
    with rc_context({"svg.hashsalt": prefix}):  # clip-path ids from the figure, not a random salt
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    svg = buf.getvalue()
    svg = re.sub(r"<metadata>.*?</metadata>\s*", "", svg[svg.index("<svg"):], count=1, flags=re.S)  # RDF credits
    for old in set(_ID.findall(svg)):
        new = f"{prefix}-{old}"
        svg = svg.replace(f'id="{old}"', f'id="{new}"').replace(f"#{old})", f"#{new})")
        svg = svg.replace(f'href="#{old}"', f'href="#{new}"')
    return svg.replace("<svg ", f"<svg role='img' aria-label='{e(label)}' ", 1)


def png_uri(img: np.ndarray, max_height: int = 256) -> str:
    from PIL import Image

    im = Image.fromarray(np.ascontiguousarray(img))
    if im.height > max_height:  # a page, not the archive: large samples are shrunk
        im = im.resize((round(im.width * max_height / im.height), max_height), Image.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


FIGURES = (  # (key, plots function, width class, caption)
    ("tradeoff", "fig_tradeoff", "half", "Quality vs sampling compute: mean per (method, K); error bars = std over "
     "seeds, else the bootstrap std; dotted line = real held-out images (the floor at this n), dashed = each tokenizer "
     "reconstructing at K = N (its ceiling); grey steps = Pareto frontier."),
    ("rfid", "fig_rfid", "half", "Reconstruction FD vs K: error bars = std over seeds, else the bootstrap std; "
     "floor and ceiling lines as above."),
    ("recon", "fig_recon", "", "Per-image reconstruction quality vs K (the metrics these records measured)."),
    ("alignment", "fig_alignment", "", "Alignment diagnostics: K-token latents against the full-length latents."),
)


def _figure(fig, fid: str, caption: str, width: str = "") -> str:
    return (f"<figure id='{fid}' class='{width}' data-part='figure'>{svg_text(fig, fid, caption)}"
            f"<figcaption>{e(caption)}</figcaption></figure>")


def _samples_html(g: pd.DataFrame, root: Path | None, gid: str) -> str:
    from .figures import N_SAMPLES_SHOWN, sample_strips

    strips = sample_strips(g, root)
    if not strips:
        return "<p class='missing'>No sample strips in these records.</p>"
    labels, lengths = sorted({m for m, _ in strips}), sorted({k for _, k in strips})
    seeds = sorted({s for _, s in strips.values() if s is not None})
    seed_txt = f"seed {seeds[0]}" if len(seeds) == 1 else "seeds " + "/".join(map(str, seeds))
    out = [f"<div class='scroll'><table class='samples' id='{gid}-samples' data-part='samples'>",
           f"<caption>First {N_SAMPLES_SHOWN} samples of each method at each K, {e(seed_txt)}: the same seeds "
           "and classes in every cell, so a column change is what K does.</caption>",
           "<thead><tr><th scope='col'>method</th>" + "".join(f"<th scope='col'>K={k}</th>" for k in lengths)
           + "</tr></thead><tbody>"]
    for label in labels:
        tds = []
        for k in lengths:
            img, seed = strips.get((label, k), (None, None))
            if img is None:
                tds.append("<td class='missing'>no samples</td>")
                continue
            h, w = img.shape[:2]
            disp = h * max(1, 64 // h) if h < 64 else min(h, 128)  # tiny images scaled up, big ones down
            alt = f"{label}, K={k}: first {N_SAMPLES_SHOWN} samples, seed {seed}"
            tds.append(f"<td><img data-part='strip' src='{png_uri(img)}' alt='{e(alt)}' "
                       f"width='{round(w * disp / h)}' height='{disp}'></td>")
        out.append(f"<tr><th scope='row'>{e(label)}</th>{''.join(tds)}</tr>")
    out.append("</tbody></table></div>")
    return "\n".join(out)


# -- provenance --------------------------------------------------------------------------------------
def _json_block(obj) -> str:
    return f"<pre>{e(json.dumps(obj, indent=1, sort_keys=True, default=str))}</pre>"


def _provenance_html(g: pd.DataFrame, root: Path | None) -> str:
    rows = g.sort_values(["_label", "length", "seed"])
    out = []
    for r in rows.to_dict("records"):
        path = r.get("path")
        rec = None
        if isinstance(path, str):
            try:
                rec = json.loads(Path(path).read_text())
            except (OSError, ValueError):
                rec = None
        prov = (rec or {}).get("provenance") or {}
        sha = prov.get("git_sha") or r.get("git_sha")
        head = (f"{r['_label']} · K={r['length']} · seed {r['seed']} · cell {r['cell_id']} · vltbench "
                f"{prov.get('vltbench_version', '?')} · git {str(sha)[:10] if sha else '?'}")
        shown = path
        if root is not None and isinstance(path, str) and Path(path).resolve().is_relative_to(root):
            shown = str(Path(path).resolve().relative_to(root))
        body = [f"<summary>{e(head)}</summary>"]
        if rec is None:
            body.append(f"<p class='missing'>record file {e(str(shown))} not readable: only the frame's fields</p>")
            body.append(_json_block({"git_sha": sha, "created": r.get("created")}))
        else:
            body.append(f"<p>record: {e(str(shown))}; created {e(str(prov.get('created', '?')))}</p>")
            parts = [("provenance", prov), ("metric spec", rec["identity"].get("metric_spec")),
                     ("identity", {k: v for k, v in rec["identity"].items() if k != "metric_spec"}),
                     ("config", rec.get("config")), ("notes", rec.get("notes")), ("timing", rec.get("timing"))]
            for name, obj in parts:
                if obj:
                    body.append(f"<h4>{e(name)}</h4>{_json_block(obj)}")
        out.append(f"<details class='record'>{''.join(body)}</details>")
    return "\n".join(out)


# -- the page ----------------------------------------------------------------------------------------
def build(df: pd.DataFrame, results_root: str | Path | None = None, title: str | None = None) -> str:
    """The whole report page of a results frame (from store.load_frame) as one HTML string."""
    from . import figures as plots

    root = Path(results_root).resolve() if results_root is not None else None
    title = title or f"vltbench report: {results_root if results_root is not None else 'results'}"
    tables = leaderboard(df)
    groups = comparable_groups(df) if not df.empty else []
    nav = ["<nav aria-label='contents'><ul>"]
    sections = []
    with plots.styled():
        for i, (t, g) in enumerate(zip(tables, groups), 1):
            gid = f"g{i}"
            g = plots.labelled(g)
            nav.append(f"<li><a href='#{gid}'>{e(t.title)}</a></li>")
            figs = []
            for key, fn, width, caption in FIGURES:
                fig = getattr(plots, fn)(g)
                if fig is not None:
                    figs.append(_figure(fig, f"{gid}-{key}", caption, width))
            sections.append("\n".join([
                f"<section id='{gid}'><h2>{e(t.title)}</h2>", _group_dl(t), claim_html(t),
                table_html(t, f"{gid}-table"), "<h3>Figures</h3>",
                "\n".join(figs) or "<p class='missing'>No figure: these records lack the metrics.</p>",
                "<h3>Samples across K</h3>", _samples_html(g, root, gid),
                f"<h3>Provenance of the {len(g)} records</h3>",
                "<p class='notes'>One record per (method, K, seed): open one for its vltbench version, git sha, "
                "config, metric spec, notes and timing.</p>",
                _provenance_html(g, root), "</section>"]))
        losses = plots.loss_figures(df) if not df.empty else []
        loss_html = "\n".join(_figure(fig, f"loss-{j}", name[len("loss_"):].replace("_", " · ", 1) + " training loss")
                              for j, (name, fig) in enumerate(losses, 1))
    nav.append("<li><a href='#training'>Training curves</a></li></ul></nav>")
    sections.append("<section id='training'><h2>Training curves</h2>" + (
        loss_html or "<p class='missing'>No training loss logs beside these records' checkpoints (a shipped or "
        "downloaded checkpoint has none; `vltbench train` writes them).</p>") + "</section>")
    n = len(df)
    intro = (f"<h1>{e(title)}</h1>\n<p>{n} record{'s' * (n != 1)} in {len(tables)} comparable "
             f"group{'s' * (len(tables) != 1)} (same dataset, metric spec and sampler: numbers in different groups "
             f"are not comparable). Written by vltbench {e(__version__)}; self-contained, works offline.</p>")
    if not tables:
        return page(title, intro + "\n<p>No result records.</p>")
    return page(title, "\n".join([intro, *nav] + sections))


# -- rendering in a real browser (the browser test and the committed screenshot) ------------------------
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHECK_QUERY = "?vltbench-check"  # the page's script then writes each part's size into data-box


def find_browser() -> str | None:
    """A headless-capable Chromium on PATH, or None."""
    import shutil

    return next((p for b in BROWSERS if (p := shutil.which(b))), None)


def _headless(browser: str, *args: str, timeout: float = 60) -> str:
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory(prefix="vltbench-chromium-") as profile:
        cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
               "--disable-extensions", f"--user-data-dir={profile}", "--virtual-time-budget=5000", *args]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return done.stdout


def browser_dom(page_path: str | Path, browser: str, width: int = 1600) -> str:
    """The page's DOM after its script ran with the check query: every [data-part] element carries
    data-box='<width> <height> <left> <top>[ hidden][ broken]' (CSS px, page coordinates) and <html>
    data-height (the document's height)."""
    url = Path(page_path).resolve().as_uri() + CHECK_QUERY
    return _headless(browser, f"--window-size={width},1000", "--dump-dom", url)


def screenshot(page_path: str | Path, png: str | Path, browser: str, width: int = 1600, height: int = 3000) -> Path:
    """A headless screenshot of the whole page (height: the document's, from browser_dom)."""
    png = Path(png).resolve()
    _headless(browser, f"--window-size={width},{height}", f"--screenshot={png}", Path(page_path).resolve().as_uri())
    return png


def screenshot_page(page_path: str | Path, png: str | Path, browser: str | None = None, width: int = 1600) -> Path:
    """The whole page's screenshot at this width (how results/report.png is made); needs Chromium."""
    browser = browser or find_browser()
    if browser is None:
        raise RuntimeError(f"no Chromium on PATH (looked for {', '.join(BROWSERS)}); apt-get install chromium")
    height = int(re.search(r'data-height="(\d+)"', browser_dom(page_path, browser, width)).group(1))
    return screenshot(page_path, png, browser, width, height)
