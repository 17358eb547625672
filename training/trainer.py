"""The distributed train and eval steps: strategy.run inside tf.function, several steps a call.

Each replica returns sums (loss, examples, confusion matrix) that are reduced across replicas
and workers with SUM, so the metrics are exact whatever the replica count or batch split.
"""

import keras
import tensorflow as tf

from training import metrics


SCHEDULES = ('constant', 'cosine')
OPTIMIZERS = {'rmsprop': keras.optimizers.RMSprop, 'adam': keras.optimizers.Adam,
              'adamw': keras.optimizers.AdamW, 'sgd': keras.optimizers.SGD}


def learning_rate(train_config, total_steps: int):
  """A constant rate, or cosine decay to 0 over the run after a linear warm-up."""
  if train_config.schedule == 'constant':
    return train_config.learning_rate
  warmup = min(train_config.warmup_steps, max(total_steps - 1, 0))
  return keras.optimizers.schedules.CosineDecay(
      0.0 if warmup else train_config.learning_rate, decay_steps=max(total_steps - warmup, 1),
      warmup_target=train_config.learning_rate if warmup else None, warmup_steps=warmup)


def make_optimizer(train_config, precision: str, total_steps: int = 1
                   ) -> keras.optimizers.Optimizer:
  """The configured optimizer and schedule, wrapped for dynamic loss scaling under float16."""
  rate = learning_rate(train_config, total_steps)
  if train_config.optimizer == 'adamw':
    optimizer = keras.optimizers.AdamW(learning_rate=rate,
                                       weight_decay=train_config.weight_decay)
    # Decay shrinks kernels; batch-norm scales and offsets and biases are not weights to shrink.
    optimizer.exclude_from_weight_decay(var_names=['gamma', 'beta', 'bias'])
  else:
    optimizer = OPTIMIZERS[train_config.optimizer](learning_rate=rate)
  if precision == 'mixed_float16':
    optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
  return optimizer


class Trainer:
  """Owns the compiled step functions for one model, optimizer and strategy."""

  def __init__(self, strategy: tf.distribute.Strategy, model: keras.Model,
               optimizer: keras.optimizers.Optimizer, global_batch_size: int, num_classes: int,
               jit_compile: bool = False, jaccard_loss_weight: float = 0.0):
    self.strategy = strategy
    self.jaccard_loss_weight = jaccard_loss_weight
    self.model = model
    self.optimizer = optimizer
    self.global_batch_size = global_batch_size
    self.num_classes = num_classes
    if not optimizer.built:  # Slots must exist before the step function is traced.
      with strategy.scope():
        optimizer.build(model.trainable_variables)
    # XLA compiles the forward and backward pass; the optimizer's cross-replica update stays
    # outside, where the strategy's all-reduce lives.
    self._gradients = tf.function(self._loss_and_gradients, jit_compile=True) if jit_compile \
        else self._loss_and_gradients
    self._train_steps_fn = tf.function(self._train_steps)
    self.eval_step = tf.function(self._eval_step, reduce_retracing=True)

  def _sums(self, batch, probabilities, per_example):
    """(loss sum, example count, confusion matrix), with eval padding weighted out."""
    weights = batch.get('weight', tf.ones_like(per_example))
    return (tf.reduce_sum(per_example * weights), tf.reduce_sum(weights),
            metrics.confusion_matrix(batch['label'], probabilities, self.num_classes, weights))

  def _loss_and_gradients(self, batch):
    with tf.GradientTape() as tape:
      probabilities = self.model(batch['image'], training=True)
      per_example = metrics.per_example_loss(batch['label'], probabilities,
                                             self.jaccard_loss_weight)
      # Divide by the GLOBAL batch: gradients are summed across replicas by the optimizer.
      loss = tf.nn.compute_average_loss(per_example, global_batch_size=self.global_batch_size)
      if self.model.losses:
        loss += tf.nn.scale_regularization_loss(tf.add_n(self.model.losses))
      scaled_loss = self.optimizer.scale_loss(loss)
    gradients = tape.gradient(scaled_loss, self.model.trainable_variables)
    return gradients, self._sums(batch, probabilities, per_example)

  def _train_replica_step(self, batch):
    gradients, sums = self._gradients(batch)
    self.optimizer.apply(gradients, self.model.trainable_variables)
    return sums

  def _reduce(self, per_replica):
    return [self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for v in per_replica]

  def train_steps(self, iterator, num_steps: tf.Tensor):
    """Runs `num_steps` training steps in one call.

    Returns [loss sum, example count, confusion matrix, seconds spent waiting for input]: the
    wait is timed around each `get_next`, after the previous step has finished.
    """
    return self._train_steps_fn(iterator, num_steps)

  def _train_steps(self, iterator, num_steps: tf.Tensor):
    totals = [tf.zeros([]), tf.zeros([]), tf.zeros([self.num_classes, self.num_classes])]
    waited = tf.zeros([], tf.float64)
    for _ in tf.range(num_steps):
      with tf.control_dependencies(totals):
        asked = tf.timestamp()
      with tf.control_dependencies([asked]):
        batch = next(iterator)
      with tf.control_dependencies(tf.nest.flatten(
          self.strategy.experimental_local_results(batch))):
        waited += tf.timestamp() - asked
      sums = self._reduce(self.strategy.run(self._train_replica_step, args=(batch,)))
      totals = [t + s for t, s in zip(totals, sums)]
    return totals + [waited]

  def _eval_replica_step(self, batch):
    probabilities = self.model(batch['image'], training=False)
    return self._sums(batch, probabilities, metrics.per_example_loss(
        batch['label'], probabilities, self.jaccard_loss_weight))

  def _eval_step(self, batch):
    return self._reduce(self.strategy.run(self._eval_replica_step, args=(batch,)))

  def evaluate(self, distributed_dataset) -> tuple:
    """Sums over one full pass of a distributed eval dataset (every example once)."""
    loss_sum, count, confusion = 0.0, 0.0, 0.0
    for batch in distributed_dataset:
      step_loss, step_count, step_confusion = self.eval_step(batch)
      loss_sum += float(step_loss)
      count += float(step_count)
      confusion = confusion + step_confusion.numpy()
    return loss_sum, count, confusion
