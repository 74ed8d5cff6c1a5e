"""One declaration per metric: what the leaderboard, the plots and `check` need to know about a number
in a result record (its column key, header, which direction is better, where its noise estimate is,
the smallest change worth failing on).

The record keys are those of `store.measurements`: metrics as named in record["metrics"], compute
values (`sampling_gflops`, params as `params_<part>`) and alignment diagnostics as `align_<name>`.
Leaderboard columns appear in declaration order (params_* and align_* columns after the others,
sorted by key).

A spec also names the pass of the sweep that computes it (`computed_by`, one of PASSES) and where in
that pass's output its value is (`field`, default its key; `std_field`: its std, written under
noise_key or `<key>_std`); `compute` ("module:attr" or a function of the pass's output) computes a
new metric from a pass's output. The sweep runs the passes the specs name and fills each record's
"metrics" from them (`record_metrics`): adding a metric to every record is one spec.

A plugin that writes a metric of its own declares it once, either at import time:

    from vltbench.evaluation.metrics.specs import MetricSpec, register_metric
    register_metric(MetricSpec("my_score", "My score", "higher", noise_key="my_score_std", min_effect=0.5))

or, so that `vltbench leaderboard` / `check` / `plot` know it without importing the plugin's method,
through the `vltbench.metrics` entry-point group of its distribution, naming a MetricSpec or a list
of them: `[project.entry-points."vltbench.metrics"] my-score = "my_pkg.metrics:SPECS"`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Iterable

from vltbench.core.errors import UserError
from vltbench.core.registry import metrics as METRICS

GROUP = METRICS.group
DIRECTIONS = ("lower", "higher", None)
DYNAMIC_PREFIXES = ("params_", "align_")  # columns that exist per record: ordered by key after the others
# The passes of a cell's evaluation (vltbench.evaluation.sweep.evaluate_cell) and what each one outputs.
# The first ones fill record["metrics"]; the last three are stored whole in their own record section.
PASSES = {
    "guided": "samples at the chosen guidance scale vs the test reference (compute_image_metrics' output)",
    "unguided": "samples at scale 1.0 vs the test reference (compute_image_metrics' output)",
    "recon": "held-out images reconstructed at K vs the test reference (compute_image_metrics' output)",
    "recon_quality": "held-out images vs their reconstructions at K: psnr, ssim, lpips",
    "floor": "the held-out real images themselves vs the test reference: fid, fid_bootstrap_std, kid, kid_std",
    "ceiling": "held-out images reconstructed at K = N vs the test reference: fid, fid_bootstrap_std, kid, kid_std",
    "xlen": "unguided samples at K vs at K = N, same seeds: xlen_distance",
    "classes": "class accuracies from a dataset classifier's logits: <name>, <name>_std",
    "guidance": "the guidance scale chosen (record['guidance'])",
    "flops": "FLOPs and parameter counts (record['compute'])",
    "alignment": "alignment of the K-token latents with the full-length ones (record['alignment'])",
}
SECTION_PASSES = ("guidance", "flops", "alignment")  # stored whole, not through record_metrics


@dataclass(frozen=True)
class MetricSpec:
    """What vltbench knows about one measured number.

    key: the record / frame column (e.g. "gfid", "sampling_gflops", "align_cknna").
    header: its leaderboard header and plot label; "g{FD}" / "r{FD}" stand for the extractor's
        Fréchet distance name ("gFID" with Inception, "gFD_<name>" with another extractor), "{KID}"
        for "KID" or "KID_<name>".
    better: "lower" | "higher" | None (a value with no direction, e.g. the CFG scale: never ranked,
        never checked).
    noise_key: the column holding this number's own std (bootstrap / subset std) for one seed: shown
        as ± in the leaderboard and the noise of a one-seed `check`.
    min_effect: the smallest change worth failing `check` on, in the metric's own units (None = 0).
    ranked: the leaderboard marks the best method row (needs a direction).
    column: shown as a leaderboard column of its own (False for numbers shown otherwise, e.g. the
        floor and ceiling FIDs, which are reference rows of the gFID column).
    scale: factor applied for display (e.g. 1e-6: parameters in millions).
    exact: an exact count (FLOPs, parameters): never shown with ±.
    values: show the distinct values over seeds (e.g. the CFG scale chosen per seed), not a mean.
    trivial_at_full: a distance / similarity to the K = N view, perfect there by definition: K = N
        is never marked best.
    per_family: compares representations that differ across method families: ranked only among
        methods of one family and representation.
    computed_by: the pass that computes it (PASSES); None: not computed by the sweep (a plugin's own).
    field: the key of its value in the pass's output (None: the metric's key).
    std_field: the key of its std in the pass's output, written under noise_key (or <key>_std).
    compute: a function of the pass's output (or its "module:attr") that returns the value, for a
        metric the pass does not output itself.
    """

    key: str
    header: str
    better: str | None
    noise_key: str | None = None
    min_effect: float | None = None
    ranked: bool = True
    column: bool = True
    scale: float = 1.0
    exact: bool = False
    values: bool = False
    trivial_at_full: bool = False
    per_family: bool = False
    computed_by: str | None = None
    field: str | None = None
    std_field: str | None = None
    compute: object = None

    def __post_init__(self):
        if not isinstance(self.key, str) or not self.key:
            raise UserError(f"a metric key must be a non-empty string, got {self.key!r}")
        if self.better not in DIRECTIONS:
            raise UserError(f"metric {self.key!r}: better must be 'lower', 'higher' or None, got {self.better!r}")
        if self.computed_by is not None and self.computed_by not in PASSES:
            raise UserError(f"metric {self.key!r}: computed_by must name a pass ({', '.join(PASSES)}), "
                            f"got {self.computed_by!r}")
        if self.compute is not None and self.computed_by in (None, *SECTION_PASSES):
            raise UserError(f"metric {self.key!r}: compute needs computed_by naming the pass whose output it "
                            f"reads (one of {', '.join(p for p in PASSES if p not in SECTION_PASSES)})")

    def header_for(self, label: str | None = None) -> str:
        """The header with the Fréchet distance's name filled in (label: the record's metric_label)."""
        header = re.sub(r"([gr])\{FD\}", lambda m: fd_name(label, m.group(1)), self.header)
        return header.replace("{KID}", "KID" if not label or label == "FID" else f"KID_{fd_name(label, '')[3:]}")

    @property
    def is_ranked(self) -> bool:
        return self.ranked and self.better is not None


def fd_name(label: str | None, prefix: str) -> str:
    """"gFID" for the Inception FID, "gFD_<name>" for another extractor's Fréchet distance."""
    label = label or "FID"
    return f"{prefix}{label}" if label == "FID" or label.startswith("FD_") else f"{prefix}FD_{label}"


def _fd(pass_: str) -> dict:
    """A Fréchet distance and its bootstrap std, as a features pass outputs them."""
    return {"computed_by": pass_, "field": "fid", "std_field": "fid_bootstrap_std"}


def _acc(prefix: str = "") -> dict:
    """A class accuracy and its binomial std, as the classes pass outputs them."""
    return {"computed_by": "classes", "std_field": f"{prefix}class_acc_std"}


_BUILTIN = (
    # generation (guided samples at the chosen CFG scale unless named otherwise)
    MetricSpec("gfid", "g{FD}", "lower", noise_key="gfid_bootstrap_std", min_effect=1.0, **_fd("guided")),
    MetricSpec("gfid_noguidance", "g{FD} no-CFG", "lower", noise_key="gfid_noguidance_bootstrap_std", min_effect=1.0,
               **_fd("unguided")),
    MetricSpec("cfg_scale", "CFG w", None, values=True, computed_by="guidance"),
    # reconstruction
    MetricSpec("rfid", "r{FD}", "lower", noise_key="rfid_bootstrap_std", min_effect=1.0, **_fd("recon")),
    MetricSpec("psnr", "PSNR (dB)", "higher", computed_by="recon_quality"),
    MetricSpec("ssim", "SSIM", "higher", computed_by="recon_quality"),
    MetricSpec("lpips", "LPIPS", "lower", computed_by="recon_quality"),
    MetricSpec("kid", "{KID}", "lower", noise_key="kid_std", min_effect=0.002, computed_by="guided", std_field="kid_std"),
    MetricSpec("rkid", "r{KID}", "lower", noise_key="rkid_std", computed_by="recon", field="kid", std_field="kid_std"),
    MetricSpec("inception_score", "IS", "higher", min_effect=1.0, computed_by="guided"),
    # classifier extractors (mnist-cnn): samples classified as their conditioning class; held-out
    # reconstructions at K classified as their label; the held-out real images themselves (the ceiling)
    MetricSpec("class_acc", "class acc.", "higher", noise_key="class_acc_std", min_effect=0.02, **_acc()),
    MetricSpec("rclass_acc", "recon class acc.", "higher", noise_key="rclass_acc_std", min_effect=0.02, **_acc("r")),
    MetricSpec("real_class_acc", "real class acc.", "higher", ranked=False, column=False, **_acc("real_")),
    MetricSpec("precision", "Prec.", "higher", min_effect=0.02, computed_by="guided"),
    MetricSpec("recall", "Rec.", "higher", min_effect=0.02, computed_by="guided"),
    # cost
    MetricSpec("sampling_gflops", "GFLOPs/img", "lower", exact=True, computed_by="flops"),
    MetricSpec("dit_forward_gflops", "GFLOPs/fwd", "lower", exact=True, computed_by="flops"),
    MetricSpec("xlen_distance", "x-len dist→N", "lower", trivial_at_full=True, computed_by="xlen"),
    # reference values: the floor (held-out real images) and each tokenizer's ceiling (recon at K = N),
    # shown as reference rows of the gFID column, never ranked
    MetricSpec("real_fid", "real (held-out)", "lower", noise_key="real_fid_bootstrap_std", ranked=False,
               column=False, **_fd("floor")),
    MetricSpec("rfid_full", "tokenizer @K=N (recon)", "lower", noise_key="rfid_full_bootstrap_std", ranked=False,
               column=False, **_fd("ceiling")),
    # the same two as KID (rows of the KID column when KID leads the table: n <= feature dim)
    MetricSpec("real_kid", "real (held-out) {KID}", "lower", noise_key="real_kid_std", ranked=False, column=False,
               computed_by="floor", field="kid", std_field="kid_std"),
    MetricSpec("rkid_full", "tokenizer @K=N (recon) {KID}", "lower", noise_key="rkid_full_std", ranked=False,
               column=False, computed_by="ceiling", field="kid", std_field="kid_std"),
    MetricSpec("encoder_gflops", "encoder GFLOPs", "lower", exact=True, column=False, computed_by="flops"),
    MetricSpec("decoder_gflops", "decoder GFLOPs", "lower", exact=True, column=False, computed_by="flops"),
    MetricSpec("nfe", "NFE", "lower", exact=True, column=False, computed_by="flops"),
    # parameters (compute.params -> params_<part>)
    MetricSpec("params_dit", "DiT params (M)", None, scale=1e-6, exact=True, computed_by="flops"),
    MetricSpec("params_tokenizer", "Tok. params (M)", None, scale=1e-6, exact=True, computed_by="flops"),
    # alignment of the K-token latents with the full-length ones (record["alignment"] -> align_<name>)
    MetricSpec("align_frechet_to_full", "Fréchet→full", "lower", trivial_at_full=True, per_family=True,
               computed_by="alignment"),
    MetricSpec("align_cknna", "CKNNA", "higher", trivial_at_full=True, computed_by="alignment"),
    MetricSpec("align_merged_pair_cos", "merged-pair cos", "higher", computed_by="alignment"),
    MetricSpec("align_mutual_knn", "mutual_knn", None, computed_by="alignment"),
    MetricSpec("align_all_pair_cos", "all_pair_cos", None, computed_by="alignment"),
)

def register_builtins(r) -> None:
    """The built-in declarations, one registry entry per key (vltbench.core.registry.metrics)."""
    for spec in _BUILTIN:
        r.register(spec.key, spec, source="built in")


def register_metric(spec: MetricSpec | str, header: str | None = None, better: str | None = None, *,
                    replace_existing: bool = False, **fields) -> MetricSpec:
    """Declare a metric: `register_metric(MetricSpec(...))` or `register_metric(key, header, better, **fields)`.

    Registering the same declaration twice is a no-op; a different one under a taken key is refused
    unless replace_existing=True."""
    if not isinstance(spec, MetricSpec):
        if header is None:
            raise UserError(f"register_metric({spec!r}): give a header (and better: 'lower', 'higher' or None)")
        spec = MetricSpec(spec, header, better, **fields)
    elif header is not None or better is not None or fields:
        raise UserError("register_metric: pass either a MetricSpec or key, header, better and fields, not both")
    old = _declared().get(spec.key)
    if old == spec:
        return spec
    if old is not None and not replace_existing:
        raise UserError(f"metric {spec.key!r} is already declared ({old}); pick another key or pass "
                        "replace_existing=True")
    if old is not None and spec.key not in METRICS:
        raise UserError(f"metric {spec.key!r} is declared in a list of an installed distribution's vltbench.metrics "
                        "entry point; it cannot be replaced: uninstall that distribution or pick another key")
    METRICS.register(spec.key, spec, replace=old is not None)
    return spec


def _declared() -> dict[str, MetricSpec]:
    """Key -> declaration over every registry entry, in registration order (built-ins first). An
    entry-point target may be one MetricSpec or a list of them; a key declared twice is refused."""
    out: dict[str, MetricSpec] = {}
    for entry in METRICS.entries():
        obj = entry.load()
        specs = [obj] if isinstance(obj, MetricSpec) else list(obj) if isinstance(obj, (list, tuple)) else None
        if specs is None or not all(isinstance(s, MetricSpec) for s in specs):
            raise UserError(f"metric {entry.name!r} ({entry.source}: {entry.target}) must be a MetricSpec or a "
                            f"list of them, got {type(obj).__name__}")
        for s in specs:
            if out.get(s.key, s) != s:
                raise UserError(f"metric {s.key!r} is declared twice ({out[s.key]} and, by {entry.source}, {s}); "
                                "uninstall or rename one of them")
            out[s.key] = s
    return out


def metric_specs() -> list[MetricSpec]:
    """Every declared metric, built-ins first, in declaration order."""
    return list(_declared().values())


def record_metrics(outputs: dict[str, dict]) -> dict:
    """A record's "metrics" from the outputs of the passes that ran (pass name -> its output): each
    declared metric computed by one of them, with its std; a pass that did not run adds nothing."""
    out = {}
    for s in metric_specs():
        if s.computed_by in SECTION_PASSES or s.computed_by not in outputs:
            continue
        res = outputs[s.computed_by]
        if s.compute is not None:
            fn = _resolve(s.compute) if isinstance(s.compute, str) else s.compute
            out[s.key] = fn(res)
        else:
            out[s.key] = res.get(s.field or s.key)
        if s.std_field is not None:
            out[s.noise_key or f"{s.key}_std"] = res.get(s.std_field)
    return out


def passes() -> set[str]:
    """The passes some declared metric needs (the sweep runs the optional ones only when named)."""
    return {s.computed_by for s in metric_specs() if s.computed_by is not None}


def _resolve(target: str):
    from vltbench.core.registry import resolve

    try:
        return resolve(target)
    except (ImportError, AttributeError) as e:
        raise UserError(f"metric compute function {target} failed to load: {e}") from e


def metric_spec(key: str) -> MetricSpec | None:
    """The declaration of a record column; an undeclared params_* / align_* column gets a neutral one
    (its name as header, no direction); any other undeclared key: None."""
    declared = _declared()
    if key in declared:
        return declared[key]
    if key.startswith("params_"):
        return MetricSpec(key, f"{key[len('params_'):]} params (M)", None, scale=1e-6, exact=True)
    if key.startswith("align_"):
        return MetricSpec(key, key[len("align_"):], None)
    return None


def column_specs(columns: Iterable[str], label: str | None = None) -> list[MetricSpec]:
    """The leaderboard's columns for a frame with these columns, in order: declared columns (declaration
    order), then params_* and align_* columns by key. Headers have the FD name filled in (label)."""
    present = set(columns)
    fixed = [s for s in metric_specs() if s.column and not s.key.startswith(DYNAMIC_PREFIXES)]
    out = [s for s in fixed if s.key in present]
    for prefix in DYNAMIC_PREFIXES:
        for key in sorted(c for c in present if c.startswith(prefix)):
            s = metric_spec(key)
            if s is not None and s.column:
                out.append(s)
    return [replace(s, header=s.header_for(label)) for s in out]
