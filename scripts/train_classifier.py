"""Retrain the mnist-cnn feature extractor (vltbench/evaluation/extractors/mnist_cnn.py) by its recipe.

    python scripts/train_classifier.py [--out vltbench/assets/mnist-cnn.safetensors]

Writes the safetensors and a JSON beside it (sha256, validation accuracy, recipe). One thread and a
fixed seed make it deterministic on one machine; another BLAS may give other bits (and so another
sha256, extractor id and cell ids), never another recipe.
"""

import argparse

from vltbench.evaluation.extractors.mnist_cnn import WEIGHTS, train_classifier

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(WEIGHTS))
    info = train_classifier(p.parse_args().out)
    print(f"{info['name']}: val accuracy {info['val_accuracy']:.4f} on {info['val_images']} digits, "
          f"sha256 {info['sha256']}, {info['train_s']} s")
