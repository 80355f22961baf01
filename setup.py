"""kzoo: a TensorFlow/Keras model zoo (Network In Network, Mask R-CNN)."""

import glob

from setuptools import find_packages, setup

setup(
    name="kzoo",
    version="0.1.0",
    description="Keras model zoo: Network In Network and Mask R-CNN, trainable with tf.distribute, "
    "exportable to TF Serving and TFLite",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    license="Apache-2.0",
    # the repository's configs/ ship inside the package as kzoo.configs, so `kzoo demo` works after `pip install .`
    packages=find_packages(include=["kzoo", "kzoo.*"]) + ["kzoo.configs"],
    package_dir={"kzoo.configs": "configs"},
    package_data={"kzoo.configs": ["*.yaml"]},
    data_files=[("share/kzoo/saved_models", glob.glob("saved_models/*.h5") + glob.glob("saved_models/*.json"))],
    install_requires=[
        "tensorflow>=2.20",
        "keras>=3.10",
        "tensorflow-datasets>=4.9",
        # tensorflow-datasets imports it lazily (DatasetBuilder.code_path, metadata of builders) without declaring
        # it for Python >= 3.9: without it `data.source: tfds` fails with ModuleNotFoundError in a fresh install
        "importlib_resources>=5.0",
        "tensorboard>=2.20",
        "numpy>=1.26",
        "pycocotools>=2.0.8",
        "pyyaml>=6.0",
        "pillow>=10.0",
        "av>=12",  # PyAV: video files for kzoo predict (FFmpeg in a wheel)
        "ai-edge-litert>=1.2",
        "tensorflow-serving-api>=2.20",
    ],
    extras_require={
        "test": ["pytest>=8", "pytest-xdist>=3", "ruff>=0.6"],
        "gpu": ["tensorflow[and-cuda]>=2.20"],
        # torchvision parity tests and `kzoo convert torchvision` / MaskRCNN(weights="coco")'s one-time conversion
        "torch": ["torch>=2.9,<2.15", "torchvision>=0.24,<0.30"],
        # the documentation site: mkdocs build --strict (mkdocs.yml, docs/)
        "docs": ["mkdocs>=1.6,<2", "mkdocs-material>=9.5,<10", "mkdocstrings[python]>=0.29"],
    },
    entry_points={"console_scripts": ["kzoo=kzoo.cli:main"]},
)
