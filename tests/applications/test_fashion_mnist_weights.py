"""The shipped Fashion-MNIST NIN: registered, hash-checked, loadable offline, and as accurate as stated."""

import os

import numpy as np
import pytest

from kzoo.applications import NIN, nin
from kzoo.applications.weights import REGISTRY, local_weight_dirs
from kzoo.data.fashion_mnist import DEFAULT_DIR, load_fashion_mnist
from kzoo.utils.files import sha256_of

ENTRY = REGISTRY["fashion_mnist"]
SHIPPED = os.path.join(local_weight_dirs()[-2], ENTRY.file_name)


def test_shipped_file_matches_registry():
    assert os.path.isfile(SHIPPED), f"{SHIPPED} is missing from saved_models/"
    assert os.path.getsize(SHIPPED) < 5e6
    assert sha256_of(SHIPPED) == ENTRY.sha256


def test_loads_offline_by_name():
    model = NIN(weights="fashion_mnist", input_shape=(28, 28, 1))
    assert model.count_params() == 351_816  # the paper's MNIST widths, with batch norm (incl. moving stats)
    scores = model(np.zeros((1, 28, 28, 1), np.float32))
    assert scores.shape == (1, 10)
    assert model.class_names == ENTRY.class_names and model.class_names[0] == "T-shirt/top"


@pytest.mark.skipif(not os.path.isdir(DEFAULT_DIR), reason="Debian's dataset-fashion-mnist is not installed")
def test_test_set_accuracy_as_stated():
    images, labels = load_fashion_mnist("test")
    model = NIN(weights="fashion_mnist", input_shape=(28, 28, 1))
    probs = model.predict(nin.preprocess_input(images), batch_size=500, verbose=0)
    accuracy = float(np.mean(np.argmax(probs, -1) == labels))
    assert accuracy >= 0.935
    assert abs(accuracy - ENTRY.metrics["test_accuracy"]) < 1e-3
    top = nin.decode_predictions(probs[:1], top=1, class_names="fashion_mnist")[0][0]
    assert top[1] in ENTRY.class_names
