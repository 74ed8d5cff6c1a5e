"""Built-in methods, one plugin per folder (installed as `vltbench.methods`)."""
