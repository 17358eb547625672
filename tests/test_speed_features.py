"""The speed features change speed, not results: cache, determinism, XLA, steps per call,
and the input-wait measurement."""

import time

import numpy as np
import pytest
import tensorflow as tf

from data import input_pipeline
from data import sources
from modeling import models
from tests.conftest import small_config
from training import runtime
from training import trainer as trainer_lib


def _builder(synthetic_folder, tmp_path, **overrides):
  config = small_config(data__source='folder', data__folder=synthetic_folder, **overrides)
  return config, sources.prepared_builder(config.data, str(tmp_path))


def _images(ds):
  return np.concatenate([b['image'].numpy() for b in ds])


@pytest.mark.parametrize('cache', ['memory', 'file', 'auto'])
def test_cache_modes_give_the_examples_of_no_cache(synthetic_folder, tmp_path, cache):
  config, builder = _builder(synthetic_folder, tmp_path, data__cache='none')
  expected = _images(input_pipeline.eval_dataset(builder, config.data, 8))
  cached_config, _ = _builder(synthetic_folder, tmp_path, data__cache=(
      str(tmp_path / 'cache') if cache == 'file' else cache))
  ds = input_pipeline.eval_dataset(builder, cached_config.data, 8)
  np.testing.assert_array_equal(_images(ds), expected)
  np.testing.assert_array_equal(_images(ds), expected)  # Second pass: from the cache.
  if cache == 'file':
    assert list(tmp_path.glob('cache.eval-0*'))


def test_cache_auto_says_what_it_chose():
  config = small_config(data__cache='auto', data__cache_budget_gb=0.001)
  assert input_pipeline.resolve_cache(config.data, 10)[0] == 'memory'
  mode, why = input_pipeline.resolve_cache(config.data, 1000)
  assert mode == 'none' and 'more than data.cache_budget_gb=0.001' in why


def test_deterministic_order_is_the_same_twice(synthetic_folder, tmp_path):
  config, builder = _builder(synthetic_folder, tmp_path, data__deterministic=True)
  first = [b['image'].numpy() for b in input_pipeline.train_dataset(
      builder, config.data, 8, seed=4, start_step=0).take(8)]
  second = [b['image'].numpy() for b in input_pipeline.train_dataset(
      builder, config.data, 8, seed=4, start_step=0).take(8)]
  np.testing.assert_array_equal(np.stack(first), np.stack(second))


def _trainer(jit_compile=False, optimizer='sgd'):
  config = small_config(train__optimizer=optimizer, train__learning_rate=0.05)
  strategy = tf.distribute.get_strategy()  # The default: no distribution.
  model = models.build_model(config.model, 32, 3)
  model.set_weights([np.full_like(w, 0.01) * np.sign(np.sin(np.arange(w.size))).reshape(w.shape)
                     for w in model.get_weights()])
  optimizer = trainer_lib.make_optimizer(config.train, 'float32')
  return trainer_lib.Trainer(strategy, model, optimizer,
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
  config = small_config(model__name='xception_unet', model__widths=(16, 32))
  strategy = runtime.create_strategy(config.runtime)
  with strategy.scope():
    model = models.build_model(config.model, 64, 3)
    optimizer = trainer_lib.make_optimizer(config.train, 'float32')
  trainer = trainer_lib.Trainer(strategy, model, optimizer, global_batch_size=8, num_classes=3)
  rng = np.random.default_rng(0)
  batch = {'image': tf.constant(rng.uniform(0, 255, (4, 64, 64, 3)), tf.float32),
           'label': tf.constant(rng.integers(0, 3, (4, 64, 64, 1)), tf.uint8)}
  ready = tf.data.Dataset.from_tensors(batch).repeat().prefetch(8)

  def late(b):
    return tf.py_function(lambda: time.sleep(0.25) or 0, [], tf.int32), b
  slow = ready.map(lambda b: late(b)[1])
  assert max(_wait_fractions(trainer, trainer_lib.with_ready_times(ready))) < 0.05
  assert min(_wait_fractions(trainer, trainer_lib.with_ready_times(slow))) > 0.5
  assert max(_wait_fractions(trainer, slow, calls=1)) == 0.0  # No ready times: no wait counted.


@pytest.mark.parametrize('capabilities, expected', [
    ([], 'float32'), ([(6, 1)], 'float32'), ([(7, 0), (7, 5)], 'mixed_float16'),
    ([(8, 6), (7, 5)], 'mixed_float16'), ([(8, 0), (9, 0)], 'mixed_bfloat16')])
def test_auto_precision_follows_the_oldest_gpu(capabilities, expected):
  policy, why = runtime.auto_precision(capabilities)
  assert policy == expected and why


def test_auto_precision_reads_the_devices(monkeypatch, caplog):
  gpus = ['GPU:0', 'GPU:1']
  details = {'GPU:0': {'compute_capability': (9, 0)}, 'GPU:1': {'compute_capability': (8, 0)}}
  monkeypatch.setattr(tf.config, 'list_physical_devices',
                      lambda kind=None: gpus if kind == 'GPU' else [])
  monkeypatch.setattr(tf.config.experimental, 'get_device_details', lambda gpu: details[gpu])
  caplog.set_level('INFO', logger='absl')
  assert runtime.resolve_precision('auto') == 'mixed_bfloat16'
  assert 'runtime.precision=auto: mixed_bfloat16 (every GPU has compute capability >= 8.0' \
      in caplog.text
  details['GPU:1'] = {'compute_capability': (7, 5)}
  assert runtime.resolve_precision('auto') == 'mixed_float16'
  assert runtime.resolve_precision('float32') == 'float32'
