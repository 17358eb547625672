"""Config files, command-line overrides and value checks fail early with clear messages."""

import glob
import importlib
import json
import os
import re

from absl import flags
from ml_collections import config_flags
import pytest

from configs import seg
from errors import ConfigError
import tasks
from tests.conftest import REPO, main_in_process, small_config
from records import checkpoints
from records import workdir as workdir_lib
from training import config_checks
from training import settle


def _parse(*overrides):
  argv = ['prog', f'--config={REPO}/configs/seg.py', *overrides]
  flag_values = flags.FlagValues()
  config_flags.DEFINE_config_file('config', None, 'test', flag_values=flag_values,
                                  lock_config=True, sys_argv=argv)
  flag_values(argv)
  return flag_values.config


def test_book_defaults_and_overrides():
  config = _parse('--config.train.global_batch_size=32', '--config.data.source=synthetic',
                  '--config.train.steps_per_epoch=7')
  assert config.train.global_batch_size == 32
  assert config.data.source == 'synthetic'
  assert config.train.steps_per_epoch == 7
  assert (config.data.image_size, config.train.epochs) == (200, 50)
  assert config.train.optimizer == 'rmsprop' and config.seed == 1337


EXPERIMENTS = sorted(os.path.splitext(os.path.basename(path))[0]
                     for path in glob.glob(os.path.join(REPO, 'configs', '*.py'))
                     if os.path.basename(path) not in ('__init__.py', 'base.py'))


@pytest.mark.parametrize('name', EXPERIMENTS)
def test_every_committed_config_passes_its_checks(name, tmp_path):
  """A config file as committed (the synthetic source stands in for data, a folder for a
  user's own) is valid: the checks run before a model is built, so a bad default would stop
  every user's run."""
  config = importlib.import_module(f'configs.{name}').get_config()
  if config.data.source == 'files':
    for split in ('train', 'validation'):
      config.data.files[f'{split}_images'] = str(tmp_path)
      if tasks.TASKS[config.task].per_pixel:
        config.data.files[f'{split}_masks'] = str(tmp_path)
    config.data.class_names = config.data.class_names or ('cats', 'dogs')
  else:
    config.data.source = 'synthetic'
  settle.settle_config(config)


def test_unknown_key_is_rejected():
  with pytest.raises((AttributeError, KeyError), match='Did you mean "global_batch_size"'):
    _parse('--config.train.global_batch_sise=32')


def test_wrong_type_is_rejected():
  with pytest.raises(flags.IllegalFlagValueError, match='global_batch_size'):
    _parse('--config.train.global_batch_size=many')


@pytest.mark.parametrize('field, value, phrase', [
    ('runtime__precision', 'float8', "runtime.precision='float8' is not one of"),
    ('runtime__strategy', 'tpu', "runtime.strategy='tpu' is not one of"),
    ('train__global_batch_size', -4, 'train.global_batch_size=-4 must be a positive'),
    ('data__source', 'web', "data.source='web' is not one of"),
    ('eval__best_metric', 'mean_iuo', "eval.best_metric='mean_iuo' is not one of loss, "
     "mean_iou, mean_dice, mean_precision, mean_recall, pixel_accuracy; did you mean "
     "'mean_iou'?"),
    ('data__augment__min_crop_fraction', 0.0, 'min_crop_fraction must be in (0, 1]'),
    ('data__augment__color_jitter', 1.5, 'color_jitter must be in [0, 1)'),
    ('train__weight_decay', 0.05, 'train.weight_decay=0.05 needs train.optimizer=adamw'),
    ('train__loss', 'cross_entropy+dise', "'dise' is not a loss term; did you mean 'dice'?"),
    ('train__loss_weights', (1.0, 2.0), 'gives 2 weights for the 1 terms of train.loss'),
    ('train__top_k_percent_pixels', 0.0, 'train.top_k_percent_pixels=0.0 is a fraction'),
    ('data__validation_fraction', 1.0, 'data.validation_fraction must be in [0, 1)'),
    ('data__augment__hue', 0.7, 'data.augment.hue must be in [0, 0.5]'),
    ('data__augment__grayscale', 1.5, 'data.augment.grayscale is a probability'),
    ('data__augment__max_aspect_ratio', 0.5, 'max_aspect_ratio must be 1 (square crops) or more'),
    ('model__freeze_encoder_epochs', 3, 'model.name=book_segmentation has no pretrained encoder'),
    ('train__balance_classes', True,
     'task=segmentation weighs its classes with train.class_weights'),
    ('predict__sizes', (32, 36), 'takes every predict.sizes entry that is a multiple of 8 (its '
     'total stride): 36 is not; use 32 or 40'),
])
def test_bad_values_name_the_field(field, value, phrase):
  with pytest.raises(ConfigError, match=None) as error:
    config_checks.check_config(small_config(**{field: value}))
  assert phrase in str(error.value)


def test_batch_must_divide_across_replicas():
  with pytest.raises(ConfigError, match='does not divide across 2 replicas'):
    config_checks.check_batch_divides(7, 2, 'train.global_batch_size')
  config_checks.check_batch_divides(8, 2, 'train.global_batch_size')


def test_command_line_errors_stop_before_anything_runs(tmp_path, capsys):
  status, stderr = main_in_process(capsys, '--config=configs/seg.py', f'--workdir={tmp_path}/w',
                                   '--config.trian.epochs=1')
  assert status == 2
  assert "unknown config field 'trian'" in stderr
  assert 'Did you mean "train"' in stderr
  assert 'Traceback' not in stderr
  status, stderr = main_in_process(capsys, '--config=configs/seg.py', f'--workdir={tmp_path}/w2',
                                   '--config.data.source=synthetic',
                                   '--config.runtime.cpu_devices=2',
                                   '--config.train.global_batch_size=7')
  assert status == 2
  assert 'train.global_batch_size=7 does not divide across 2 replicas' in stderr
  assert 'Traceback' not in stderr
  assert not (tmp_path / 'w2' / 'synthetic_pets').exists()  # Failed before reading data.
  config_file = tmp_path / 'misspelt.py'
  config_file.write_text('from configs import seg\n\ndef get_config():\n'
                         '  config = seg.get_config()\n  config.data.source = "synthetic"\n'
                         '  config.train.learning_rat = 0.1\n  return config\n')
  status, stderr = main_in_process(capsys, f'--config={config_file}', f'--workdir={tmp_path}/w3')
  assert status == 2
  assert ('config field train.learning_rat is not defined in configs/base.py; did you mean '
          'train.learning_rate?') in stderr
  assert 'Traceback' not in stderr
  assert not (tmp_path / 'w3').exists()


@pytest.mark.parametrize('field, value, nearest', [
    ('train.learning_rat', 0.1, 'train.learning_rate'),
    ('model.width', (8, 16), 'model.widths'),  # Models read no field with a default.
    ('data.augment.flips', False, 'data.augment.flip'),
    ('optimizer', 'adam', 'train.optimizer'),  # At the top instead of in train.
    ('banana', 1, None),
])
def test_a_field_base_does_not_define_is_named_with_the_nearest(field, value, nearest):
  config = seg.get_config()
  *sections, name = field.split('.')
  section = config
  for part in sections:
    section = section[part]
  section[name] = value
  message = f'config field {field} is not defined in configs/base.py'
  message += f'; did you mean {nearest}?' if nearest else '.'
  with pytest.raises(ConfigError, match=re.escape(message)):
    settle.settle_config(config)


def test_a_workdir_saved_before_a_field_existed_resumes_while_the_field_is_off():
  config = seg.get_config()
  saved = json.loads(config.to_json_best_effort())
  del saved['model']['sync_batch_norm']  # A workdir written before the field was added.
  workdir_lib.check_same_run(checkpoints.config_record(config), json.dumps(saved), 'DIR')
  config.model.sync_batch_norm = True
  with pytest.raises(ConfigError, match=r'model: .* in the workdir, .*sync_batch_norm.: True'):
    workdir_lib.check_same_run(checkpoints.config_record(config), json.dumps(saved), 'DIR')


def test_a_run_resumes_and_is_evaluated_with_other_thresholds_but_not_another_model():
  """model.thresholds changes how a trained model is read, not what it is."""
  config = seg.get_config()
  saved = json.dumps(json.loads(config.to_json_best_effort()))
  config.model.thresholds = 'tune'
  workdir_lib.check_same_run(checkpoints.config_record(config), saved, 'DIR')
  config.model.widths = (8, 16)
  with pytest.raises(ConfigError, match=r'model: .*widths'):
    workdir_lib.check_same_run(checkpoints.config_record(config), saved, 'DIR')
