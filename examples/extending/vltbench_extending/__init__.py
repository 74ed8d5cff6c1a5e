"""The README's "Extending vltbench" examples: a dataset, a feature extractor and a metric, one file each."""
