"""The optimizer and its learning-rate schedule, built in one place (`make_optimizer`): the
configured kind, decoupled weight decay, a slower encoder, and loss scaling under float16."""

import keras
import tensorflow as tf


class _FusedAdamUpdate:
  """Adam's update as TensorFlow's fused kernel, one operation a variable (ResourceApplyAdam,
  what tf.keras 2 ran) where Keras 3 writes about thirty: the update traces in about a third
  of the time and runs in about 60 % (docs/results.md). Keras' formula and slot variables
  (checkpoints read either way); the kernel computes 1 - beta_2 in float32 (1.3e-5 from Keras'
  for 0.999), so weights part from Keras' Adam in the sixth decimal. AMSGrad and sparse
  gradients keep Keras' update."""

  def update_step(self, gradient, variable, learning_rate):
    if self.amsgrad or isinstance(gradient, tf.IndexedSlices):
      return super().update_step(gradient, variable, learning_rate)
    dtype = variable.dtype
    index = self._get_variable_index(variable)
    step = tf.cast(self.iterations + 1, dtype)
    beta_1, beta_2 = tf.constant(self.beta_1, dtype), tf.constant(self.beta_2, dtype)
    tf.raw_ops.ResourceApplyAdam(
        var=variable.handle, m=self._momentums[index].value.handle,
        v=self._velocities[index].value.handle, beta1_power=tf.pow(beta_1, step),
        beta2_power=tf.pow(beta_2, step), lr=tf.cast(learning_rate, dtype), beta1=beta_1,
        beta2=beta_2, epsilon=tf.constant(self.epsilon, dtype), grad=tf.cast(gradient, dtype))


class Adam(_FusedAdamUpdate, keras.optimizers.Adam):
  """keras.optimizers.Adam with the fused update."""


class AdamW(_FusedAdamUpdate, keras.optimizers.AdamW):
  """keras.optimizers.AdamW with the fused update (its decoupled decay is Keras', applied
  before the update)."""


SCHEDULES = ('constant', 'cosine', 'poly')
OPTIMIZERS = {'rmsprop': keras.optimizers.RMSprop, 'adam': Adam, 'adamw': AdamW,
              'sgd': keras.optimizers.SGD}


@keras.saving.register_keras_serializable('segstream')
class PolyDecay(keras.optimizers.schedules.LearningRateSchedule):
  """A linear warm-up to `rate`, then rate x (1 - t)^power over the rest of the run (t: the
  fraction of it done): the segmentation peers' default (MMSeg, Model Garden, power 0.9)."""

  def __init__(self, rate: float, total_steps: int, warmup_steps: int = 0, power: float = 0.9):
    self.rate, self.total_steps, self.warmup_steps, self.power = (
        rate, total_steps, warmup_steps, power)

  def __call__(self, step):
    step = tf.cast(step, tf.float32)
    warmup = float(self.warmup_steps)
    done = tf.clip_by_value((step - warmup) / max(self.total_steps - warmup, 1.0), 0.0, 1.0)
    decayed = self.rate * tf.pow(1.0 - done, self.power)
    return tf.where(step < warmup, self.rate * step / max(warmup, 1.0), decayed)

  def get_config(self):
    return {'rate': self.rate, 'total_steps': self.total_steps,
            'warmup_steps': self.warmup_steps, 'power': self.power}


def learning_rate(train_config, total_steps: int):
  """A constant rate, or cosine decay to 0 (or poly decay) over the run after a linear
  warm-up."""
  if train_config.schedule == 'constant':
    return train_config.learning_rate
  warmup = min(train_config.warmup_steps, max(total_steps - 1, 0))
  if train_config.schedule == 'poly':
    return PolyDecay(train_config.learning_rate, total_steps, warmup)
  return keras.optimizers.schedules.CosineDecay(
      0.0 if warmup else train_config.learning_rate, decay_steps=max(total_steps - warmup, 1),
      warmup_target=train_config.learning_rate if warmup else None, warmup_steps=warmup)


class _SlowerVariables:
  """An optimizer whose updates of some variables use `multiplier` times the learning rate:
  one optimizer, one schedule, one step count (Keras hands each variable's rate to
  update_step). Decoupled weight decay is not scaled."""

  def slow_down(self, variables: list, multiplier: float) -> None:
    self._slow_keys = {self._var_key(v) for v in variables}  # pylint: disable=attribute-defined-outside-init
    self._slow_multiplier = multiplier  # pylint: disable=attribute-defined-outside-init

  def update_step(self, gradient, variable, learning_rate):
    if self._var_key(variable) in getattr(self, '_slow_keys', ()):
      learning_rate = learning_rate * self._slow_multiplier
    return super().update_step(gradient, variable, learning_rate)


def make_optimizer(train_config, precision: str, total_steps: int = 1,
                   encoder_variables: list = ()) -> keras.optimizers.Optimizer:
  """The configured optimizer and schedule (the encoder's variables at
  train.encoder_lr_multiplier times the rate), wrapped for dynamic loss scaling under float16."""
  rate = learning_rate(train_config, total_steps)
  multiplier = train_config.encoder_lr_multiplier
  base = OPTIMIZERS[train_config.optimizer]
  kind = type(base.__name__, (_SlowerVariables, base), {}) if multiplier != 1.0 else base
  if train_config.optimizer == 'adamw':
    optimizer = kind(learning_rate=rate, weight_decay=train_config.weight_decay)
    # Decay shrinks kernels; batch-norm scales and offsets and biases are not weights to shrink.
    optimizer.exclude_from_weight_decay(var_names=['gamma', 'beta', 'bias'])
  else:
    optimizer = kind(learning_rate=rate)
  if multiplier != 1.0:
    optimizer.slow_down(encoder_variables, multiplier)
  if precision == 'mixed_float16':
    optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
  return optimizer
