"""Faults and bad inputs: each loses at most a checkpoint interval and explains itself."""

import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from data import builders
from data import sources
from errors import ConfigError, DataError, TrainingDiverged, UserError
from tests.conftest import data_spec, main_in_process, REPO, small_config
from records import checkpoints
from training import loop

SMOKE_ARGS = ['--config=configs/seg.py', '--config.data.source=synthetic',
              '--config.data.image_size=32', '--config.train.global_batch_size=8',
              '--config.eval.global_batch_size=8',
              '--config.data.synthetic.num_trainval=48', '--config.data.synthetic.num_test=8',
              '--config.data.synthetic.photo_size=48', '--config.train.steps_per_epoch=40',
              '--config.train.epochs=1', '--config.train.checkpoint_every_steps=5',
              '--config.summaries.explain_every_epochs=0', '--config.data.deterministic=True']


def _start(workdir: str) -> subprocess.Popen:
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  return subprocess.Popen([sys.executable, os.path.join(REPO, 'main.py'), *SMOKE_ARGS,
                           f'--workdir={workdir}'], cwd=REPO, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _wait_for_checkpoint(process: subprocess.Popen, step: int, log: list) -> None:
  deadline = time.time() + 240
  for line in process.stdout:
    log.append(line)
    if f'ckpt-{step}' in line and 'Saved checkpoint' in line:
      return
    if time.time() > deadline:
      break
  process.kill()
  raise AssertionError('no checkpoint in time:\n' + ''.join(log[-30:]))


def _checkpoint_steps(workdir: str) -> list[int]:
  names = os.listdir(os.path.join(workdir, 'checkpoints'))
  return sorted(int(m.group(1)) for n in names if (m := re.match(r'ckpt-(\d+)\.index$', n)))


@pytest.mark.slow
def test_kill_9_then_rerun_resumes_from_the_last_checkpoint(tmp_path, capsys, caplog):
  """Also: a second run on the workdir stops at once, touching nothing, while the first goes
  on; the lock dies with the first, so the rerun after kill -9 takes it. The second run and
  the reruns go through main.py's `main` in this process: the lock is the other process's."""
  workdir = str(tmp_path / 'run')
  process, log = _start(workdir), []
  _wait_for_checkpoint(process, 10, log)
  start = time.time()
  status, stderr = main_in_process(capsys, *SMOKE_ARGS, f'--workdir={workdir}')
  assert status == 2, stderr[-2000:]
  assert f'--workdir={workdir} is in use by another run (pid {process.pid} on ' in stderr
  assert 'Traceback' not in stderr and time.time() - start < 60
  _wait_for_checkpoint(process, 15, log)  # The first run's own chain goes on.
  process.send_signal(signal.SIGKILL)
  process.wait(timeout=30)
  saved = _checkpoint_steps(workdir)[-1]
  assert saved >= 10
  with caplog.at_level(logging.INFO, logger='absl'):  # One block a run: main sets the level.
    status, stderr = main_in_process(capsys, *SMOKE_ARGS, f'--workdir={workdir}')
  assert status == 0, stderr[-2000:]
  assert f'at step {saved}.' in caplog.text  # "Resumed from .../ckpt-N at step N."
  assert _checkpoint_steps(workdir)[-1] == 40
  caplog.clear()
  with caplog.at_level(logging.INFO, logger='absl'):
    status, _ = main_in_process(capsys, *SMOKE_ARGS, f'--workdir={workdir}')
  assert status == 0 and 'Training already finished: step 40 of 40' in caplog.text


@pytest.mark.slow
def test_sigterm_saves_at_the_step_boundary_and_exits_75(tmp_path):
  workdir = str(tmp_path / 'run')
  process, log = _start(workdir), []
  _wait_for_checkpoint(process, 5, log)
  process.send_signal(signal.SIGTERM)
  rest, _ = process.communicate(timeout=120)
  assert process.returncode == 75, rest[-2000:]
  match = re.search(r'SIGTERM received: saved (\S+) at step (\d+) of 40\. Rerun the same '
                    r'command to resume\.', rest)
  assert match, rest[-2000:]
  step = int(match.group(2))
  assert _checkpoint_steps(workdir)[-1] == step and step >= 5
  reader = tf.train.load_checkpoint(match.group(1))
  assert reader.get_tensor('step/.ATTRIBUTES/VARIABLE_VALUE') == step


def _quick(folder, **overrides):
  return small_config(data__source='folder', data__folder=folder, train__steps_per_epoch=2,
                      summaries__explain_every_epochs=0, **overrides)


@pytest.mark.slow
def test_corrupt_latest_checkpoint_falls_back_to_the_previous(tmp_path, synthetic_folder,
                                                              caplog):
  caplog.set_level('INFO', logger='absl')
  config = _quick(synthetic_folder, train__epochs=2)
  workdir = str(tmp_path)
  loop.train(config, workdir, evaluate=False)
  assert _checkpoint_steps(workdir) == [0, 2, 4]
  data_file = os.path.join(workdir, 'checkpoints', 'ckpt-4.data-00000-of-00001')
  with open(data_file, 'r+b') as f:
    f.truncate(100)
  config.train.epochs = 3
  result = loop.train(config, workdir, evaluate=False)
  assert 'ckpt-4 cannot be read' in caplog.text
  assert 'Resumed from' in caplog.text and 'ckpt-2 at step 2' in caplog.text
  assert result['step'] == 6


@pytest.mark.slow
def test_non_finite_loss_rolls_back_then_stops_clearly(tmp_path, synthetic_folder, caplog):
  config = _quick(synthetic_folder, train__optimizer='sgd', train__learning_rate=1e12,
                  train__recovery_max_trials=2)
  with pytest.raises(TrainingDiverged, match=r'gave up after train.recovery_max_trials=2'):
    loop.train(config, str(tmp_path))
  assert caplog.text.count('rolled back to') == 2
  assert TrainingDiverged.exit_code == 3
  assert not os.path.exists(os.path.join(tmp_path, checkpoints.BEST_MODEL))
  reader = tf.train.load_checkpoint(os.path.join(tmp_path, 'checkpoints'))
  weights = [reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
             if k.startswith('model/')]
  assert weights and all(np.all(np.isfinite(w)) for w in weights)


@pytest.mark.slow
def test_loss_upper_bound_triggers_the_same_rollback(tmp_path, synthetic_folder):
  config = _quick(synthetic_folder, train__loss_upper_bound=1e-6, train__recovery_max_trials=0)
  with pytest.raises(TrainingDiverged, match='exceeds train.loss_upper_bound=1e-06'):
    loop.train(config, str(tmp_path))


@pytest.mark.slow
def test_float16_loss_scale_skips_are_not_failures(tmp_path, synthetic_folder):
  config = _quick(synthetic_folder, runtime__precision='mixed_float16',
                  train__recovery_max_trials=0, train__epochs=2)
  assert loop.train(config, str(tmp_path))['step'] == 4


@pytest.mark.slow
def test_disk_full_when_saving_is_clear_and_keeps_the_previous_checkpoint(
    tmp_path, synthetic_folder, monkeypatch):
  config = _quick(synthetic_folder)
  workdir = str(tmp_path)
  loop.train(config, workdir, evaluate=False)

  def full(*args, **kwargs):
    raise tf.errors.ResourceExhaustedError(None, None, 'No space left on device')
  monkeypatch.setattr(tf.train.CheckpointManager, 'save', full)
  config.train.epochs = 2
  with pytest.raises(UserError, match='Writing the checkpoint of step 4 to .* failed: .*No space '
                                      'left on device. Free disk space'):
    loop.train(config, workdir, evaluate=False)
  monkeypatch.undo()
  assert _checkpoint_steps(workdir) == [0, 2]
  tf.train.load_checkpoint(os.path.join(workdir, 'checkpoints', 'ckpt-2'))


@pytest.mark.slow
def test_resuming_with_a_different_config_is_refused(tmp_path, synthetic_folder):
  workdir = str(tmp_path)
  loop.train(_quick(synthetic_folder), workdir, evaluate=False)
  with pytest.raises(ConfigError, match=r'holds checkpoints of a run with a different config '
                                        r'\(train.learning_rate: 0.001 in the workdir, 0.01 now\)'
                                        r'.*use a new --workdir'):
    loop.train(_quick(synthetic_folder, train__learning_rate=0.01), workdir, evaluate=False)
  resumed = loop.train(_quick(synthetic_folder, train__epochs=2), workdir, evaluate=False)
  assert resumed['step'] == 4


def test_image_size_the_model_cannot_take(tmp_path):
  with pytest.raises(ConfigError, match='multiple of 8 .* use 24 or 32'):
    loop.train(small_config(data__image_size=30), str(tmp_path))
  assert not os.path.exists(tmp_path / 'synthetic_pets')  # Stopped before any data.


def _broken_copy(synthetic_folder, tmp_path):
  folder = tmp_path / 'broken'
  shutil.copytree(synthetic_folder, folder)
  images, trimaps = folder / 'images', folder / 'annotations' / 'trimaps'
  names = [l.split()[0] for l in open(folder / 'annotations' / 'trainval.txt')]
  data = (images / f'{names[0]}.jpg').read_bytes()
  (images / f'{names[0]}.jpg').write_bytes(data[:len(data) // 3])  # Truncated.
  (images / f'{names[1]}.jpg').write_text('a text file, not a picture')
  (images / f'{names[2]}.jpg').unlink()  # Listed, no file.
  tf.io.write_file(str(trimaps / f'{names[3]}.png'), tf.io.encode_png(np.ones((5, 7, 1),
                                                                              np.uint8)))
  tf.io.write_file(str(trimaps / f'{names[4]}.png'), tf.io.encode_png(
      np.full(tf.io.decode_image(tf.io.read_file(str(images / f'{names[4]}.jpg'))).shape[:2]
              + (1,), 7, np.uint8)))
  return str(folder), names[:5]


def test_bad_examples_in_a_folder_are_listed_or_skipped(tmp_path, synthetic_folder, caplog):
  folder, bad_names = _broken_copy(synthetic_folder, tmp_path)
  config = _quick(folder)
  with pytest.raises(DataError) as error:
    sources.prepared_builder(data_spec(config), str(tmp_path / 'w1'))
  message = str(error.value)
  assert message.startswith('5 of 48 examples in annotations/trainval.txt')
  for name, phrase in zip(bad_names, ('not a readable picture', 'not a readable picture',
                                      'is missing', 'differs from its image',
                                      'values [7] outside 1..3')):
    assert re.search(f'{name}: .*{re.escape(phrase)}', message), (name, message)
  assert 'data.skip_bad_examples=True' in message

  config = _quick(folder, data__skip_bad_examples=True)
  builder = sources.prepared_builder(data_spec(config), str(tmp_path / 'w2'))
  assert sources.num_examples(builder, 'train') + sources.num_examples(builder,
                                                                       'validation') == 43
  assert 'Skipping 5 of 48 examples' in caplog.text


def test_an_empty_split_is_clear(tmp_path, synthetic_folder):
  folder = tmp_path / 'empty'
  shutil.copytree(synthetic_folder, folder)
  (folder / 'annotations' / 'test.txt').write_text('')
  with pytest.raises(DataError, match='test.txt .* names no example: the test split would be '
                                      'empty'):
    sources.prepared_builder(_quick(str(folder)).data, str(tmp_path / 'w'))


def test_tfds_dir_with_another_version_is_clear(tmp_path):
  (tmp_path / 'tfds' / 'oxford_iiit_pet' / '3.2.0').mkdir(parents=True)
  config = small_config(data__source='tfds', data__data_dir=str(tmp_path / 'tfds'),
                        data__download=False)
  with pytest.raises(DataError, match=r'holds oxford_iiit_pet version 3.2.0, but TFDS .* reads '
                                      r'version 4.0.0'):
    sources.prepared_builder(data_spec(config), str(tmp_path))


def test_manual_dir_with_wrong_archives_is_clear(tmp_path):
  archives = tmp_path / 'archives'
  archives.mkdir()
  for name in builders.ARCHIVES:
    (archives / name).write_bytes(b'\x1f\x8b not the real archive')
  config = small_config(data__source='tfds', data__data_dir=str(tmp_path / 'tfds'),
                        data__manual_dir=str(archives))
  with pytest.raises(DataError, match='(?s)has wrong checksum.*must be the official, complete'):
    sources.prepared_builder(data_spec(config), str(tmp_path))
