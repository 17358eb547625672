"""--mode=continuous_eval beside a training with eval.every_epochs=0: one evaluation per
checkpoint, the same numbers as --mode=eval, and best_model.keras from the best of them."""

import json
import logging
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import REPO, main_in_process

ARGS = ['--config=configs/seg.py', '--config.data.source=synthetic',
        '--config.data.image_size=32', '--config.train.global_batch_size=8',
        '--config.eval.global_batch_size=8',
        '--config.data.synthetic.num_trainval=48', '--config.data.synthetic.num_test=8',
        '--config.data.synthetic.photo_size=48', '--config.train.steps_per_epoch=10',
        '--config.train.epochs=3', '--config.train.checkpoint_every_steps=10',
        '--config.train.max_checkpoints_to_keep=10', '--config.eval.every_epochs=0',
        '--config.summaries.explain_every_epochs=0', '--config.data.deterministic=True',
        '--config.eval.continuous_timeout_s=180']


def _start(workdir: str, *extra: str) -> subprocess.Popen:
  return subprocess.Popen([sys.executable, 'main.py', f'--workdir={workdir}', *ARGS, *extra],
                          cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _checkpoint_weights(path: str, model: keras.Model) -> list:
  reader = tf.train.load_checkpoint(path)
  return [reader.get_tensor(f'model/{v.path.replace("/", ".S")}/.ATTRIBUTES/VARIABLE_VALUE')
          for v in model.variables]


@pytest.mark.slow
def test_a_sidecar_evaluates_each_checkpoint_once_like_mode_eval(tmp_path, capsys, caplog):
  """The training and the final --mode=eval go through main.py's `main` in this process; the
  sidecar is its own process, as it would be beside a real training."""
  workdir = str(tmp_path / 'run')
  sidecar = _start(workdir, '--mode=continuous_eval')
  with caplog.at_level(logging.INFO, logger='absl'):
    status, stderr = main_in_process(capsys, f'--workdir={workdir}', *ARGS)
  sidecar_log = sidecar.communicate(timeout=600)[0]
  assert status == 0, stderr[-3000:]
  assert sidecar.returncode == 0, sidecar_log[-3000:]
  assert 'step 30' in caplog.text and 'val loss' not in caplog.text  # Never paused to evaluate.
  evaluated = [int(s) for s in re.findall(r'\] step (\d+): val loss ', sidecar_log)]
  assert sorted(evaluated) == [0, 10, 20, 30] and len(set(evaluated)) == 4, sidecar_log[-3000:]
  assert 'Evaluated the final checkpoint (step 30): done.' in sidecar_log
  with open(os.path.join(workdir, 'continuous_eval.json')) as f:
    record = json.load(f)
  assert sorted(map(int, record['steps'])) == [0, 10, 20, 30]

  caplog.clear()
  with caplog.at_level(logging.INFO, logger='absl'):
    status, stderr = main_in_process(capsys, f'--workdir={workdir}', *ARGS, '--mode=eval')
  assert status == 0, stderr[-3000:]
  line = re.search(r'step 30: val loss (\S+) pixel_accuracy (\S+) mean_iou (\S+)', caplog.text)
  final = record['steps']['30']
  for value, key in zip(line.groups(), ('loss', 'pixel_accuracy', 'mean_iou')):
    assert float(value) == pytest.approx(final[key], abs=1e-4)

  best_step = min(record['steps'], key=lambda s: record['steps'][s]['loss'])
  assert record['best_eval'] == pytest.approx(record['steps'][best_step]['loss'])
  best = keras.models.load_model(os.path.join(workdir, 'best_model.keras'))
  for got, want in zip(best.variables, _checkpoint_weights(
      os.path.join(workdir, 'checkpoints', f'ckpt-{best_step}'), best)):
    np.testing.assert_array_equal(got.numpy(), want)
