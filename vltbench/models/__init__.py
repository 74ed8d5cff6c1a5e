"""Models: the method interface and lengths, tokenizer and generator networks, flow, losses, checkpoint bundles."""
