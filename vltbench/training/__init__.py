"""Training: the tokenizer and generator loops, cached latents, and the checkpoint cache that trains on demand."""
