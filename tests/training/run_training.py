"""Run ``kzoo.training.loop.train`` on the task of a config in a fresh process and record what happened
(test helper).

Usage: ``python run_training.py SPEC.json``. The spec holds:

- ``config``: the experiment config as a nested dict (``config_from_dict``);
- ``logical_cpus``: split the CPU into this many logical devices before any TF op (0: leave it);
- ``result``: a path prefix; ``<prefix>.json`` gets the metrics, the optimizer's iteration count and,
  under a mirrored strategy, how far the replicas' copies of the variables are apart;
  ``<prefix>.npz`` gets the weights before (``initial_i``) and after (``final_i``) training;
- ``step_sleep`` (optional): ``[after_steps, seconds]``: sleep this long before every train step
  once ``after_steps`` steps have run (to kill a run mid-epoch);

Logical devices must be configured before TensorFlow runs an op, and a multi-worker job needs one
process per worker, hence one process per training run.
"""

from __future__ import annotations

import json
import os
import sys
import time


def main(spec_path: str) -> None:
    with open(spec_path) as f:
        spec = json.load(f)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    if spec.get("logical_cpus"):
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * spec["logical_cpus"])

    import numpy as np

    from kzoo.config import config_from_dict
    from kzoo.tasks import task_for
    from kzoo.training import loop

    config = config_from_dict(spec["config"])
    task = task_for(config)
    captured = {}
    build_model, build_optimizer, make_train_step = task.build_model, loop.build_optimizer, task.make_train_step

    def recording_build_model():
        model = build_model()
        captured["model"] = model
        captured["initial"] = model.get_weights()
        return model

    def recording_build_optimizer(train_config, steps_per_epoch, **kwargs):
        captured["optimizer"] = optimizer = build_optimizer(train_config, steps_per_epoch, **kwargs)
        captured["steps_per_epoch"] = steps_per_epoch
        return optimizer

    def slow_make_train_step(*args, **kwargs):
        step = make_train_step(*args, **kwargs)
        after, seconds = spec["step_sleep"]
        calls = [0]

        def sleepy_step(iterator):
            if calls[0] >= after:
                print(f"sleeping before step {calls[0] + 1}", flush=True)
                time.sleep(seconds)
            calls[0] += 1
            return step(iterator)

        return sleepy_step

    task.build_model = recording_build_model
    loop.build_optimizer = recording_build_optimizer
    if spec.get("step_sleep"):
        task.make_train_step = slow_make_train_step

    metrics = loop.train(task, verbose=spec.get("verbose", 2))

    model, optimizer = captured["model"], captured["optimizer"]
    replica_spread = 0.0  # largest difference between the replicas' copies of a variable
    for variable in model.weights:
        copies = [c.numpy() for c in _local_copies(variable.value)]
        replica_spread = max([replica_spread] + [float(np.max(np.abs(c - copies[0]))) for c in copies[1:]])
    result = {
        "metrics": metrics,
        "iterations": int(optimizer.iterations.numpy()),
        "steps_per_epoch": captured["steps_per_epoch"],
        "variable_copies": len(_local_copies(model.weights[0].value)),
        "replica_spread": replica_spread,
    }
    with open(spec["result"] + ".json", "w") as f:
        json.dump(result, f, indent=2)
    arrays = {f"initial_{i}": w for i, w in enumerate(captured["initial"])}
    arrays.update({f"final_{i}": w for i, w in enumerate(model.get_weights())})
    np.savez(spec["result"] + ".npz", **arrays)


def _local_copies(variable) -> list:
    """The per-device copies of a (possibly mirrored) ``tf.Variable``."""
    values = getattr(variable, "values", None)
    return list(values) if values is not None else [variable]


if __name__ == "__main__":
    main(sys.argv[1])
