"""The step functions (training/steps.py): accumulation, the moving average, clipping, class
weights, XLA, several steps a call and the input-wait measurement change what they should and
nothing else."""

import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from modeling import models
from tests.conftest import model_config, small_config
from records import checkpoints
from tasks import losses
from training import optimizers
from training import runtime
from training import steps as steps_lib


def _sgd_trainer(strategy, global_batch: int, **options) -> steps_lib.Steps:
  """The book model at 32 px (seeded weights) with SGD at 0.1, and Trainer `options`."""
  config = small_config(train__optimizer='sgd', train__learning_rate=0.1)
  keras.utils.set_random_seed(0)
  with strategy.scope():
    model = models.build_model(config.model, 32, 3)
    optimizer = optimizers.make_optimizer(config.train, 'float32')
    optimizer.build(model.trainable_variables)
  return steps_lib.Steps(strategy, model, optimizer,
                         global_batch_size=global_batch, num_classes=3, **options)


def _weights_after_one_update(strategy, accumulation: int, batches,
                              loss: losses.LossSpec = losses.LossSpec()):
  """The book model's weights after one SGD update from `batches` (each split over replicas)."""
  size = int(batches[0]['image'].shape[0])
  trainer = _sgd_trainer(strategy, size, accumulation_steps=accumulation, loss=loss)
  model = trainer.model
  per_replica = size // strategy.num_replicas_in_sync
  stream = None
  for batch in batches:
    for r in range(strategy.num_replicas_in_sync):
      part = tf.data.Dataset.from_tensors(
          {k: v[r * per_replica:(r + 1) * per_replica] for k, v in batch.items()})
      stream = part if stream is None else stream.concatenate(part)
  sums = trainer.train_steps(iter(strategy.distribute_datasets_from_function(
      lambda ctx: stream)), tf.constant(1))
  assert float(sums[1]) == sum(int(b['image'].shape[0]) for b in batches)  # Every example.
  return [v.numpy() for v in model.trainable_variables]


# Every loss term at once, with OHEM and label smoothing: all computed per example.
EVERY_TERM = losses.LossSpec(terms=(('focal', 1.0), ('dice', 0.5), ('tversky', 0.5),
                                    ('lovasz', 0.5)), top_k_fraction=0.5, label_smoothing=0.1)


@pytest.mark.parametrize('replicas, loss', [(1, losses.LossSpec()), (2, losses.LossSpec()),
                                            (2, EVERY_TERM)])
def test_two_accumulated_batches_of_4_update_like_one_batch_of_8(replicas, loss):
  strategy = (runtime.create_strategy(small_config(runtime__cpu_devices=2).runtime) if replicas == 2
              else tf.distribute.OneDeviceStrategy('/cpu:0'))
  rng = np.random.default_rng(0)
  batch = {'image': tf.constant(rng.uniform(0, 255, (8, 32, 32, 3)), tf.float32),
           'label': tf.constant(rng.integers(0, 3, (8, 32, 32, 1)), tf.uint8)}
  whole = _weights_after_one_update(strategy, 1, [batch], loss)
  halves = [{k: v[:4] for k, v in batch.items()}, {k: v[4:] for k, v in batch.items()}]
  accumulated = _weights_after_one_update(strategy, 2, halves, loss)
  if replicas == 2:  # And the same as one device.
    one_device = _weights_after_one_update(tf.distribute.OneDeviceStrategy('/cpu:0'), 1,
                                           [batch], loss)
    for a, b in zip(whole, one_device):
      np.testing.assert_allclose(a, b, atol=1e-6)
  keras.utils.set_random_seed(0)
  initial = models.build_model(small_config().model, 32, 3).trainable_variables
  for a, b in zip(whole, accumulated):
    np.testing.assert_allclose(a, b, atol=1e-6)
  assert max(np.abs(a - s.numpy()).max() for a, s in zip(whole, initial)) > 1e-4  # It moved.
  only_first = _weights_after_one_update(strategy, 1, halves[:1], loss)
  assert max(np.abs(a - b).max() for a, b in zip(whole, only_first)) > 1e-5


def _two_updates(decay: float, clipnorm: float = 0.0):
  """(weights after each of two SGD updates, EMA after each, grad norms) on 2 replicas."""
  strategy = runtime.create_strategy(small_config(runtime__cpu_devices=2).runtime)
  trainer = _sgd_trainer(strategy, 4, global_clipnorm=clipnorm, ema_decay=decay)
  model = trainer.model
  rng = np.random.default_rng(1)
  batch = {'image': tf.constant(rng.uniform(0, 255, (2, 32, 32, 3)), tf.float32),
           'label': tf.constant(rng.integers(0, 3, (2, 32, 32, 1)), tf.uint8)}
  data = iter(strategy.distribute_datasets_from_function(
      lambda ctx: tf.data.Dataset.from_tensors(batch).repeat()))
  initial = [v.numpy() for v in model.trainable_variables]
  weights, averages, norms = [], [], []
  for _ in range(2):
    norms.append(float(trainer.train_steps(data, tf.constant(1)).grad_norm_sum))
    weights.append([v.numpy() for v in model.trainable_variables])
    averages.append([v.numpy() for v in trainer.ema])
  return initial, weights, averages, norms, trainer


def test_ema_follows_the_weights_as_computed_by_hand():
  _, weights, averages, _, _ = _two_updates(decay=0.0)
  for w, a in zip(weights[-1], averages[-1]):
    np.testing.assert_allclose(a, w, atol=1e-7)
  initial, weights, averages, _, trainer = _two_updates(decay=0.9)
  d1, d2 = 2 / 11, 3 / 12  # Warmed up: min(0.9, (1 + n) / (10 + n)) after update n.
  for k, (start, w1, w2) in enumerate(zip(initial, weights[0], weights[1])):
    first = d1 * start + (1 - d1) * w1
    np.testing.assert_allclose(averages[0][k], first, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(averages[1][k], d2 * first + (1 - d2) * w2, rtol=1e-5, atol=1e-7)
  assert max(np.abs(a - w).max() for a, w in zip(averages[1], weights[1])) > 1e-5  # It lags.
  with trainer.ema_weights():
    for v, a in zip(trainer.model.trainable_variables, averages[1]):
      np.testing.assert_allclose(v.numpy(), a)
  for v, w in zip(trainer.model.trainable_variables, weights[1]):
    np.testing.assert_allclose(v.numpy(), w)  # The trained weights are back.


def test_ema_decay_warms_up_to_the_configured_decay():
  """A short run averages its recent weights: 0.999 acts as about 0.99 after 900 updates and
  reaches 0.999 only after 8,991."""
  decays = [float(steps_lib.ema_decay_at(0.999, n)) for n in (0, 10, 900, 9000, 10**6)]
  np.testing.assert_allclose(decays, [0.1, 11 / 20, 901 / 910, 0.999, 0.999], rtol=1e-6)
  assert float(steps_lib.ema_decay_at(0.5, 100)) == 0.5


def test_global_clipnorm_bounds_the_update_and_reports_the_norm_before():
  initial, free, _, norms, _ = _two_updates(decay=0.0)
  _, clipped, _, clipped_norms, _ = _two_updates(decay=0.0, clipnorm=1e-3)
  assert norms == [0.0, 0.0]  # Not computed without clipping.
  assert clipped_norms[0] > 1e-3  # The norm before clipping.
  step = np.sqrt(sum(((c - s) ** 2).sum() for c, s in zip(clipped[0], initial)))
  np.testing.assert_allclose(step, 0.1 * 1e-3, rtol=1e-3)  # learning rate x clipnorm.
  free_step = np.sqrt(sum(((f - s) ** 2).sum() for f, s in zip(free[0], initial)))
  np.testing.assert_allclose(free_step, 0.1 * clipped_norms[0], rtol=1e-3)


def test_ema_is_checkpointed_and_restored(tmp_path):
  _, _, averages, _, trainer = _two_updates(decay=0.9)
  state = checkpoints.TrainState(trainer.model, trainer.optimizer, str(tmp_path), 2,
                                 ema=trainer.ema)
  state.step.assign(2)
  state.save()
  for average in trainer.ema:
    average.assign(tf.zeros_like(average))
  assert state.restore_latest() == 2
  for v, a in zip(trainer.ema, averages[1]):
    np.testing.assert_allclose(v.numpy(), a)


def test_class_weights_scale_each_examples_share_of_the_update():
  """Every example of class 1 with weight 3: the SGD update is 3 times the unweighted one, on
  2 replicas; with weight 1 it is the same update."""
  strategy = runtime.create_strategy(small_config(runtime__cpu_devices=2).runtime)
  rng = np.random.default_rng(5)
  batch = {'image': tf.constant(rng.uniform(0, 255, (4, 32, 32, 3)), tf.float32),
           'label': tf.constant([1, 1, 1, 1], tf.int32)}

  def update(class_weights):
    keras.utils.set_random_seed(0)
    with strategy.scope():
      model = models.build_model(model_config('residual_convnet'), 32, 2)
      optimizer = keras.optimizers.SGD(learning_rate=0.1)
      optimizer.build(model.trainable_variables)
    trainer = steps_lib.Steps(strategy, model, optimizer,
                              global_batch_size=4, num_classes=2, class_weights=class_weights)
    start = [v.numpy() for v in model.trainable_variables]
    trainer.train_steps(iter(strategy.experimental_distribute_dataset(
        tf.data.Dataset.from_tensors(batch).repeat().unbatch().batch(4))), tf.constant(1))
    return np.concatenate([(v.numpy() - s).ravel()
                           for v, s in zip(model.trainable_variables, start)])

  plain = update(None)
  assert np.abs(plain).max() > 1e-6
  np.testing.assert_allclose(update((0.5, 1.0)), plain, rtol=1e-4, atol=1e-8)
  np.testing.assert_allclose(update((1.0, 3.0)), 3 * plain, rtol=1e-3, atol=1e-7)


def _trainer(jit_compile=False, optimizer='sgd'):
  config = small_config(train__optimizer=optimizer, train__learning_rate=0.05)
  strategy = tf.distribute.get_strategy()  # The default: no distribution.
  model = models.build_model(config.model, 32, 3)
  model.set_weights([np.full_like(w, 0.01) * np.sign(np.sin(np.arange(w.size))).reshape(w.shape)
                     for w in model.get_weights()])
  optimizer = optimizers.make_optimizer(config.train, 'float32')
  return steps_lib.Steps(strategy, model, optimizer,
                         global_batch_size=8, num_classes=3, jit_compile=jit_compile)


def _batches(count=3):
  rng = np.random.default_rng(0)
  return [{'image': tf.constant(rng.uniform(0, 255, (8, 32, 32, 3)), tf.float32),
           'label': tf.constant(rng.integers(0, 3, (8, 32, 32, 1)), tf.uint8)}
          for _ in range(count)]


def _iterator(batches):
  return iter(tf.data.Dataset.from_tensor_slices(
      {k: tf.stack([b[k] for b in batches]) for k in batches[0]}))


@pytest.mark.slow
def test_jit_compile_gives_the_loss_of_the_plain_step():
  plain, compiled = _trainer(), _trainer(jit_compile=True)
  batches = _batches()
  plain_loss = [float(plain.train_steps(_iterator([b]), tf.constant(1))[0]) for b in batches]
  xla_loss = [float(compiled.train_steps(_iterator([b]), tf.constant(1))[0]) for b in batches]
  np.testing.assert_allclose(xla_loss, plain_loss, rtol=1e-4)
  assert runtime.resolve_jit_compile('off') is False and runtime.resolve_jit_compile('on')


@pytest.mark.slow
def test_steps_per_call_equals_single_steps():
  batched, single = _trainer(optimizer='adam'), _trainer(optimizer='adam')
  batches = _batches()
  batched.train_steps(_iterator(batches), tf.constant(3))
  iterator = _iterator(batches)
  for _ in batches:
    single.train_steps(iterator, tf.constant(1))
  for a, b in zip(batched.model.get_weights(), single.model.get_weights()):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def _wait_fractions(trainer, data: tf.data.Dataset, calls: int = 2, steps: int = 3) -> list:
  """Input-wait fractions of `calls` timed calls of `steps` steps, after a traced one."""
  iterator = iter(trainer.strategy.distribute_datasets_from_function(lambda _: data))
  trainer.train_steps(iterator, tf.constant(1))
  fractions = []
  for _ in range(calls):
    start = time.perf_counter()
    waited = trainer.train_steps(iterator, tf.constant(steps)).waited_s
    fractions.append(float(waited) / (time.perf_counter() - start))
  return fractions


@pytest.mark.slow
def test_input_wait_counts_only_time_the_step_waited_for_a_batch():
  """2 replicas of a model that keeps both cores busy: with the input ready in memory the
  step waits for nothing (a timestamp after get_next read 0.10-0.66 here); with a batch every
  0.25 s it waits for most of each call."""
  config = small_config(model__name='xception_unet', model__widths=(16, 32),
                        runtime__cpu_devices=2)
  strategy = runtime.create_strategy(config.runtime)
  with strategy.scope():
    model = models.build_model(config.model, 64, 3)
    optimizer = optimizers.make_optimizer(config.train, 'float32')
  trainer = steps_lib.Steps(strategy, model, optimizer, global_batch_size=8, num_classes=3)
  rng = np.random.default_rng(0)
  batch = {'image': tf.constant(rng.uniform(0, 255, (4, 64, 64, 3)), tf.float32),
           'label': tf.constant(rng.integers(0, 3, (4, 64, 64, 1)), tf.uint8)}
  ready = tf.data.Dataset.from_tensors(batch).repeat().prefetch(8)

  def late(b):
    return tf.py_function(lambda: time.sleep(0.25) or 0, [], tf.int32), b
  slow = ready.map(lambda b: late(b)[1])
  assert max(_wait_fractions(trainer, steps_lib.with_ready_times(ready))) < 0.05
  assert min(_wait_fractions(trainer, steps_lib.with_ready_times(slow))) > 0.5
  assert max(_wait_fractions(trainer, slow, calls=1)) == 0.0  # No ready times: no wait counted.
