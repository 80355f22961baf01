"""Optimizers whose update steps are fused TF kernels that work in place.

Keras's ``SGD`` writes its momentum step as tensor arithmetic: ``m * momentum``, ``g * lr`` and their
difference are each a temporary the size of the variable. TF's executor runs a variable's update as soon as its
gradient is ready, so for Mask R-CNN's 12544 x 1024 box-head kernel those temporaries (about 50 MB each) are
alive while the rest of the backward pass runs. ``ResourceApplyKerasMomentum`` computes the same formula in one
kernel that updates both buffers in place, as ``torch.optim.SGD`` does (TF first copies a variable's buffer
that a pending op of the step still reads).
"""

from __future__ import annotations

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="kzoo")
class SGD(keras.optimizers.SGD):
    """``keras.optimizers.SGD`` (same arguments, variables and checkpoints) whose momentum step is TF's fused
    in-place ``ResourceApplyKerasMomentum`` for dense gradients:

    ``m = momentum * m - lr * g``; ``w = w + m`` (``w = w + momentum * m - lr * g`` with ``nesterov``), the
    formula of ``keras.optimizers.SGD``. Sparse gradients (``tf.IndexedSlices``) and ``momentum == 0`` take
    Keras's own step. Weight decay stays Keras's (decoupled, applied before the step).
    """

    def update_step(self, gradient, variable, learning_rate) -> None:
        """Update ``variable`` (a ``tf.Variable``, any float dtype) with ``gradient`` (a tensor of its shape)."""
        if self.momentum == 0 or isinstance(gradient, tf.IndexedSlices):
            return super().update_step(gradient, variable, learning_rate)
        momentum = self.momentums[self._get_variable_index(variable)]
        momentum = momentum.value if isinstance(momentum, keras.Variable) else momentum
        dtype = variable.dtype
        tf.raw_ops.ResourceApplyKerasMomentum(
            var=variable.handle,
            accum=momentum.handle,
            lr=tf.cast(learning_rate, dtype),
            grad=tf.cast(gradient, dtype),
            momentum=tf.cast(self.momentum, dtype),
            use_locking=False,
            use_nesterov=self.nesterov,
        )
