"""`vltbench score`: vltbench's metrics for samples made elsewhere (or saved by --save-samples).

Samples: an ADM-format .npz (arr_0 uint8 (N, H, W, 3), optional arr_1 labels) or a folder of images
(read as they are, every image the same size). Reference: the configured dataset's test reference
(exactly the one a run measures against), an ADM reference batch .npz (mu / sigma, plus arr_0's
features for KID and precision/recall), or a folder of real images (center-cropped to
data.image_size as ADM does). sFID (vltbench.evaluation.metrics.sfid) where the extractor is
Inception: against the ADM batch's mu_s / sigma_s, or the reference images' spatial features. The result is a record like a cell's, labelled external: origin
"external", no checkpoint, no length; it never counts as a vltbench-trained method in a table.
"""

from __future__ import annotations

import warnings
import zipfile
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vltbench.core.errors import UserError
from vltbench.core.hashing import hash_obj, sha256_file

from .plan import EVAL_PROTOCOL, FID_SQRT, extractor_label

ORIGIN = "external"


class SampleSource:
    """uint8 (B, 3, H, W) batches of the samples, in order, and their labels (or None)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if self.path.is_dir():
            from vltbench.data.folders import _image_files

            self.files = _image_files(self.path)
            if not self.files:
                raise UserError(f"samples folder {self.path} holds no images (.png, .jpg, .jpeg, .webp, .bmp)")
            self.kind, self.count, self.labels = "folder", len(self.files), None
            self.sha256 = hash_obj([(str(f.relative_to(self.path)), sha256_file(f)) for f in self.files])
        elif self.path.is_file():
            self.kind, self.files = "adm-npz", None
            self.count, self.labels = self._read_npz_header()
            self.sha256 = sha256_file(self.path)
        else:
            raise UserError(f"samples {self.path} do not exist; pass an .npz (arr_0 uint8 NHWC) or an image folder")

    def _read_npz_header(self):
        from .metrics.refstats import _npy_header

        try:
            with zipfile.ZipFile(self.path) as zf:
                if "arr_0.npy" not in zf.namelist():
                    raise UserError(f"samples {self.path} have no arr_0 (has {sorted(zf.namelist())}); save the "
                                    "images as arr_0, uint8 (N, H, W, 3), as the ADM evaluator reads them")
                with zf.open("arr_0.npy") as f:
                    shape, dtype = _npy_header(f)
        except zipfile.BadZipFile:
            raise UserError(f"samples {self.path} are not an .npz (zip) file; pass an ADM-format .npz or a "
                            "folder of images") from None
        if len(shape) != 4 or shape[3] != 3 or dtype != np.uint8:
            raise UserError(f"samples {self.path}: arr_0 is {dtype} {shape}, expected uint8 (N, H, W, 3)")
        with np.load(self.path) as z:
            labels = z["arr_1"].astype(np.int64) if "arr_1" in z.files else None
        if labels is not None and labels.shape != (shape[0],):
            raise UserError(f"samples {self.path}: arr_1 has shape {labels.shape}, expected ({shape[0]},) labels")
        return shape[0], labels

    def batches(self, batch_size: int):
        if self.kind == "adm-npz":
            from .metrics.refstats import AdmNpz

            yield from AdmNpz(self.path, None, None, self.count, None).iter_images(batch_size)
            return
        size = None
        for s in range(0, self.count, batch_size):
            arrs = []
            for f in self.files[s:s + batch_size]:
                try:
                    with Image.open(f) as im:
                        a = np.asarray(im.convert("RGB"))
                except Exception as e:  # Pillow raises many types for a broken file
                    raise UserError(f"cannot read sample image {f} ({e}); replace or delete it") from None
                if size is None:
                    size = a.shape
                elif a.shape != size:
                    raise UserError(f"sample image {f} is {a.shape[1]}x{a.shape[0]}, the first was "
                                    f"{size[1]}x{size[0]}; every sample must have the same size")
                arrs.append(a)
            yield torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2).contiguous()

    def describe(self) -> dict:
        return {"path": str(self.path.resolve()), "format": self.kind, "count": self.count, "sha256": self.sha256,
                "labels": self.labels is not None}


def _folder_reference(path: Path, cfg, extractor):
    from vltbench.data.folders import _image_files, load_image

    from .metrics import reference_stats

    files = _image_files(path)
    if not files:
        raise UserError(f"reference folder {path} holds no images (.png, .jpg, .jpeg, .webp, .bmp)")
    size, bs = cfg.data.image_size, cfg.eval.batch_size
    key = {"dataset": f"folder:{hash_obj([(str(f.relative_to(path)), sha256_file(f)) for f in files])}",
           "split": "all", "count": len(files), "preprocessing": f"center crop to {size} px (ADM)"}

    def batches():
        for s in range(0, len(files), bs):
            yield torch.from_numpy(np.stack([load_image(f, size) for f in files[s:s + bs]]))

    ref = reference_stats(key, batches, extractor)

    def spatial():
        from .metrics.sfid import SpatialView
        r = reference_stats(key, batches, SpatialView(extractor))
        return r.mu, r.sigma

    return ref, {"source": "folder", "path": str(path.resolve()), **key}, f"{len(files)} images of {path}", spatial


def _adm_spatial(path):
    """The ADM batch's mu_s / sigma_s (its sFID statistics), or a UserError-free None when absent."""
    with np.load(path) as z:
        if "mu_s" not in z.files or "sigma_s" not in z.files:
            return None
        return z["mu_s"].astype(np.float64), z["sigma_s"].astype(np.float64)


def score_samples(cfg, samples: str | Path, reference: str = "dataset", *, name: str | None = None,
                  seed: int = 0, device="cpu") -> dict:
    """The record of `samples` scored against `reference` ("dataset", an ADM .npz, or an image folder)."""
    from vltbench.evaluation.extractors import extractor_for
    from vltbench.evaluation.metrics import compute_image_metrics
    from vltbench.evaluation.metrics.specs import record_metrics

    from .store import build_record, provenance

    src = SampleSource(samples)
    e = cfg.eval
    extractor = extractor_for(cfg, device)
    ref_path = Path(reference) if reference != "dataset" else None
    classes = None
    if ref_path is None:
        from vltbench.data import load_data

        from .references import RealSets

        ds = load_data(cfg.data)
        sets = RealSets(cfg, ds, extractor)
        ref = sets.reference
        ref_spec = {"source": "dataset", "dataset": {"name": ds.name, "manifest_hash": ds.manifest_hash,
                                                     "image_size": ds.image_size},
                    "ref_split": "adm-npz" if sets.adm else sets.test_split, "reference": sets.reference_spec()}
        what = (f"{ref.stats.n} stratified {sets.test_split} images of {ds.name}" if not sets.adm
                else f"the ADM reference {e.reference}")
        classes = ds.num_classes if sets.dataset_classes else None

        def spatial():
            if sets.adm:
                return _adm_spatial(e.reference)
            from .metrics import reference_stats
            from .metrics.sfid import SpatialView
            from .references import PREPROCESSING

            sub = sets.ref_subset
            key = {"dataset": sub.split.manifest_hash, "split": sub.split_name, "count": len(sub.idx),
                   "subset": sub.info["manifest"], "preprocessing": PREPROCESSING}
            r = reference_stats(key, lambda: sub.batches(e.batch_size), SpatialView(extractor))
            return r.mu, r.sigma
    elif ref_path.is_dir():
        ref, ref_spec, what, spatial = _folder_reference(ref_path, cfg, extractor)
    elif ref_path.suffix == ".npz":
        from .metrics import adm_reference

        ref = adm_reference(ref_path, extractor, e.batch_size)
        ref_spec = {"source": "adm-npz", "sha256": sha256_file(ref_path)}
        what = f"the ADM reference {ref_path}"

        def spatial():
            return _adm_spatial(ref_path)
    else:
        raise UserError(f"--reference {reference!r}: pass 'dataset' (the configured dataset's test reference), an "
                        "ADM reference batch .npz, or a folder of real images")
    from .metrics import sfid

    common = dict(kid_subset_size=min(e.kid_subset_size, src.count), seed=seed, fid_method=FID_SQRT)
    why_no_sfid = sfid.unavailable_reason(extractor)
    spatial_ref = spatial() if why_no_sfid is None else None
    if why_no_sfid is None and spatial_ref is None:
        why_no_sfid = f"the ADM reference has no mu_s / sigma_s (sFID statistics): {what}"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"\d+ (real|generated) samples <= feature dim")
        with sfid.tapped(extractor) if spatial_ref is not None else nullcontext() as tap:
            out = compute_image_metrics(extractor, None, src.batches(e.batch_size), ref=ref, return_features=True,
                                        **common)
    metrics = record_metrics({"guided": out})
    unavailable = {k: v for k, v in out["reasons"].items() if k in metrics and metrics[k] is None}
    if spatial_ref is not None:
        metrics["sfid"] = sfid.sfid(tap, *spatial_ref)
    else:
        metrics["sfid"], unavailable["sfid"] = None, why_no_sfid
    if classes is not None and src.labels is not None and out.get("logits") is not None:
        from .extractors.mnist_cnn import class_accuracy

        metrics["class_acc"], metrics["class_acc_std"] = class_accuracy(out["logits"], src.labels)
    label = extractor_label(extractor)
    mspec = {"protocol": EVAL_PROTOCOL, "extractor_id": extractor.id, "label": label, "n_samples": src.count,
             "kid_subset_size": common["kid_subset_size"], "pr_k": 3, "fid_sqrt": FID_SQRT, **ref_spec}
    identity = {"method": name or src.path.name.split(".")[0], "origin": ORIGIN, "samples": src.describe(), "length": None,
                "n_tokens": None, "seed": seed, "sampler": None,
                "dataset": ref_spec.get("dataset") or {"name": ref_spec["source"], "image_size": cfg.data.image_size},
                "metric_spec": mspec}
    notes = [f"external samples ({src.kind}, {src.count} images, sha256 {src.sha256[:16]}) scored by vltbench "
             f"score: g{label} vs {what}; no checkpoint, sampler or guidance of vltbench's"]
    return build_record(identity, {k: _plain(v) for k, v in metrics.items()}, unavailable=unavailable, notes=notes,
                        origin=ORIGIN, provenance=provenance(str(device), 1),
                        config={k: v for k, v in cfg.model_dump(mode="json").items() if k != "methods"})


def write_score(record: dict, results: str | Path) -> tuple[Path, bool]:
    """(record path, whether written now): an identical score (same samples, reference, spec) is kept."""
    from .store import ResultStore

    store = ResultStore(results)
    store.ensure_writable()
    if store.exists(record["cell_id"]):
        return store.path_for(record), False
    return store.write(record), True


def _plain(v):
    return v.item() if isinstance(v, np.generic) else (None if isinstance(v, float) and not np.isfinite(v) else v)
