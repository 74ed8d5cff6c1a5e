"""Reconstruction metrics on uint8 images: PSNR, SSIM (scikit-image), LPIPS when its weights are local.

PSNR and SSIM are per image, then averaged. SSIM uses Wang et al.'s settings (Gaussian window
sigma 1.5, population covariance, data range 255, RGB channels averaged). LPIPS is never downloaded:
it runs only if the `lpips` package's bundled linear weights plus the torchvision backbone, or
torch-fidelity's LPIPS-VGG16 weights plus VGG16, are already in the torch-hub cache; otherwise it is
None with a reason.
"""

from __future__ import annotations

import importlib.util
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from vltbench.core.errors import UserError
from vltbench.core.safeload import refusal, tensors_only

BACKBONE_FILES = {"vgg": "vgg16-397923af.pth", "alex": "alexnet-owt-7be5be79.pth"}
TFID_LPIPS_FILE = "weights-vgg16-lpips.pth"


def _hub_file(name: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / name


def lpips_model(net: str = "vgg", device="cpu"):
    """(fn(a_uint8, b_uint8) -> per-image distances, None) or (None, reason). Never downloads."""
    if net not in BACKBONE_FILES:
        raise UserError(f"unknown LPIPS network {net!r}; valid: {', '.join(BACKBONE_FILES)}")
    backbone = _hub_file(BACKBONE_FILES[net])
    spec = importlib.util.find_spec("lpips")
    if spec is not None and spec.submodule_search_locations and backbone.is_file():
        lin = Path(list(spec.submodule_search_locations)[0]) / "weights" / "v0.1" / f"{net}.pth"
        if lin.is_file():
            import lpips

            with _tensors_only_weights(backbone, lin):
                model = lpips.LPIPS(net=net, verbose=False).to(device).eval()
            return (lambda a, b: model(a.to(device).float() / 127.5 - 1, b.to(device).float() / 127.5 - 1).flatten()), None
    if net == "vgg" and backbone.is_file() and _hub_file(TFID_LPIPS_FILE).is_file():
        from torch_fidelity.sample_similarity_lpips import SampleSimilarityLPIPS

        with _tensors_only_weights(backbone, _hub_file(TFID_LPIPS_FILE)):
            model = SampleSimilarityLPIPS("lpips-vgg16", sample_similarity_dtype="uint8").to(device).eval()
        return (lambda a, b: model(a.to(device), b.to(device)).flatten()), None
    # named by role, never by this machine's path: the reason is written into records that travel
    return None, (f"LPIPS unavailable: no local weights (the torch hub cache's checkpoints/{backbone.name} "
                  f"plus the lpips package's weights/v0.1/{net}.pth, or checkpoints/{TFID_LPIPS_FILE}); "
                  "put them in the folder torch.hub.get_dir() names")


@contextmanager
def _tensors_only_weights(*files: Path):
    """The LPIPS libraries load these with torch.load(weights_only=False): forced tensors-only, so a
    pickle holding code is refused (one UserError naming the files), never run."""
    import pickle

    try:
        with tensors_only():
            yield
    except pickle.UnpicklingError as e:
        raise UserError(f"LPIPS weights ({', '.join(map(str, files))}) are not plain state dicts of tensors "
                        f"({refusal(e)}); vltbench never runs code from a weights file: replace them with the "
                        "published files or remove them (LPIPS is then reported as unavailable)") from None


class ReconMeter:
    """Accumulate per-image PSNR / SSIM / LPIPS over batches of (original, reconstruction)."""

    def __init__(self, lpips: bool = True, lpips_net: str = "vgg", device="cpu"):
        self.psnr, self.ssim, self.lpips = [], [], []
        self.lpips_fn, self.lpips_reason = (lpips_model(lpips_net, device) if lpips
                                            else (None, "LPIPS disabled"))

    def update(self, original: torch.Tensor, recon: torch.Tensor) -> None:
        if original.shape != recon.shape or original.dtype != torch.uint8 or recon.dtype != torch.uint8:
            raise UserError(f"original and reconstruction must be uint8 of equal shape, got {original.dtype} "
                            f"{tuple(original.shape)} and {recon.dtype} {tuple(recon.shape)}")
        a = original.permute(0, 2, 3, 1).cpu().numpy()
        b = recon.permute(0, 2, 3, 1).cpu().numpy()
        if min(a.shape[1:3]) < 11:
            raise UserError(f"SSIM needs images of at least 11x11 pixels, got {a.shape[1]}x{a.shape[2]}")
        for x, y in zip(a, b):
            with np.errstate(divide="ignore"):  # identical images: PSNR = inf
                self.psnr.append(peak_signal_noise_ratio(x, y, data_range=255))
            self.ssim.append(structural_similarity(x, y, channel_axis=-1, data_range=255, gaussian_weights=True,
                                                   sigma=1.5, use_sample_covariance=False))
        if self.lpips_fn is not None:
            with torch.inference_mode():
                self.lpips.extend(self.lpips_fn(original, recon).cpu().double().tolist())

    def result(self) -> dict:
        if not self.psnr:
            raise UserError("no reconstructions were given; check the image source")
        return {"psnr": float(np.mean(self.psnr)), "ssim": float(np.mean(self.ssim)),
                "lpips": float(np.mean(self.lpips)) if self.lpips_fn is not None else None,
                "reasons": {"lpips": self.lpips_reason} if self.lpips_fn is None else {}, "n": len(self.psnr)}
