"""The speed features change speed, not results: the cache and determinism (the step
functions' XLA, steps per call and input wait are tested in test_trainer.py), and the
automatic precision."""

import numpy as np
import pytest
import tensorflow as tf

from data import input_pipeline
from data import sources
from tests.conftest import small_config
from training import runtime


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
