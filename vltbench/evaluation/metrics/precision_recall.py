"""Improved precision / recall (Kynkaanniemi et al. 2019): k-NN balls around each set's samples.
Precision = share of generated samples inside some real sample's ball; recall = the converse.
torch-fidelity's implementation (torch.cdist in chunks, save_cpu_ram path) on feature arrays."""

from __future__ import annotations

import numpy as np
import torch

from vltbench.core.errors import UserError


def precision_recall(feats_real, feats_fake, k: int = 3, batch_size: int = 10000, device="cpu") -> dict:
    from torch_fidelity.metric_prc import calculate_precision_recall_part

    n = min(len(feats_real), len(feats_fake))
    if n <= k:
        raise UserError(f"precision/recall with k={k} needs more than {k} samples per set, got {n}")
    fake = torch.from_numpy(np.ascontiguousarray(feats_fake, dtype=np.float32)).to(device)
    real = torch.from_numpy(np.ascontiguousarray(feats_real, dtype=np.float32)).to(device)
    # torch-fidelity's convention: features_1 = generated, features_2 = real
    precision, recall = calculate_precision_recall_part(fake, real, neighborhood=k, batch_size=batch_size)
    return {"precision": float(precision), "recall": float(recall)}
