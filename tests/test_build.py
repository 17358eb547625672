"""The Trainer builder: what a run is made of, checked before any step runs."""

import json
import os

import pytest

from errors import ConfigError
import specs
from tests.conftest import small_config
from training import build


def test_a_trainer_holds_its_runtime_data_and_state_and_writes_its_config(tmp_path):
  config = small_config(train__epochs=3, train__gradient_accumulation_steps=2,
                        runtime__cpu_devices=2)
  trainer = build.build_trainer(specs.describe(config), str(tmp_path))
  assert trainer.runtime.strategy.num_replicas_in_sync == 2 and trainer.runtime.is_chief
  assert trainer.data.examples_per_step == 16  # 8 a batch, 2 batches an update.
  assert trainer.data.steps_per_epoch == trainer.data.num_train // 16
  assert trainer.data.total_steps == 3 * trainer.data.steps_per_epoch
  assert trainer.steps.global_batch_size == 8 and trainer.steps.accumulation_steps == 2
  assert trainer.optimizer.built  # Its slots exist before the step is traced.
  with open(tmp_path / 'config.json') as f:
    assert json.load(f)['train']['gradient_accumulation_steps'] == 2
  assert (tmp_path / '.lock').exists()


def test_a_sidecar_trainer_takes_its_own_lock_and_writes_no_config(tmp_path):
  config = small_config()
  trainer = build.build_trainer(specs.describe(config), str(tmp_path), sidecar=True)
  assert (tmp_path / build.SIDECAR_LOCK).exists()
  assert not (tmp_path / 'config.json').exists() and not (tmp_path / '.lock').exists()
  trainer.summaries.scalars('eval', 1, {'loss': 1.0})
  trainer.summaries.flush()
  assert sorted(os.listdir(tmp_path / 'eval')) and not (tmp_path / 'train').exists()


def test_a_batch_that_does_not_divide_stops_before_the_workdir_is_touched(tmp_path):
  with pytest.raises(ConfigError, match='eval.global_batch_size=7 does not divide across 2'):
    config = small_config(eval__global_batch_size=7, runtime__cpu_devices=2)
    build.build_trainer(specs.describe(config), str(tmp_path / 'w'))
  assert not (tmp_path / 'w').exists()
