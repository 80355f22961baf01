"""Choosing the tf.distribute strategy, and who is the chief (the one writer of a run), from the config and
TF_CONFIG (a multi-worker strategy itself is made in tests/training/test_loop_distributed.py, in processes of
its own)."""

import json

import pytest
import tensorflow as tf

from kzoo.config import STRATEGY_KINDS
from kzoo.training import strategy as strategy_module
from kzoo.training.strategy import is_chief, make_strategy, task_id, will_be_chief


def test_kinds_are_the_configs():
    assert strategy_module.STRATEGY_KINDS is STRATEGY_KINDS


def test_single_process_strategies_on_the_cpu():
    gpus = len(tf.config.list_logical_devices("GPU"))
    assert make_strategy("auto").num_replicas_in_sync == max(gpus, 1)  # every GPU, else the CPU
    one = make_strategy("one_device", ["/cpu:0"])
    assert isinstance(one, tf.distribute.OneDeviceStrategy) and one.num_replicas_in_sync == 1
    for strategy in (one, tf.distribute.get_strategy()):
        assert is_chief(strategy) and task_id(strategy) == 0


def test_bad_kinds_and_tf_config_are_named(monkeypatch):
    with pytest.raises(ValueError, match="unknown strategy 'tpu'"):
        make_strategy("tpu")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="needs the TF_CONFIG environment variable"):
        make_strategy("multi_worker")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ValueError, match="TF_CONFIG is not valid JSON"):
        make_strategy("multi_worker")


@pytest.mark.parametrize(
    "cluster,task,chief",
    [
        ({"worker": ["a:1", "b:2"]}, {"type": "worker", "index": 0}, True),  # worker 0 without a chief
        ({"worker": ["a:1", "b:2"]}, {"type": "worker", "index": 1}, False),
        ({"chief": ["c:0"], "worker": ["a:1"]}, {"type": "worker", "index": 0}, False),
        ({"chief": ["c:0"], "worker": ["a:1"]}, {"type": "chief", "index": 0}, True),
    ],
)
def test_who_will_be_chief(monkeypatch, cluster, task, chief):
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": task}))
    assert will_be_chief("multi_worker") is chief
    assert will_be_chief("mirrored") is True  # one process: the chief, whatever TF_CONFIG says


def test_an_unreadable_tf_config_counts_as_chief(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", "{not json")
    assert will_be_chief("multi_worker") is True  # make_strategy then names the problem
