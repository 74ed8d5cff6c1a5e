"""Which datasets each feature extractor is valid for, and what `eval.extractor: auto` picks.

The single home of that rule: every reader of `cfg.eval.extractor` goes through `resolve_extractor`.
A digit classifier scoring photos (or folder class indices read as digits) gives numbers that look
like measurements and mean nothing, so an extractor asked for a dataset outside its domain is refused
before any training or sampling. Torch-free: the CLI checks a config before importing any model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from vltbench.core.errors import UserError
from vltbench.core.registry import extractors

AUTO = "auto"
PUBLISHED_FID_SAMPLES = 50_000  # the sample count of published (ADM / DiT) FIDs


@dataclass(frozen=True)
class Domain:
    """datasets: the data.name values the extractor was trained for (None: any dataset).
    image_size: the input size its shipped weights were trained for (None: it resizes itself).
    classes: the dataset whose classes its logits are (class accuracies are measured only there).
    what: the extractor in words, for the refusal."""

    datasets: tuple[str, ...] | None = None
    image_size: int | None = None
    classes: str | None = None
    what: str = ""


class _Domains(Mapping):
    """Extractor name -> its Domain, as its registry entry declares it (vltbench.evaluation.extractors.builtins):
    one home for both, read when asked, so an extractor registered later has its domain too."""

    def __getitem__(self, name: str) -> Domain:
        if name not in extractors:
            raise KeyError(name)
        return extractors.info(name)["domain"] or Domain(what=f"feature extractor {name}")

    def __iter__(self):
        return iter(extractors.names())

    def __len__(self) -> int:
        return len(extractors)


DOMAINS = _Domains()
AUTO_ORDER = ("mnist-cnn", "inception")  # auto: the first whose domain admits the config


def _refusal(name: str, cfg) -> tuple[str, str] | None:
    """(why `name` is not valid for cfg's dataset, the fix within the dataset) or None when it is."""
    d, data = DOMAINS[name], cfg.data
    if d.datasets is not None and data.name not in d.datasets:
        return f"data.name {data.name}", ""
    # own weights (eval.inception_weights) may take another size: the classifier checks at extraction
    if d.image_size is not None and data.image_size != d.image_size and cfg.eval.inception_weights is None:
        return f"data.image_size={data.image_size}", f"--set data.image_size={d.image_size}, or "
    return None


def resolve_extractor(cfg) -> str:
    """The extractor `cfg` measures with: `auto` picks mnist-cnn for mnist (at its 16 px) and
    inception for everything else; a name outside its domain is a UserError naming the valid ones."""
    name = cfg.eval.extractor
    if name == AUTO:
        return next(n for n in AUTO_ORDER if _refusal(n, cfg) is None)
    if name not in DOMAINS:
        raise UserError(f"unknown feature extractor {name!r}; valid: {', '.join([AUTO, *sorted(DOMAINS)])}")
    refused = _refusal(name, cfg)
    if refused is not None:
        ok = [n for n in DOMAINS if _refusal(n, cfg) is None]
        alt = f"--extractor {ok[0]}" + (f" (or {', '.join(ok[1:])})" if ok[1:] else "")
        raise UserError(f"extractor {name} is a {DOMAINS[name].what}, not valid for {refused[0]}: "
                        f"use {refused[1]}{alt}")
    return name


INCEPTION_DIM = 2048  # pool3 features (InceptionExtractor.dim)


def auto_caveat(cfg) -> str | None:
    """The one-line caveat when `auto` picked Inception for fewer samples than published FIDs use."""
    n = cfg.eval.n_samples
    if cfg.eval.extractor != AUTO or resolve_extractor(cfg) != "inception" or n >= PUBLISHED_FID_SAMPLES:
        return None
    small = min(n, cfg.eval.n_ref) <= INCEPTION_DIM
    return (f"eval.extractor auto: inception for data.name {cfg.data.name}; Inception FID at n={n} samples is "
            f"biased upwards and not comparable to published {PUBLISHED_FID_SAMPLES // 1000}k-sample FIDs "
            "(only to FIDs at the same n)"
            + (f"; with n <= {INCEPTION_DIM} feature dims its covariance is singular, so KID (unbiased) leads the "
               "tables and FID is shown second" if small else ""))


def class_accuracy_unavailable(extractor_name: str, dataset: str) -> str | None:
    """Why class_acc / rclass_acc / real_class_acc are not measured (None: they are): only an
    extractor whose logits are the dataset's own classes can tell a sample's class."""
    if DOMAINS.get(extractor_name, Domain()).classes == dataset:
        return None
    return (f"class accuracy needs a classifier trained on the classes of data.name {dataset}; "
            f"{extractor_name} has no such classes")
