"""Conformance checks a plugin's own CI can call: the invariants the harness relies on, run on tiny inputs.

    from vltbench.testing import check_method
    check_method(MyMethod)          # or a registered name: check_method("merge")

Each check raises one AssertionError listing every invariant that failed (nothing when all hold), so a
test is one line. vltbench's own suite runs them over every registered method, extractor and metric
(tests/test_conformance.py), built-in or installed through an entry point.
"""

from __future__ import annotations

import json

import numpy as np
import torch
from pydantic import BaseModel

from vltbench.core import registry
from vltbench.core.errors import UserError

__all__ = ["check_method", "check_extractor", "check_metric"]


class _Failures:
    """Collects what failed, so one run names every broken invariant, not just the first."""

    def __init__(self, what: str):
        self.what, self.items = what, []

    def check(self, ok: bool, message: str) -> bool:
        if not ok:
            self.items.append(message)
        return ok

    def run(self, label: str, fn):
        """fn() or None after recording the exception it raised."""
        try:
            return fn()
        except Exception as e:  # a check reports; it does not stop at the first broken call
            self.items.append(f"{label} raised {type(e).__name__}: {e}")
            return None

    def refuses(self, fn, label: str, not_refused: str) -> None:
        """fn() must raise a UserError (a one-line error for the user): not another exception, not nothing."""
        try:
            fn()
        except UserError:
            return
        except Exception as e:
            self.items.append(f"{label} raised {type(e).__name__} ({e}), not a UserError")
            return
        self.items.append(not_refused)

    def raise_if_any(self) -> None:
        if self.items:
            raise AssertionError(f"{self.what} breaks {len(self.items)} invariant(s):\n- " + "\n- ".join(self.items))


def _method_class(method):
    return registry.methods.get(method) if isinstance(method, str) else method


def check_method(method, *, n_tokens: int = 16, latent_dim: int = 8, batch: int = 3, seed: int = 0) -> None:
    """The per-method invariants, on random latents (B, N, C), no tokenizer or training needed:
    - class attributes: `family` and `description` are text, `Options` a pydantic model whose defaults
      validate, `describe()` JSON;
    - `train_tokens` gives the decoder input (B, L, C), 1 <= L <= N, and a dict of losses;
      `sample_length` one of the training lengths;
    - for every K in 1..N: `view(K)` is a K-token view of N positions (each position in exactly one token,
      sizes summing to N; deterministic for a data-independent method), `merge` gives (B, K, C),
      `expand` the decoder input (B, L, C), K <= L <= N, of z's dtype and finite, `generation_view` a
      K-token view;
    - at K = N, `reconstruct_tokens` returns z itself (nothing is dropped or merged);
    - K = 0 and K = N + 1 are refused with a UserError (one `error:` line for the user)."""
    cls = _method_class(method)
    f = _Failures(f"method {getattr(cls, 'name', None) or getattr(cls, '__name__', cls)!r}")
    for attr in ("family", "description"):
        f.check(isinstance(getattr(cls, attr, None), str) and getattr(cls, attr), f"{attr} is not a non-empty str")
    opts_cls = getattr(cls, "Options", None)
    if not f.check(isinstance(opts_cls, type) and issubclass(opts_cls, BaseModel), "Options is not a pydantic model"):
        f.raise_if_any()
    options = f.run("Options()", opts_cls)
    train_lengths = sorted({1, n_tokens // 2, n_tokens})
    probs = [1 / len(train_lengths)] * len(train_lengths)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        m = f.run("the constructor", lambda: cls(n_tokens, latent_dim, options, train_lengths, probs))
    if m is None:
        f.raise_if_any()
    f.run("freeze()", m.freeze)
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(batch, n_tokens, latent_dim, generator=gen)
    described = f.run("describe()", m.describe)
    f.check(isinstance(described, dict) and f.run("json.dumps(describe())", lambda: json.dumps(described)) is not None,
            "describe() is not a JSON dict")
    out = f.run("train_tokens", lambda: m.train_tokens(z, torch.Generator().manual_seed(seed)))
    if out is not None:
        ok = (isinstance(out, tuple) and len(out) == 2 and torch.is_tensor(out[0]) and isinstance(out[1], dict)
              and out[0].shape[0] == z.shape[0] and 1 <= out[0].shape[1] <= n_tokens and out[0].shape[2] == latent_dim)
        f.check(ok, "train_tokens does not give (decoder input (B, L, C) with 1 <= L <= N, dict of losses)")
    k = f.run("sample_length", lambda: m.sample_length(torch.Generator().manual_seed(seed)))
    f.check(k in train_lengths, f"sample_length gave {k}, not one of the training lengths {train_lengths}")
    for k in range(1, n_tokens + 1):
        _check_length(f, m, z, k, seed)
    rec = f.run("reconstruct_tokens at K = N", lambda: m.reconstruct_tokens(z, n_tokens))
    if rec is not None:
        f.check(tuple(rec.shape) == tuple(z.shape) and torch.allclose(rec, z, atol=1e-5),
                "reconstruct_tokens at K = N is not z itself (nothing may be dropped or merged at full length)")
    for bad in (0, n_tokens + 1):
        def call(bad=bad):
            m.view(bad, z) if m.data_dependent else m.view(bad)
            m.reconstruct_tokens(z, bad)
        f.refuses(call, f"K = {bad}", f"K = {bad} (outside 1..N = {n_tokens}) was not refused")
    f.raise_if_any()


def _check_length(f: _Failures, m, z, k: int, seed: int) -> None:
    n, b = z.shape[1], z.shape[0]
    view = f.run(f"view({k})", lambda: m.view(k, z) if m.data_dependent else m.view(k))
    if view is None:
        return
    if not f.check(view.k == k and view.n_tokens == n, f"view({k}) has k={view.k}, n_tokens={view.n_tokens}"):
        return
    if not m.data_dependent:
        again = m.view(k)
        f.check((view.P is None) == (again.P is None) and (view.P is None or torch.equal(view.P, again.P)),
                f"view({k}) differs between two calls (a data-independent view must be deterministic)")
    if view.P is not None:
        a = view.assignment
        f.check(tuple(a.shape[-2:]) == (n, k), f"view({k}).P has shape {tuple(view.P.shape)}, not (N, K) = ({n}, {k})")
        f.check(torch.all(a.sum(-1) == 1).item(), f"view({k}): a position is in no token or in several")
        if view.sizes is not None:
            f.check(torch.all(view.sizes.sum(-1) == n).item(), f"view({k}).sizes do not sum to N = {n}")
    zk = f.run(f"merge at K = {k}", lambda: view.merge(z))
    if zk is None or not f.check(tuple(zk.shape) == (b, k, z.shape[2]), f"merge at K = {k} gave {tuple(zk.shape)}"):
        return
    full = f.run(f"expand at K = {k}", lambda: m.expand(zk, view))
    if full is not None:  # the decoder input: K tokens (truncation) up to all N positions (merge, fill)
        ok = (full.shape[0] == b and k <= full.shape[1] <= n and full.shape[2] == z.shape[2]
              and full.dtype == z.dtype and bool(torch.isfinite(full).all()))
        f.check(ok, f"expand at K = {k} gave {tuple(full.shape)} {full.dtype}, not (B, L, C) with K <= L <= N, "
                    f"{z.dtype}, finite")
    gv = f.run(f"generation_view({k})", lambda: m.generation_view(k, torch.arange(b), seed, z))
    if gv is not None:
        f.check(gv.k == k and gv.n_tokens == n, f"generation_view({k}) has k={gv.k}, n_tokens={gv.n_tokens}")


def check_extractor(name: str, *, batch: int = 4, image_size: int | None = None, device: str = "cpu") -> None:
    """A registered feature extractor's invariants: a non-empty `id`, features (B, dim) float64 finite,
    logits present exactly when `has_logits`, the same output for the same images (caches key on `id`),
    and a refusal (UserError) of float or wrongly shaped images."""
    from vltbench.evaluation.extractors.build import get_extractor
    from vltbench.evaluation.extractors.domains import DOMAINS

    f = _Failures(f"feature extractor {name!r}")
    ex = f.run("building it", lambda: get_extractor(name, device=device))
    if ex is None:
        f.raise_if_any()
    size = image_size or DOMAINS[name].image_size or 32
    images = torch.randint(0, 256, (batch, 3, size, size), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    f.check(isinstance(getattr(ex, "id", None), str) and ex.id, "id is not a non-empty str")
    out = f.run("extracting", lambda: ex(images))
    if out is not None:
        feats = out.get("features")
        f.check(isinstance(feats, np.ndarray) and feats.shape == (batch, ex.dim) and feats.dtype == np.float64
                and np.isfinite(feats).all(), f"features are not ({batch}, dim={ex.dim}) float64 finite")
        f.check(("logits" in out) == bool(getattr(ex, "has_logits", False)),
                f"logits {'missing' if 'logits' not in out else 'present'} with has_logits={ex.has_logits}")
        again = f.run("extracting again", lambda: ex(images))
        f.check(again is not None and np.allclose(again["features"], feats, rtol=1e-6, atol=1e-9),
                "the same images gave different features")
    for label, bad in (("float images", images.float() / 255), ("one-channel images", images[:, :1])):
        f.refuses(lambda bad=bad: ex(bad), label, f"{label} were not refused")
    f.raise_if_any()


def check_metric(spec) -> None:
    """A metric declaration's invariants (a MetricSpec, or a declared key): a column-name key, a direction
    the leaderboard knows, a header that renders for the FID and for another extractor's label, and a
    `compute` that resolves to a callable."""
    from vltbench.core.registry import resolve
    from vltbench.evaluation.metrics.specs import DIRECTIONS, metric_spec

    if isinstance(spec, str):
        found = metric_spec(spec)
        if found is None:
            raise AssertionError(f"metric {spec!r} is not declared")
        spec = found
    f = _Failures(f"metric {spec.key!r}")
    f.check(spec.better in DIRECTIONS, f"better is {spec.better!r}")
    f.check(isinstance(spec.key, str) and spec.key.isidentifier(), f"key {spec.key!r} is not a column name")
    for label in (None, "FID", "FD_randproj"):
        header = f.run(f"header_for({label!r})", lambda: spec.header_for(label))
        f.check(isinstance(header, str) and header and "{" not in header, f"header_for({label!r}) gave {header!r}")
    if spec.compute is not None:
        fn = f.run("resolving compute", lambda: resolve(spec.compute) if isinstance(spec.compute, str) else spec.compute)
        f.check(callable(fn), f"compute {spec.compute!r} is not a callable")
    f.raise_if_any()
