"""The speed features change speed, not results: the cache and determinism (the step
functions' XLA, steps per call and input wait are tested in test_trainer.py), and the
automatic precision."""

import numpy as np
import pytest
import tensorflow as tf

from data import input_pipeline
from data import sources
from tests.conftest import data_spec, small_config
from training import runtime


def _builder(synthetic_folder, tmp_path, **overrides):
  config = small_config(data__source='folder', data__folder=synthetic_folder, **overrides)
  return config, sources.prepared_builder(data_spec(config), str(tmp_path))


def _images(ds):
  return np.concatenate([b['image'].numpy() for b in ds])


@pytest.mark.parametrize('cache', ['memory', 'file', 'auto'])
def test_cache_modes_give_the_examples_of_no_cache(synthetic_folder, tmp_path, cache):
  config, builder = _builder(synthetic_folder, tmp_path, data__cache='none')
  expected = _images(input_pipeline.eval_dataset(
      builder, input_pipeline.pipeline(data_spec(config)), 8))
  cached_config, _ = _builder(synthetic_folder, tmp_path, data__cache=(
      str(tmp_path / 'cache') if cache == 'file' else cache))
  ds = input_pipeline.eval_dataset(builder, input_pipeline.pipeline(data_spec(cached_config)), 8)
  np.testing.assert_array_equal(_images(ds), expected)
  np.testing.assert_array_equal(_images(ds), expected)  # Second pass: from the cache.
  if cache == 'file':
    assert list(tmp_path.glob('cache.eval-0*'))


def test_one_cache_prefix_shared_by_other_sizes_and_shardings_serves_each_its_own_examples(
    synthetic_folder, tmp_path):
  cache = str(tmp_path / 'shared')
  two_pipelines = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=0,
                                             num_replicas_in_sync=2)
  config, builder = _builder(synthetic_folder, tmp_path, data__cache=cache)
  half = _images(input_pipeline.eval_dataset(builder, input_pipeline.pipeline(data_spec(config)), 8,
                                             two_pipelines))
  for size in (32, 48):  # The first reuses the prefix with one pipeline, the second resizes.
    plain, _ = _builder(synthetic_folder, tmp_path, data__cache='none', data__image_size=size)
    cached, _ = _builder(synthetic_folder, tmp_path, data__cache=cache, data__image_size=size)
    expected = _images(input_pipeline.eval_dataset(
        builder, input_pipeline.pipeline(data_spec(plain)), 8))
    assert len(expected) > len(half)
    np.testing.assert_array_equal(
        _images(input_pipeline.eval_dataset(
            builder, input_pipeline.pipeline(data_spec(cached)), 8)),
        expected)
  config.data.augment.flip = False  # Each example is one picture then; the key ignores it.
  # Batches in stream order: without it a parallel map may hand out a batch of the second epoch
  # before the last of the first, and 13 batches can then miss an example (seen once: 38 of 40).
  config.data.deterministic = True
  train = sources.num_examples(builder, sources.resolve_splits(data_spec(config)).train)
  two_replicas = tf.distribute.InputContext(1, 0, num_replicas_in_sync=2)
  for batch, context in ((8, two_replicas), (4, None)):  # Both read replica 0's slice first.
    seen = {image.tobytes() for b in input_pipeline.train_dataset(
        builder, input_pipeline.pipeline(data_spec(config)), batch, seed=1, start_step=0,
        input_context=context).take(13)
            for image in b['image'].numpy()}
    assert len(seen) == train  # Every training example, not one replica's half.


def test_cache_auto_says_what_it_chose():
  config = small_config(data__cache='auto', data__cache_budget_gb=0.001)
  assert input_pipeline.resolve_cache(input_pipeline.pipeline(data_spec(config)), 10)[0] == 'memory'
  mode, why = input_pipeline.resolve_cache(input_pipeline.pipeline(data_spec(config)), 1000)
  assert mode == 'none' and 'more than data.cache_budget_gb=0.001' in why


def test_deterministic_order_is_the_same_twice(synthetic_folder, tmp_path):
  config, builder = _builder(synthetic_folder, tmp_path, data__deterministic=True)
  first = [b['image'].numpy() for b in input_pipeline.train_dataset(
      builder, input_pipeline.pipeline(data_spec(config)), 8, seed=4, start_step=0).take(8)]
  second = [b['image'].numpy() for b in input_pipeline.train_dataset(
      builder, input_pipeline.pipeline(data_spec(config)), 8, seed=4, start_step=0).take(8)]
  np.testing.assert_array_equal(np.stack(first), np.stack(second))


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
