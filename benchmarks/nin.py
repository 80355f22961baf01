"""NIN benchmarks: training throughput (kzoo vs a plain keras.Sequential), input pipeline throughput,
inference latency (Keras, SavedModel, TFLite variants) and file sizes. Prints tables.

    python benchmarks/nin.py                      # the paper's MNIST NIN on 28x28x1, batch 128
    python benchmarks/nin.py --variant cifar10 --batch-norm --steps 20

Run it on an otherwise idle machine; numbers are medians over repeated timings.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from common import median_seconds, table, write_results  # noqa: E402

from kzoo.applications import NIN  # noqa: E402
from kzoo.data.classification import ClassificationSplit, make_pipeline  # noqa: E402
from kzoo.export import convert_classifier_tflite, export_classifier_saved_model, run_classifier_tflite  # noqa: E402
from kzoo.models.nin import DEFAULT_INPUT_SHAPES, VARIANTS  # noqa: E402
from kzoo.training.step import make_train_step  # noqa: E402


def sequential_nin(variant: str, input_shape, classes: int, batch_norm: bool) -> keras.Sequential:
    """The same network as ``NIN(variant=...)`` written as a plain keras.Sequential of stock layers."""
    layers: list = [keras.Input(input_shape)]
    blocks = VARIANTS[variant]
    for index, spec in enumerate(blocks, start=1):
        filters = list(spec.filters) + ([classes] if index == len(blocks) else [])
        for stage, width in enumerate(filters):
            first = stage == 0
            layers.append(
                keras.layers.Conv2D(
                    width,
                    spec.kernel_size if first else 1,
                    strides=spec.strides if first else 1,
                    padding=spec.padding if first else "valid",
                    use_bias=not batch_norm,
                    activation=None if batch_norm else "relu",
                    kernel_initializer="he_normal",
                )
            )
            if batch_norm:
                layers += [keras.layers.BatchNormalization(), keras.layers.ReLU()]
        if spec.pool:
            layers.append(keras.layers.MaxPooling2D(3, 2, padding="same"))
        if spec.dropout:
            layers.append(keras.layers.Dropout(0.5))
    layers += [keras.layers.GlobalAveragePooling2D(), keras.layers.Softmax()]
    return keras.Sequential(layers)


def training_throughput(args, input_shape, classes) -> list[tuple]:
    rng = np.random.default_rng(0)
    count = args.batch_size * args.steps
    images = rng.normal(size=(count, *input_shape)).astype(np.float32)
    labels = rng.integers(0, classes, count)
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(args.batch_size).cache().repeat()
    dataset = dataset.prefetch(tf.data.AUTOTUNE)

    def optimizer():
        return keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True)

    # kzoo: the NIN from kzoo.applications trained by kzoo's own step (the one `kzoo train` runs)
    strategy = tf.distribute.get_strategy()
    model = NIN(variant=args.variant, input_shape=input_shape, num_classes=classes, use_batch_norm=args.batch_norm)
    kzoo_optimizer = optimizer()
    kzoo_optimizer.build(model.trainable_variables)
    step = make_train_step(model, kzoo_optimizer, strategy, ("total", "accuracy"))
    iterator = iter(strategy.experimental_distribute_dataset(dataset))

    def kzoo_epoch():
        for _ in range(args.steps):
            step(iterator).numpy()

    # plain Keras: the same layers as a Sequential, trained by model.fit
    plain = sequential_nin(args.variant, input_shape, classes, args.batch_norm)
    assert plain.count_params() == model.count_params(), (plain.count_params(), model.count_params())
    plain.compile(optimizer(), "sparse_categorical_crossentropy", metrics=["accuracy"])

    def plain_epoch():
        plain.fit(dataset, steps_per_epoch=args.steps, epochs=1, verbose=0)

    kzoo_epoch(), plain_epoch()  # warm-up: tracing
    kzoo_times, plain_times = [], []
    for _ in range(args.repeats):  # interleaved, so drifts in machine load hit both alike
        kzoo_times.append(median_seconds(kzoo_epoch, 1))
        plain_times.append(median_seconds(plain_epoch, 1))
    kzoo_rate = count / statistics.median(kzoo_times)
    plain_rate = count / statistics.median(plain_times)
    return [
        ("model", "images/s", "ratio to plain Keras"),
        (
            f"kzoo NIN ({args.variant}{', BN' if args.batch_norm else ''}) + kzoo train step",
            f"{kzoo_rate:.0f}",
            f"{kzoo_rate / plain_rate:.3f}",
        ),
        ("plain keras.Sequential + model.fit", f"{plain_rate:.0f}", "1.000"),
    ], kzoo_rate


def pipeline_throughput(args, input_shape, classes) -> float:
    rng = np.random.default_rng(1)
    count = 20_000
    images = rng.integers(0, 256, size=(count, *input_shape)).astype(np.uint8)
    labels = rng.integers(0, classes, count).astype(np.int64)
    names = tuple(map(str, range(classes)))
    split = ClassificationSplit(tf.data.Dataset.from_tensor_slices((images, labels)), count, names, True)
    dataset = make_pipeline(split, args.batch_size, training=True, crop_padding=2, horizontal_flip=True)
    for _ in dataset.take(5):
        pass

    def one_pass():
        for _ in dataset:
            pass

    return count / median_seconds(one_pass, 2)


def inference_latency(args, input_shape, classes) -> list[tuple]:
    model = NIN(variant=args.variant, input_shape=input_shape, num_classes=classes, use_batch_norm=args.batch_norm)
    rng = np.random.default_rng(2)
    pixels = {b: rng.integers(0, 256, size=(b, *input_shape)).astype(np.float32) for b in (1, 64)}
    calibration = rng.integers(0, 256, size=(64, *input_shape)).astype(np.uint8)
    rows = [("artifact", "size", "batch 1 (ms)", "batch 64 (ms)", "images/s at 64")]
    keras_call = tf.function(lambda x: model(x, training=False))

    def timed(call) -> tuple[float, float]:
        result = []
        for b in (1, 64):
            call(pixels[b])
            result.append(1000 * median_seconds(lambda b=b: call(pixels[b]), args.latency_repeats))
        return tuple(result)

    def row(name, size, ms):
        rows.append((name, size, f"{ms[0]:.2f}", f"{ms[1]:.1f}", f"{64000 / ms[1]:.0f}"))

    params_mb = model.count_params() * 4 / 1e6
    row("Keras model (tf.function)", f"{params_mb:.2f} MB", timed(lambda x: keras_call(x / 127.5 - 1).numpy()))
    with tempfile.TemporaryDirectory() as tmp:
        version_dir = export_classifier_saved_model(model, tmp, "nin", [str(i) for i in range(classes)])
        serve = tf.saved_model.load(version_dir).signatures["serving_default"]
        size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(version_dir) for f in fs)
        row(
            "SavedModel serving_default",
            f"{size / 1e6:.2f} MB",
            timed(lambda x: serve(images=tf.constant(x))["probabilities"].numpy()),
        )
        for quantize in ("none", "float16", "dynamic", "int8"):
            path = os.path.join(tmp, f"nin_{quantize}.tflite")
            convert_classifier_tflite(model, path, quantize=quantize, representative_images=calibration)
            row(
                f"TFLite {quantize}",
                f"{os.path.getsize(path) / 1e6:.2f} MB",
                timed(lambda x, p=path: run_classifier_tflite(p, x, batch_size=len(x))),
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="mnist", choices=sorted(VARIANTS))
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--batch-norm", action="store_true")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=30, help="training steps per timed run")
    parser.add_argument("--repeats", type=int, default=3, help="timed training runs per model")
    parser.add_argument("--latency-repeats", type=int, default=20)
    args = parser.parse_args()
    input_shape = DEFAULT_INPUT_SHAPES[args.variant]
    print(
        f"TF {tf.__version__}, Keras {keras.__version__}, {os.cpu_count()} CPU cores; "
        f"NIN {args.variant} {input_shape}, {args.classes} classes, batch {args.batch_size}"
    )

    rows, train_rate = training_throughput(args, input_shape, args.classes)
    table("Training throughput", rows)
    pipeline_rate = pipeline_throughput(args, input_shape, args.classes)
    table(
        "Input pipeline (uint8 -> shuffle, random crop, flip, batch, normalize)",
        [
            ("pipeline", "images/s", "x training"),
            ("kzoo.data make_pipeline", f"{pipeline_rate:.0f}", f"{pipeline_rate / train_rate:.1f}"),
        ],
    )
    table("Inference latency (median)", inference_latency(args, input_shape, args.classes))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    table("Memory", [("measure", "value"), ("peak resident memory of this process", f"{peak_mb:.0f} MB")])
    write_results("nin")


if __name__ == "__main__":
    main()
