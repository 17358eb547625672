"""Two replicas on two logical CPUs: batch split, exact evaluation, identical weights."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from data import input_pipeline
from data import sources
from modeling import models
from tests.conftest import data_spec, model_config, small_config
from tasks import losses
from tasks import metrics
from training import runtime
from training import optimizers
from training import steps as steps_lib


def _setup(synthetic_folder, tmp_path, precision='float32', **overrides):
  """Training reads all 48 trainval examples and evaluation the 13 test ones."""
  config = small_config(data__source='folder', data__folder=synthetic_folder,
                        data__validation_fraction=0.0,
                        **{'runtime__cpu_devices': 2, **overrides})  # Tests of replicas.
  strategy = runtime.create_strategy(config.runtime)
  builder = sources.prepared_builder(data_spec(config), str(tmp_path))
  with strategy.scope():
    model = models.build_model(config.model, config.data.image_size, 3, precision)
    optimizer = optimizers.make_optimizer(config.train, precision)
    optimizer.build(model.trainable_variables)
  trainer = steps_lib.Steps(strategy, model, optimizer,
                            global_batch_size=config.train.global_batch_size, num_classes=3)
  return config, strategy, builder, trainer


def test_two_replicas_split_the_global_batch(synthetic_folder, tmp_path):
  config, strategy, builder, _ = _setup(synthetic_folder, tmp_path)
  assert strategy.num_replicas_in_sync == 2
  pipeline = input_pipeline.pipeline(data_spec(config))
  dist = strategy.distribute_datasets_from_function(
      lambda ctx: input_pipeline.train_dataset(builder, pipeline, 8, seed=1, start_step=0,
                                               input_context=ctx))
  batch = next(iter(dist))
  shapes = [t.shape for t in strategy.experimental_local_results(batch['image'])]
  assert shapes == [(4, 32, 32, 3), (4, 32, 32, 3)]


@pytest.mark.parametrize('global_batch', [8, 4, 2])
def test_every_validation_example_counted_once(synthetic_folder, tmp_path, global_batch):
  """13 examples on 2 replicas: partial last batches, a replica with nothing left, no drops."""
  config, strategy, builder, trainer = _setup(synthetic_folder, tmp_path)
  pipeline = input_pipeline.pipeline(data_spec(config))
  dist = strategy.distribute_datasets_from_function(
      lambda ctx: input_pipeline.eval_dataset(builder, pipeline, global_batch, ctx))
  loss_sum, count, confusion = trainer.evaluate(dist)
  assert count == 13
  assert confusion.sum() == 13 * 32 * 32
  # The same sums from one plain pass over the split, without the strategy.
  everything = next(iter(input_pipeline.eval_dataset(builder, pipeline, 13)))
  assert everything['weight'].numpy().tolist() == [1.0] * 13
  probabilities = trainer.model(everything['image'], training=False)
  expected_loss = float(tf.reduce_sum(losses.per_example_loss(everything['label'],
                                                               probabilities)))
  np.testing.assert_allclose(loss_sum, expected_loss, rtol=1e-4)
  expected_confusion = metrics.confusion_matrix(everything['label'], probabilities, 3)
  np.testing.assert_array_equal(confusion, expected_confusion.numpy())


def test_weights_identical_across_replicas_and_equal_to_one_device(synthetic_folder, tmp_path):
  """Loss over the GLOBAL batch: 2 replicas take the same step as 1 device on the whole batch."""
  config, strategy, builder, trainer = _setup(synthetic_folder, tmp_path,
                                              train__optimizer='sgd', train__learning_rate=0.1)
  initial = [v.numpy() for v in trainer.model.trainable_variables]
  pipeline = input_pipeline.pipeline(data_spec(config))
  batch = next(iter(input_pipeline.train_dataset(builder, pipeline, 8, seed=3, start_step=0)))
  halves = [{k: v[i * 4:(i + 1) * 4] for k, v in batch.items()} for i in range(2)]
  dist = strategy.distribute_datasets_from_function(
      lambda ctx: tf.data.Dataset.from_tensors(halves[0]).concatenate(
          tf.data.Dataset.from_tensors(halves[1])))
  trainer.train_steps(iter(dist), tf.constant(1))
  for variable in trainer.model.trainable_variables:
    copies = strategy.experimental_local_results(variable.value)
    np.testing.assert_array_equal(copies[0].numpy(), copies[1].numpy())

  single = tf.distribute.OneDeviceStrategy('/cpu:0')
  model = models.build_model(config.model, 32, 3)
  for target, value in zip(model.trainable_variables, initial):
    target.assign(value)
  optimizer = optimizers.make_optimizer(config.train, 'float32')
  one = steps_lib.Steps(single, model, optimizer, global_batch_size=8, num_classes=3)
  one.train_steps(iter(single.distribute_datasets_from_function(
      lambda ctx: tf.data.Dataset.from_tensors(batch))), tf.constant(1))
  moved = 0.0
  for start, mirrored, plain in zip(initial, trainer.model.trainable_variables,
                                    model.trainable_variables):
    step_two_replicas, step_one_device = mirrored.numpy() - start, plain.numpy() - start
    # A replica-count bug would halve or double the step; summation order moves it by ~1e-6.
    assert np.linalg.norm(step_two_replicas - step_one_device) <= (
        1e-3 * np.linalg.norm(step_one_device) + 1e-5)
    moved += np.linalg.norm(step_one_device)
  assert moved > 1e-3


def test_each_replica_reads_its_own_examples_once_per_epoch(synthetic_folder, tmp_path):
  """2 workers of 1 replica or 1 worker of 2: disjoint replica slices that cover the split."""
  _, _, builder, _ = _setup(synthetic_folder, tmp_path)
  names = [sorted(ex['file_name'].numpy() for ex in
                  sources.read_encoded(builder, 'train', shard=r, num_shards=2))
           for r in range(2)]
  assert len(names[0]) + len(names[1]) == 48
  assert not set(names[0]) & set(names[1])
  everything = sorted(ex['file_name'].numpy() for ex in sources.read_encoded(builder, 'train'))
  assert sorted(names[0] + names[1]) == everything


def test_replica_batches_do_not_depend_on_how_replicas_spread_over_workers(synthetic_folder,
                                                                             tmp_path):
  config, _, builder, _ = _setup(synthetic_folder, tmp_path, data__deterministic=True)
  one_worker = input_pipeline.train_dataset(
      builder, input_pipeline.pipeline(data_spec(config)), 8, seed=5, start_step=2,
      input_context=tf.distribute.InputContext(1, 0, 2))
  first_rounds = [b['image'].numpy() for b in one_worker.take(4)]
  for worker in range(2):
    own = input_pipeline.train_dataset(builder, input_pipeline.pipeline(data_spec(config)), 8,
                                       seed=5, start_step=2,
                                       input_context=tf.distribute.InputContext(2, worker, 2))
    for round_index, got in enumerate(b['image'].numpy() for b in own.take(2)):
      np.testing.assert_array_equal(got, first_rounds[2 * round_index + worker])


def test_mixed_float16_policy(synthetic_folder, tmp_path):
  config, _, _, trainer = _setup(synthetic_folder, tmp_path, precision='mixed_float16')
  model = trainer.model
  conv = model.get_layer('encoder_conv1')
  assert conv.compute_dtype == 'float16' and conv.variable_dtype == 'float32'
  assert all(v.dtype == 'float32' for v in model.trainable_variables)
  assert model.get_layer('probabilities').compute_dtype == 'float32'
  assert model(tf.zeros([1, 32, 32, 3])).dtype == tf.float32
  import keras
  assert isinstance(trainer.optimizer, keras.optimizers.LossScaleOptimizer)
  scale = float(trainer.optimizer.dynamic_scale.numpy())
  assert scale > 1
  assert float(trainer.optimizer.scale_loss(tf.constant(2.0))) == 2.0 * scale


def _unet_config(sync: bool):
  # Not widths of 8: oneDNN crashes (double free) on 8-channel separable convs at batch 1.
  return model_config('xception_unet', widths=(16, 32, 64, 128), sync_batch_norm=sync)


def _after_one_step(strategy, sync: bool, batch, initial):
  """(Moving means and variances of every batch norm, the step's change of every trainable
  weight) after one SGD step on `batch` (2 pictures), split over the strategy's replicas, from
  the weights `initial`."""
  with strategy.scope():
    model = models.build_model(_unet_config(sync), 32, 3)
    optimizer = optimizers.make_optimizer(small_config(train__optimizer='sgd').train, 'float32')
    optimizer.build(model.trainable_variables)
  for target, value in zip(model.variables, initial):
    target.assign(value)
  trainer = steps_lib.Steps(strategy, model, optimizer, global_batch_size=2, num_classes=3)
  per_replica = 2 // strategy.num_replicas_in_sync
  parts = [{k: v[i * per_replica:(i + 1) * per_replica] for k, v in batch.items()}
           for i in range(strategy.num_replicas_in_sync)]
  stream = tf.data.Dataset.from_tensors(parts[0])
  for part in parts[1:]:
    stream = stream.concatenate(tf.data.Dataset.from_tensors(part))
  trainer.train_steps(iter(strategy.distribute_datasets_from_function(lambda ctx: stream)),
                      tf.constant(1))
  statistics = [v.numpy() for layer in model.layers
                if isinstance(layer, keras.layers.BatchNormalization)
                for v in (layer.moving_mean, layer.moving_variance)]
  return statistics, [v.numpy() - value for v, value in zip(model.variables, initial)
                      if v.trainable]


@pytest.mark.slow
def test_sync_batch_norm_two_replicas_of_one_equal_one_replica_of_two():
  rng = np.random.default_rng(5)
  batch = {'image': tf.constant(rng.uniform(0, 255, (2, 32, 32, 3)), tf.float32),
           'label': tf.constant(rng.integers(0, 3, (2, 32, 32, 1)), tf.uint8)}
  two = runtime.create_strategy(small_config(runtime__cpu_devices=2).runtime)
  assert two.num_replicas_in_sync == 2
  one = tf.distribute.OneDeviceStrategy('/cpu:0')
  keras.utils.set_random_seed(0)
  initial = [v.numpy() for v in models.build_model(_unet_config(False), 32, 3).variables]
  synced, synced_steps = _after_one_step(two, True, batch, initial)
  reference, reference_steps = _after_one_step(one, True, batch, initial)
  for a, b in zip(synced, reference):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
  # The gradient through the global statistics sums every replica's share: the same step.
  for a, b in zip(synced_steps, reference_steps):
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3 * np.abs(b).max())
  local, local_steps = _after_one_step(two, False, batch, initial)
  assert max(np.abs(a - b).max() for a, b in zip(local, reference)) > 1e-3  # Per-replica stats.
  assert max(np.abs(a - b).max() / np.abs(b).max() for a, b in zip(local_steps, reference_steps)
             if np.abs(b).max() > 0) > 1e-2
