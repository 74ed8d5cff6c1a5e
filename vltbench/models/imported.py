"""What the records of an imported model say: how it was trained (upstream), and from which files."""

from __future__ import annotations

ORIGIN = "official LGM release"


def describe_imported(bundle, origin: dict) -> None:
    """Mark a bundle as imported: its records say how the model was trained (upstream), not vltbench's recipe."""
    bundle.origin = origin
    weights = (origin.get("tokenizer") or {}).get("weights", "ema")
    bundle.method.encoder_start = f"{origin.get('kind', ORIGIN)}: " + origin.get(
        "encoder_start", "trained upstream (its encoder started from DINOv2 ViT-B)")
    if weights not in ("ema", "model"):  # a release's one set of weights (TiTok family)
        bundle.method.tokenizer_weights = f"{origin.get('kind', ORIGIN)}'s {weights} weights"
    else:
        bundle.method.tokenizer_weights = f"{origin.get('kind', ORIGIN)}'s {'EMA' if weights == 'ema' else 'raw'} weights"


def origin_note(origin: dict) -> str:
    """The record note of an imported model: what it is and which files (by sha256) it came from."""
    files = [f"{part['file']} (sha256 {part['sha256'][:12]}, {part.get('weights', 'statistics')})"
             for part in (origin.get("tokenizer"), origin.get("pixel_decoder"), origin.get("generator"),
                          origin.get("latent_stats")) if part]
    if "command" in origin:  # the TiTok family: a tokenizer release (a DiT on it is trained by vltbench)
        return (f"imported tokenizer: {origin['kind']}, not trained by vltbench; converted by `{origin['command']}` "
                f"from {', '.join(files)}; legacy reshape {'on' if origin.get('legacy_reshape') else 'OFF'}")
    return (f"imported model: {origin.get('kind', ORIGIN)}, not trained by vltbench; converted by `vltbench import lgm` "
            f"from {', '.join(files)}; sampler settings as the official evaluation (preset lgm-official-xl)")
