"""kzoo.ops.devices.runs_on_gpu: a tensor's own device when it has one, else whether TF sees a GPU."""

import tensorflow as tf

from kzoo.ops.devices import runs_on_gpu


def test_an_eager_cpu_tensor_does_not():
    with tf.device("/CPU:0"):
        assert not runs_on_gpu(tf.constant([1.0]))


def test_a_graph_tensor_follows_its_placement_else_the_machine():
    seen = {}

    @tf.function
    def trace():
        with tf.device("/GPU:0"):
            seen["gpu"] = runs_on_gpu(tf.constant([1.0]) + 1)
        with tf.device("/CPU:0"):
            seen["cpu"] = runs_on_gpu(tf.constant([1.0]) + 1)
        seen["unplaced"] = runs_on_gpu(tf.constant([1.0]) + 1)
        return tf.constant(0)

    trace.get_concrete_function()
    assert seen == {"gpu": True, "cpu": False, "unplaced": bool(tf.config.list_logical_devices("GPU"))}
