"""Every file the product reads back may be damaged: each gets one line naming it and the fix,
or a logged fallback, never a library traceback, and nothing trained is lost."""

import glob
import json
import os
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

from data import files_source
from data import sources
from errors import ConfigError, DataError, UserError, WriteFailure
from inference import loading
from modeling import models
import specs
from tests import own_data
from tests.conftest import data_spec, small_config
from records import checkpoints
from records import summaries as summaries_lib
from records import workdir as workdir_lib
from training import loop


def _quick(folder, **overrides):
  return small_config(data__source='folder', data__folder=folder, train__steps_per_epoch=2,
                      summaries__explain_every_epochs=0, **overrides)


def test_a_damaged_saved_config_is_one_line_with_the_fix():
  config = small_config()
  saved = config.to_json_best_effort()
  with pytest.raises(ConfigError, match=r'--workdir=W: its config.json is damaged \(.*\); it '
                                        r'records .* delete it to resume with the config'):
    workdir_lib.check_same_run(checkpoints.config_record(config), saved[:len(saved) // 2], 'W')


def _state(directory: str):
  keras.utils.set_random_seed(0)
  model = models.build_model(small_config().model, 32, 3)
  return checkpoints.TrainState(model, keras.optimizers.SGD(), directory, 5), model


def _weights(model) -> list:
  return [v.numpy().copy() for v in model.variables]


def test_checkpoints_fall_back_newest_first_and_name_every_reason(tmp_path, caplog):
  state, model = _state(str(tmp_path))
  saved = {}
  for step in (1, 2):
    for v in model.trainable_variables:
      v.assign(v + 1.0)
    state.step.assign(step)
    state.save()
    saved[step] = _weights(model)
  with open(tmp_path / 'checkpoint', 'w') as f:  # The state file, damaged: TF ignores it.
    f.write('model_checkpoint_path: "ckpt-2\n{{')
  with open(tmp_path / 'ckpt-2.data-00000-of-00001', 'r+b') as f:
    f.truncate(50)
  fresh, fresh_model = _state(str(tmp_path))
  assert fresh.restore_latest() == 1  # ckpt-2 is damaged, the state file unreadable.
  for got, want in zip(_weights(fresh_model), saved[1]):
    np.testing.assert_array_equal(got, want)
  assert 'does not list the checkpoints there' in caplog.text
  assert 'ckpt-2 cannot be read' in caplog.text
  (tmp_path / 'checkpoint').write_text('')  # Empty: TensorFlow's manager itself would raise.
  assert _state(str(tmp_path))[0].restore_latest() == 1
  assert 'set aside as checkpoint.damaged' in caplog.text
  with open(tmp_path / 'ckpt-1.data-00000-of-00001', 'r+b') as f:
    f.truncate(50)
  with pytest.raises(UserError, match=r'None of the checkpoints in .* can be read \(ckpt-2: '
                                      r'.*; ckpt-1: .*\)\. Move the folder away'):
    _state(str(tmp_path))[0].restore_latest()


@pytest.mark.slow
def test_predict_reads_past_a_damaged_best_model_and_damaged_checkpoints(
    tmp_path, trained_run, caplog):
  workdir, _, config = trained_run
  copy = str(tmp_path / 'run')
  shutil.copytree(workdir, copy, ignore=shutil.ignore_patterns('.lock'))
  best = os.path.join(copy, checkpoints.BEST_MODEL)
  with open(best, 'r+b') as f:
    f.truncate(os.path.getsize(best) // 3)
  model, source = loading.load_model(specs.describe(config).network, copy)
  newest = tf.train.latest_checkpoint(os.path.join(copy, 'checkpoints'))
  assert source == newest
  assert 'best_model.keras cannot be read' in caplog.text
  reader = tf.train.load_checkpoint(newest)
  some = next(v for v in model.variables if 'kernel' in v.path)
  np.testing.assert_array_equal(some.numpy(), reader.get_tensor(
      f'model/{some.path.replace("/", ".S")}/.ATTRIBUTES/VARIABLE_VALUE'))
  other = config.copy_and_resolve_references()
  other.data.class_names = ('a', 'b')  # best_model.keras of another class count is not used.
  os.remove(best)
  shutil.copy(os.path.join(workdir, checkpoints.BEST_MODEL), best)
  for name in os.listdir(os.path.join(copy, 'checkpoints')):
    if '.data-' in name:
      with open(os.path.join(copy, 'checkpoints', name), 'r+b') as f:
        f.truncate(50)
  with pytest.raises(UserError, match=r'None of the checkpoints .* can be read .* damaged, or '
                                      r'of another network: rerun with the config'):
    loading.load_model(specs.describe(other).network, copy)
  assert 'predicts 3 classes, data.class_names has 2' in caplog.text


def _prepared(synthetic_folder, workdir):
  config = _quick(synthetic_folder)
  return config, sources.prepared_builder(data_spec(config), workdir)


def _train_records(builder) -> str:
  return str(builder.info.splits['train'].filepaths[0])


def test_a_damaged_prepared_set_is_prepared_again(tmp_path, synthetic_folder, caplog):
  workdir = str(tmp_path)
  config, builder = _prepared(synthetic_folder, workdir)
  records = _train_records(builder)
  size = os.path.getsize(records)
  with open(records, 'r+b') as f:
    f.truncate(size // 2)
  again = sources.prepared_builder(data_spec(config), workdir)
  assert 'is damaged: the train split\'s record files hold' in caplog.text
  assert os.path.getsize(_train_records(again)) == size
  assert sources.num_examples(again, 'train') == sum(1 for _ in again.as_dataset(split='train'))
  info = os.path.join(again.data_dir, 'dataset_info.json')
  with open(info, 'w') as f:
    f.write('{"name": "oxford')
  caplog.clear()
  third = sources.prepared_builder(data_spec(config), workdir)
  assert 'dataset_info.json cannot be read' in caplog.text
  json.load(open(os.path.join(third.data_dir, 'dataset_info.json')))


def test_a_damaged_tfds_data_dir_is_named_not_deleted(tmp_path):
  folder = tmp_path / 'oxford_iiit_pet' / '4.0.0'
  folder.mkdir(parents=True)
  (folder / 'dataset_info.json').write_text('{"name": ')
  config = small_config(data__source='tfds', data__data_dir=str(tmp_path))
  with pytest.raises(DataError, match=r'The prepared data set in .*4.0.0 is damaged: '
                                      r'dataset_info.json cannot be read .* Delete '):
    sources.prepared_builder(data_spec(config), str(tmp_path / 'w'))
  assert (folder / 'dataset_info.json').exists()


@pytest.mark.slow
@pytest.mark.parametrize('damaged', ['record', 'cache'])
def test_a_record_damaged_in_place_stops_training_with_the_file_and_fix(
    tmp_path, synthetic_folder, damaged):
  workdir = str(tmp_path / 'run')
  cache = str(tmp_path / 'cache')
  config = _quick(synthetic_folder, data__cache=cache)
  loop.train(config, workdir, evaluate=False)
  builder = sources.prepared_builder(data_spec(config), workdir)
  path = _train_records(builder) if damaged == 'record' else glob.glob(
      cache + '.train-0-*.index')[0]
  with open(path, 'r+b') as f:  # Same size, other bytes: only reading finds it.
    f.seek(os.path.getsize(path) // 2)
    f.write(b'damaged' * 8)
  config.train.epochs = 2
  if damaged == 'record':
    config.data.cache = 'none'
  expected = (r'It is the prepared set in .*: delete that folder and rerun' if damaged == 'record'
              else r'It is the data.cache files .*cache\.\*: delete them and rerun')
  with pytest.raises(DataError, match=r'A data file is damaged \(.*\)\. ' + expected
                     + r'.*; training resumes from .*ckpt-2'):
    loop.train(config, workdir, evaluate=False)


def test_events_that_never_reach_the_disk_are_noticed(tmp_path):
  summaries = summaries_lib.Summaries(str(tmp_path), enabled=True)
  summaries.scalars('train', 1, {'loss': 1.0})
  summaries.flush()
  shutil.rmtree(tmp_path / 'train')  # The writer's file is gone; TF keeps writing into it.
  summaries.scalars('train', 2, {'loss': 0.5})
  with pytest.raises(WriteFailure, match=r'TensorBoard events could not be written to '
                                         r'.*train \('):
    summaries.flush()


@pytest.mark.slow
def test_a_failing_event_write_stops_the_run_with_the_resume_line(
    tmp_path, synthetic_folder, monkeypatch):
  def disk_full(folder):
    raise OSError(28, 'No space left on device', folder)
  monkeypatch.setattr(summaries_lib, '_probe', disk_full)
  with pytest.raises(UserError, match=r'Writing failed: TensorBoard events could not be '
                                      r'written to .*No space left on device.*rerun the same '
                                      r'command to resume from .*ckpt-2'):
    loop.train(_quick(synthetic_folder), str(tmp_path))


def test_a_checkpoint_read_for_predict_gives_the_moving_average_when_training_used_one(
    tmp_path):
  """best_model.keras holds the average; the checkpoint fallback must give the same weights."""
  config = small_config(train__ema_decay=0.9)
  model = _state(str(tmp_path / 'unused'))[1]
  average = [tf.Variable(v + 1.0) for v in model.trainable_variables]
  checkpoints.TrainState(model, keras.optimizers.SGD(), str(tmp_path / 'checkpoints'), 2,
                         ema=average).save()
  loaded, _ = loading.load_model(specs.describe(config).network, str(tmp_path))
  for got, want in zip(loaded.trainable_variables, average):
    np.testing.assert_array_equal(got.numpy(), want.numpy())
  config.train.ema_decay = 0.0
  raw, _ = loading.load_model(specs.describe(config).network, str(tmp_path))
  for got, want in zip(raw.trainable_variables, model.trainable_variables):
    np.testing.assert_array_equal(got.numpy(), want.numpy())


def test_a_damaged_report_of_a_prepared_files_set_is_written_again(tmp_path):
  folder = str(tmp_path / 'data')
  own_data.write_set(folder, 'binary', count=6)
  config = small_config(data__source='files', data__label_map='0:0,255:1',
                        data__class_names=('background', 'object'), **{
                            f'data__files__{split}_{kind}': os.path.join(folder, split, kind)
                            for split in ('train', 'test') for kind in ('images', 'masks')})
  first = sources.prepared_builder(data_spec(config), str(tmp_path / 'w'))
  report = os.path.join(first.data_dir_root, files_source.REPORT_FILE)
  records = _train_records(first)
  written = os.path.getmtime(records)
  with open(report, 'w') as f:
    f.write('{"class_names": ["back')
  again = sources.prepared_builder(data_spec(config), str(tmp_path / 'w'))
  assert files_source.stored_report(again).splits['train'].examples == 5  # 6 less 1 held out.
  assert os.path.getmtime(_train_records(again)) == written  # The records were reused.
