"""Fashion-MNIST from a local directory of the four original idx files (no download)."""

from __future__ import annotations

import os

import numpy as np

from kzoo.data.idx import read_idx

DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"  # Debian's dataset-fashion-mnist
CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _find(directory: str, stem: str) -> str:
    for name in (stem + ".gz", stem):
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(
        f"Fashion-MNIST file {stem}.gz not found in {directory} (on Debian: apt-get install dataset-fashion-mnist)"
    )


def load_fashion_mnist(split: str, data_dir: str = DEFAULT_DIR) -> tuple[np.ndarray, np.ndarray]:
    """Load a split of Fashion-MNIST from the original idx files.

    Args:
        split: ``"train"`` (60,000 images) or ``"test"`` (10,000 images).
        data_dir: directory holding ``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``.

    Returns:
        ``images`` uint8 ``[N, 28, 28, 1]`` and ``labels`` int64 ``[N]`` in 0..9.

    Raises:
        FileNotFoundError: the directory or one of its files is missing (named).
        ValueError: a file is corrupt, or images and labels disagree.
    """
    if split not in _FILES:
        raise ValueError(f"unknown Fashion-MNIST split {split!r}; use 'train' or 'test'")
    if not os.path.isdir(data_dir):
        raise FileNotFoundError(
            f"Fashion-MNIST directory not found: {data_dir} (on Debian: apt-get install dataset-fashion-mnist)"
        )
    image_path, label_path = (_find(data_dir, stem) for stem in _FILES[split])
    images = read_idx(image_path)
    labels = read_idx(label_path)
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(f"{image_path}: expected images of shape [N, 28, 28], got {images.shape}")
    if labels.shape != (images.shape[0],):
        raise ValueError(f"{label_path}: {labels.shape[0]} labels for {images.shape[0]} images")
    if labels.max(initial=0) > 9:
        raise ValueError(f"{label_path}: label {labels.max()} outside 0..9")
    return images[..., None], labels.astype(np.int64)
