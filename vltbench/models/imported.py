"""What the records of an imported model say: how it was trained (upstream), and from which files.

An imported tokenizer may carry a DiT that vltbench trained on its latents (`vltbench train --tokenizer`):
its origin then holds a "dit" part naming the tokenizer checkpoint it started from, and its records say
both: tokenizer from the release, generator trained here."""

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
    if dit_trained_here(origin):
        start = origin["dit"]["tokenizer_checkpoint"]
        converted = f"`{origin['command']}`" if "command" in origin else "`vltbench import`"
        reshape = f"; legacy reshape {'on' if origin.get('legacy_reshape') else 'OFF'}" if "legacy_reshape" in origin else ""
        return (f"imported tokenizer, vltbench DiT: the tokenizer is the {origin.get('kind', ORIGIN)} (not trained by "
                f"vltbench, frozen), converted by {converted} from {', '.join(files)}{reshape}; the DiT was trained "
                f"by vltbench on its cached latents (`vltbench train --tokenizer {start['file']}`, sha256 "
                f"{start['sha256'][:12]}) with this record's config")
    if "command" in origin:  # the TiTok family: a tokenizer release (a DiT on it is trained by vltbench)
        return (f"imported tokenizer: {origin['kind']}, not trained by vltbench; converted by `{origin['command']}` "
                f"from {', '.join(files)}; legacy reshape {'on' if origin.get('legacy_reshape') else 'OFF'}")
    return (f"imported model: {origin.get('kind', ORIGIN)}, not trained by vltbench; converted by `vltbench import lgm` "
            f"from {', '.join(files)}; sampler settings as the official evaluation (preset lgm-official-xl)")


def dit_trained_here(origin: dict | None) -> bool:
    """An imported tokenizer whose DiT vltbench trained (`vltbench train --tokenizer`)."""
    return origin is not None and isinstance(origin.get("dit"), dict)


def fixed_length(origin: dict | None) -> int | None:
    """The one K a fixed-length release decodes (TiTok: K = N only); None when any prefix decodes."""
    decodes = str((origin or {}).get("decodes", ""))
    return int(decodes[4:].split()[0]) if decodes.startswith("K = ") else None


def record_origin(origin: dict) -> str:
    """The origin label of a gFID record: the release, and who trained the generator when it was not upstream."""
    kind = origin.get("kind", ORIGIN)
    return f"{kind} + vltbench DiT" if dit_trained_here(origin) else kind


def imported_section(origin: dict) -> dict:
    """The record's `imported` section: where the tokenizer (and generator) came from, by file and sha256."""
    files = {name: {"file": part["file"], "sha256": part["sha256"]}
             for name in ("tokenizer", "pixel_decoder", "official_config", "generator", "latent_stats")
             if isinstance(part := origin.get(name), dict) and "sha256" in part}
    out = {"kind": origin.get("kind", ORIGIN), "source": origin.get("source"), "files": files,
           "tokenizer_trained_by": "upstream (imported, frozen)",
           "generator_trained_by": "vltbench" if dit_trained_here(origin) else "upstream (imported)"}
    if "legacy_reshape" in origin:
        out["legacy_reshape"] = origin["legacy_reshape"]
    if dit_trained_here(origin):
        out["tokenizer_checkpoint"] = origin["dit"]["tokenizer_checkpoint"]
    return out
