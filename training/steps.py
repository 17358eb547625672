"""The distributed train and eval steps: strategy.run inside tf.function, several steps a call,
with gradient accumulation, clipping, class weights and the weights' moving average.

Each replica returns sums (loss, examples, confusion matrix, gradient norm) that are reduced
across replicas and workers with SUM, so the metrics are exact whatever the replica count or
batch split; the optimizer itself is made in training/optimizers.py.
"""

import contextlib
from typing import NamedTuple

import keras
import tensorflow as tf

from data.input_pipeline import as_written
from modeling import sliding
import tasks
from tasks import losses


# The time (tf.timestamp seconds) a training batch left the input pipeline.
READY_AT = 'ready_at'


def with_ready_times(dataset: tf.data.Dataset) -> tf.data.Dataset:
  """Each batch with the time it left the pipeline (`READY_AT`). The step compares it with
  the time it asked for the batch: a timestamp taken in the step after `get_next` would also
  count the time the step's executor was busy with other work before running it (measured:
  a third of every step on 2 CPU replicas with the input ready)."""
  @as_written
  def stamp(batch):
    with tf.control_dependencies(tf.nest.flatten(batch)):
      return {**batch, READY_AT: tf.timestamp()}
  return dataset.map(stamp)


def model_pictures(batch: dict) -> tf.Tensor:
  """The batch's pictures as float32, cast where the step runs: the pipeline sends uint8,
  a quarter of the bytes, and the host does not spend a core converting them."""
  return tf.cast(batch['image'], tf.float32)


class Slide(NamedTuple):
  """How evaluation slides a window over whole pictures (modeling/sliding.py)."""
  window: tuple  # (height, width)
  stride: tuple  # (down, across)
  windows_per_call: int


class StepSums(NamedTuple):
  """What one train_steps call returns, summed over its steps and reduced over replicas."""
  loss_sum: tf.Tensor
  count: tf.Tensor  # Examples.
  confusion: tf.Tensor  # The task's counts of labels against predictions (counts_shape).
  waited_s: tf.Tensor  # Seconds spent waiting for input.
  grad_norm_sum: tf.Tensor  # Global gradient norms before clipping (0 without clipping).


def ema_decay_at(decay: float, updates) -> tf.Tensor:
  """The moving average's decay after `updates` optimizer updates, warmed up as
  tf.train.ExponentialMovingAverage(num_updates=...) does: min(decay, (1 + n) / (10 + n)), so
  a short run averages its recent weights instead of still carrying the initial ones."""
  updates = tf.cast(updates, tf.float32)
  return tf.minimum(tf.constant(decay, tf.float32), (1.0 + updates) / (10.0 + updates))


class Steps:
  """Owns the compiled step functions for one model, optimizer and strategy."""

  def __init__(self, strategy: tf.distribute.Strategy, model: keras.Model,
               optimizer: keras.optimizers.Optimizer, *, global_batch_size: int,
               num_classes: int, task: tasks.Task = tasks.SEGMENTATION,
               jit_compile: bool = False,
               loss: losses.LossSpec = losses.LossSpec(),
               accumulation_steps: int = 1, global_clipnorm: float = 0.0,
               ema_decay: float = 0.0, class_weights: tuple | None = None,
               pixel_class_weights: tuple | None = None, slide: 'Slide | None' = None):
    self.strategy = strategy
    self.accumulation_steps = accumulation_steps  # Batches per optimizer update.
    self.global_clipnorm = global_clipnorm  # 0: no clipping.
    self.ema_decay = ema_decay
    # Every weight the optimizer may train, in frozen phases or not (see `freeze`).
    self.variables = list(model.trainable_variables)
    # An exponential moving average of those weights (ema_decay > 0), checkpointed with them;
    # evaluation and the exported model read it (see `ema_weights`). Batch-norm statistics
    # stay the trained weights': averaging them too evaluated far worse on the sample.
    with strategy.scope():
      self.ema = [tf.Variable(v, trainable=False, name=f'ema_{i}')
                  for i, v in enumerate(self.variables)] if ema_decay else []
    self.frozen = ()  # Layers that do not train now.
    self.loss = loss  # train.loss, parsed.
    # Classification: each training example's loss times its class's weight (None: all 1).
    self.class_weights = tf.constant(class_weights, tf.float32) if class_weights else None
    # Segmentation: each pixel's loss times its class's weight (train.class_weights).
    self.pixel_class_weights = pixel_class_weights
    self.model = model
    self.optimizer = optimizer
    self.global_batch_size = global_batch_size
    self.num_classes = num_classes
    self.task = task  # How labels are lost and counted.
    self.slide = slide  # Evaluation on whole pictures, window by window (None: one pass).
    if not optimizer.built:  # Slots must exist before the step function is traced.
      with strategy.scope():
        optimizer.build(self.variables)
    self._jit_compile = jit_compile
    self._trace_train_steps()
    self.eval_step = tf.function(self._eval_step, reduce_retracing=True, autograph=False)

  def _trace_train_steps(self):
    """Step functions for the weights that train now. XLA compiles the forward and backward
    pass; the optimizer's cross-replica update stays outside, where the all-reduce lives.
    Traced as written (no autograph): see data.input_pipeline.as_written."""
    self._gradients = tf.function(self._loss_and_gradients, jit_compile=True,
                                  autograph=False) \
        if self._jit_compile else self._loss_and_gradients
    self._train_steps_fn = tf.function(self._train_steps, autograph=False)

  def freeze(self, layers: list) -> None:
    """From now on `layers` do not train (their batch norm runs in inference mode) and every
    other layer of `self.variables` does; changing the set retraces the step function."""
    layers = tuple(layers)
    if layers == self.frozen:
      return
    for layer in self.frozen:
      layer.trainable = True
    for layer in layers:
      layer.trainable = False
    self.frozen = layers
    self._trace_train_steps()

  @contextlib.contextmanager
  def ema_weights(self):
    """Within: the model's trainable weights are their moving average (no change without
    train.ema_decay); after: the trained weights again."""
    if not self.ema:
      yield
      return
    trained = [v.numpy() for v in self.variables]
    for weight, average in zip(self.variables, self.ema):
      weight.assign(average)
    try:
      yield
    finally:
      for weight, value in zip(self.variables, trained):
        weight.assign(value)

  def _sums(self, batch, probabilities, per_example):
    """(loss sum, example count, confusion matrix), with eval padding weighted out."""
    weights = batch.get('weight', tf.ones_like(per_example))
    return (tf.reduce_sum(per_example * weights), tf.reduce_sum(weights),
            self.task.counts(batch['label'], probabilities, self.num_classes, weights))

  def _loss_and_gradients(self, batch):
    with tf.GradientTape() as tape:
      probabilities = self.model(model_pictures(batch), training=True)
      per_example = self.task.per_example_loss(batch['label'], probabilities, self.loss,
                                               self.pixel_class_weights)
      weighted = per_example if self.class_weights is None else per_example * tf.gather(
          self.class_weights, tf.reshape(tf.cast(batch['label'], tf.int32), [-1]))
      # Divide by the GLOBAL batch: gradients are summed across replicas by the optimizer.
      loss = tf.nn.compute_average_loss(weighted, global_batch_size=self.global_batch_size)
      if self.model.losses:
        loss += tf.nn.scale_regularization_loss(tf.add_n(self.model.losses))
      scaled_loss = self.optimizer.scale_loss(loss)
    gradients = tape.gradient(scaled_loss, self.model.trainable_variables)
    return gradients, self._sums(batch, probabilities, per_example)

  def _train_replica_step(self, batches):
    """One optimizer update from the mean gradient of `batches` (accumulation_steps of them);
    each loss is already divided by the global batch, so the mean is the gradient of the mean
    loss over every example of every batch."""
    gradients, sums = self._gradients(batches[0])
    for batch in batches[1:]:
      more_gradients, more_sums = self._gradients(batch)
      gradients = [g + h for g, h in zip(gradients, more_gradients)]
      sums = [a + b for a, b in zip(sums, more_sums)]
    if len(batches) > 1:
      gradients = [g / len(batches) for g in gradients]
    # Nothing differentiates the gradients; stopped, the all-reduces below (clipping's, the
    # optimizer's) do not walk both replicas' graphs back (blocks.all_reduce_sum says why).
    gradients = [g if g is None else tf.stop_gradient(g) for g in gradients]
    norm = tf.zeros([])
    if self.global_clipnorm:
      gradients, norm = self._clipped(gradients)
    self.optimizer.apply(gradients, self.model.trainable_variables)
    return list(sums) + [norm / tf.cast(
        tf.distribute.get_replica_context().num_replicas_in_sync, tf.float32)]

  def _clipped(self, gradients):
    """(This replica's share of the global gradient clipped to global_clipnorm, the global
    gradient's norm before clipping). Each replica holds a part of the global gradient, so the
    norm needs their sum first; the optimizer then sums the replicas' shares again."""
    context = tf.distribute.get_replica_context()
    total = context.all_reduce(tf.distribute.ReduceOp.SUM, gradients)
    norm = tf.linalg.global_norm(total)
    if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
      norm = norm / tf.cast(self.optimizer.dynamic_scale, tf.float32)  # The loss is scaled.
    factor = tf.minimum(1.0, self.global_clipnorm / tf.maximum(norm, 1e-12))
    share = factor / tf.cast(context.num_replicas_in_sync, tf.float32)
    return [g * tf.cast(share, g.dtype) for g in total], norm

  def _reduce(self, per_replica):
    return [self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for v in per_replica]

  def train_steps(self, iterator, num_steps: tf.Tensor) -> 'StepSums':
    """Runs `num_steps` training steps (optimizer updates, of accumulation_steps batches each)
    in one call. A step waited for input when its batch became ready (`READY_AT`, see
    `with_ready_times`) after the previous step had finished; batches without that time
    count no wait."""
    return StepSums(*self._train_steps_fn(iterator, num_steps))

  def _train_steps(self, iterator, num_steps: tf.Tensor):
    totals = [tf.zeros([]), tf.zeros([]), tf.zeros(self.task.counts_shape(self.num_classes)),
              tf.zeros([])]
    _, totals, waited, _ = tf.while_loop(
        lambda step, *_: step < num_steps,
        lambda step, totals, waited, updates: (
            step + 1, *self._train_step(iterator, totals, waited, updates)),
        (tf.zeros_like(num_steps), totals, tf.zeros([], tf.float64), tf.zeros([], tf.int64)))
    return totals[:3] + [waited, totals[3]]

  def _train_step(self, iterator, totals: list, waited: tf.Tensor, updates: tf.Tensor):
    """One optimizer update inside `_train_steps`' loop: (totals, waited, updates) after it."""
    # When the previous step's sums and weight updates are done: the step asks for input.
    with tf.control_dependencies(totals + [waited, updates]):
      asked = tf.timestamp()
    batches, ready = [], asked
    for _ in range(self.accumulation_steps):
      with tf.control_dependencies([asked]):
        batch = dict(next(iterator))
      if READY_AT in batch:
        for replica_ready in self.strategy.experimental_local_results(batch.pop(READY_AT)):
          ready = tf.maximum(ready, replica_ready)
      batches.append(batch)
    sums = self._reduce(self.strategy.run(self._train_replica_step, args=(tuple(batches),)))
    totals = [t + s for t, s in zip(totals, sums)]
    with tf.control_dependencies(totals):
      decay = ema_decay_at(self.ema_decay, self.optimizer.iterations)
      for average, weight in zip(self.ema, self.variables):
        average.assign(decay * average + (1.0 - decay) * weight)
    return totals, waited + (ready - asked), tf.convert_to_tensor(self.optimizer.iterations)

  def _eval_replica_step(self, batch):
    answer = lambda pictures: self.model(pictures, training=False)
    probabilities = answer(model_pictures(batch)) if self.slide is None else sliding.slide(
        answer, model_pictures(batch), self.slide.window, self.slide.stride, self.num_classes,
        self.slide.windows_per_call)
    return self._sums(batch, probabilities, self.task.per_example_loss(
        batch['label'], probabilities, self.loss))

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
