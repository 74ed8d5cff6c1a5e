"""The real-image sets a sweep measures against, each a seeded class-stratified subset (or the whole split).

- test reference: `eval.n_ref` images of `eval.reference` (val | train), or an ADM reference batch (.npz);
- selection reference: the same count from the other split (guidance scales are chosen against it, so
  the test reference never picks a hyper-parameter);
- held-out real images: `eval.n_samples` images of the test split outside the reference (the other
  split when it has too few). They give the metric's floor at this n (real vs reference), and they are
  the images reconstructed for rFID / PSNR, so rFID minus the floor is what reconstruction loses;
- alignment images: up to ALIGN_IMAGES val images.

Features of every set are cached content-addressed (vltbench.evaluation.metrics.refstats); each set's description
(split, count, images per class, seed, index manifest) goes into the records.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from vltbench.core.config import Config
from vltbench.core.errors import UserError
from vltbench.data import Dataset
from vltbench.data.core import ImageSet, stratified, subset_info

from .extractors.base import INCEPTION_ID_PREFIX
from .extractors.domains import class_accuracy_unavailable
from .metrics import Reference, adm_reference, load_adm_npz, reference_stats

ALIGN_IMAGES = 500
PREPROCESSING = "uint8 RGB, extractor's own resize"


def splits(reference: str) -> tuple[str, str]:
    """(test split, the other split) for `eval.reference`: guidance is selected on the other one."""
    return ("train", "val") if reference == "train" else ("val", "train")


@dataclass
class Subset:
    split: ImageSet
    split_name: str  # "train" | "val"
    idx: np.ndarray
    info: dict

    def batches(self, batch_size: int, start: int = 0, stop: int | None = None):
        """uint8 batches of the images idx[start:stop], in order."""
        idx = self.idx[start:stop]
        for s in range(0, len(idx), batch_size):
            yield torch.as_tensor(self.split.images(idx[s:s + batch_size]))


class RealSets:
    """The stratified subsets and reference statistics of one sweep; built lazily, rank 0 fills caches."""

    def __init__(self, cfg: Config, ds: Dataset, extractor):
        self.cfg, self.ds, self.extractor = cfg, ds, extractor
        self.seed = cfg.eval.seed
        src = cfg.eval.reference
        self.adm = src not in ("val", "train")
        self.test_split, self.other_split = splits(src)
        if self.adm:
            _check_adm_extractor(extractor, cfg, src)

    def subset(self, split_name: str, count: int, exclude: np.ndarray | None = None, how: str = "stratified") -> Subset:
        split = getattr(self.ds, split_name)
        idx = stratified(split.labels, count, self.seed, exclude)
        return Subset(split, split_name, idx, subset_info(split, idx, self.seed, how))

    # --- the subsets ----------------------------------------------------------------------------
    @cached_property
    def ref_subset(self) -> Subset | None:
        if self.adm:
            return None
        return self.subset(self.test_split, self.cfg.eval.n_ref)

    @cached_property
    def held_out(self) -> Subset:
        """n_samples real images outside the reference: from the test split when it has enough left."""
        n = self.cfg.eval.n_samples
        if self.adm:  # the reference is external: any of our val images are held out
            return self.subset("val", n, how="stratified; the reference is an external ADM batch")
        ref = self.ref_subset.idx
        split = getattr(self.ds, self.test_split)
        if len(split) - len(ref) >= n:
            return self.subset(self.test_split, n, exclude=ref, how="stratified, disjoint from the reference")
        other = getattr(self.ds, self.other_split)
        return self.subset(self.other_split, min(n, len(other)),
                           how=f"stratified from {self.other_split}: {self.test_split} has fewer than "
                               f"n_ref + n_samples = {len(ref) + n} images")

    @cached_property
    def align_subset(self) -> Subset:
        return self.subset("val", ALIGN_IMAGES)

    # --- sizes ----------------------------------------------------------------------------------
    def check_sizes(self, pr_k: int = 3) -> None:
        """Refuse now, before any training, a set too small for a metric the run computes: precision /
        recall (k nearest neighbours) needs more than k images per set, the alignment's k-NN more than
        its k. Names the set, the split and the option that sizes it."""
        from .metrics.alignment import KNN

        e, s, d = self.cfg.eval, self.cfg.sampler, self.cfg.data
        need = pr_k + 1
        why = f"precision/recall with k={pr_k} needs more than {pr_k} images per set"
        for option, value in (("--n-samples", e.n_samples),) + ((("sampler.select_samples", s.select_samples),)
                                                                  if s.guidance == "search" else ()):
            if value < need:
                raise UserError(f"{option} {value}: generated sets need at least {need} samples ({why}); "
                                f"raise {option}")
        sets = [] if self.adm else [("the test reference", self.ref_subset, "eval.n_ref", need, why)]
        sets.append(("the held-out real images", self.held_out, "eval.n_samples", need, why))
        if s.guidance == "search":
            sets.append(("the guidance-selection reference", self.selection_subset, "eval.n_ref", need, why))
        sets.append(("the alignment images", self.align_subset, None, KNN + 1,
                     f"the k-NN alignment (CKNNA) with k={KNN} needs more than {KNN} images"))
        for what, sub, option, n_min, because in sets:
            n = len(sub.idx)
            if n >= n_min:
                continue
            asked = getattr(e, option.split(".")[1]) if option else None
            if asked is not None and asked < n_min:
                fix = f"raise {option} (now {asked})"
            else:
                split = sub.split_name
                count = getattr(d, f"{split}_count", None)
                fix = f"add images to the {split} split" + (f" ({Path(d.root) / split})" if d.root and d.name in
                                                             ("folder", "imagenet") else "")
                if count is not None:
                    fix += f" or raise data.{split}_count (now {count})"
                if split == self.test_split and not self.adm:
                    fix += f", or measure against the other split: --set eval.reference={self.other_split}"
            raise UserError(f"the {sub.split_name} split has {n} images for {what}, which needs at least "
                            f"{n_min} ({because}); {fix}")

    # --- statistics -----------------------------------------------------------------------------
    def stats(self, sub: Subset, batch_size: int) -> Reference:
        key = {"dataset": sub.split.manifest_hash, "split": sub.split_name, "count": len(sub.idx),
               "subset": sub.info["manifest"], "preprocessing": PREPROCESSING}
        return reference_stats(key, lambda: sub.batches(batch_size), self.extractor)

    @cached_property
    def reference(self) -> Reference:
        if self.adm:
            path = self.cfg.eval.reference
            size = load_adm_npz(path).image_size  # checked before any features are extracted
            if size is not None and tuple(size) != (self.ds.image_size,) * 2:
                raise UserError(f"ADM reference {path} holds {size[0]}x{size[1]} images but the data are "
                                f"{self.ds.image_size}x{self.ds.image_size}: its statistics come from another "
                                "resize; set data.image_size to match or use eval.reference: val")
            return adm_reference(path, self.extractor, self.cfg.eval.batch_size)
        return self.stats(self.ref_subset, self.cfg.eval.batch_size)

    @cached_property
    def selection_subset(self) -> Subset:
        """Guidance is chosen against this: stratified n_ref images of the split that is not the test
        reference (train for val and ADM references)."""
        return self.subset(self.other_split, self.cfg.eval.n_ref)

    @cached_property
    def selection_reference(self) -> Reference:
        return self.stats(self.selection_subset, self.cfg.eval.batch_size)

    @cached_property
    def held_out_stats(self) -> Reference:
        return self.stats(self.held_out, self.cfg.eval.batch_size)

    @property
    def dataset_classes(self) -> bool:
        """Whether the extractor's logits are this dataset's classes (class accuracies are measured)."""
        return self.class_accuracy_unavailable is None

    @property
    def class_accuracy_unavailable(self) -> str | None:
        """Why class accuracies are not measured (None: they are)."""
        return class_accuracy_unavailable(getattr(self.extractor, "name", "?"), self.ds.name)

    @cached_property
    def held_out_logits(self) -> np.ndarray:
        """The extractor's logits of the held-out images, in order (class-accuracy extractors; once per sweep)."""
        return np.concatenate([self.extractor(b)["logits"] for b in self.held_out.batches(self.cfg.eval.batch_size)])

    # --- descriptions ---------------------------------------------------------------------------
    def reference_spec(self) -> dict:
        """What identifies the test reference (part of every cell's metric spec)."""
        if self.adm:
            from vltbench.core.hashing import sha256_file
            return {"source": "adm-npz", "sha256": sha256_file(self.cfg.eval.reference)}
        s = self.ref_subset
        return {"source": s.split_name, "count": len(s.idx), "seed": self.seed, "manifest": s.info["manifest"]}

    def describe(self) -> dict:
        """The subsets a record names: count, images per class, seed, manifest."""
        out = {"reference": self.ref_subset.info if not self.adm else {"source": self.cfg.eval.reference},
               "held_out": self.held_out.info, "alignment": self.align_subset.info}
        if self.cfg.sampler.guidance == "search":
            out["guidance_selection"] = self.selection_subset.info
        return out


def _check_adm_extractor(extractor, cfg: Config, path: str) -> None:
    """ADM statistics are Inception pool3 features after the TF1 bilinear resize (torch-fidelity's)."""
    if not extractor.id.startswith(INCEPTION_ID_PREFIX):
        raise UserError(f"eval.reference {path} is an ADM batch of Inception statistics but eval.extractor is "
                        f"{extractor.name!r}; use eval.extractor: inception or eval.reference: val")
    if cfg.eval.backend != "torch-fidelity":
        raise UserError(f"eval.reference {path} is an ADM batch (TF1 bilinear resize) but eval.backend is "
                        f"{cfg.eval.backend!r}, which resizes differently; use eval.backend: torch-fidelity")
