"""--mode=continuous_eval beside a training with eval.every_epochs=0: one evaluation per
checkpoint, the same numbers as --mode=eval, and best_model.keras from the best of them."""

import json
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import REPO

ARGS = ['--config=configs/seg.py', '--config.data.source=synthetic',
        '--config.data.image_size=32', '--config.train.global_batch_size=8',
        '--config.eval.global_batch_size=8', '--config.runtime.cpu_devices=2',
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
def test_a_sidecar_evaluates_each_checkpoint_once_like_mode_eval(tmp_path):
  workdir = str(tmp_path / 'run')
  training = _start(workdir)
  sidecar = _start(workdir, '--mode=continuous_eval')
  train_log = training.communicate(timeout=600)[0]
  sidecar_log = sidecar.communicate(timeout=600)[0]
  assert training.returncode == 0, train_log[-3000:]
  assert sidecar.returncode == 0, sidecar_log[-3000:]
  assert 'val loss' not in train_log  # The training never paused to evaluate.
  evaluated = [int(s) for s in re.findall(r'\] step (\d+): val loss ', sidecar_log)]
  assert sorted(evaluated) == [0, 10, 20, 30] and len(set(evaluated)) == 4, sidecar_log[-3000:]
  assert 'Evaluated the final checkpoint (step 30): done.' in sidecar_log
  with open(os.path.join(workdir, 'continuous_eval.json')) as f:
    record = json.load(f)
  assert sorted(map(int, record['steps'])) == [0, 10, 20, 30]

  once = subprocess.run([sys.executable, 'main.py', f'--workdir={workdir}', *ARGS,
                         '--mode=eval'], cwd=REPO, capture_output=True, text=True, timeout=300)
  assert once.returncode == 0, once.stderr[-3000:]
  line = re.search(r'step 30: val loss (\S+) pixel_accuracy (\S+) mean_iou (\S+)', once.stderr)
  final = record['steps']['30']
  for value, key in zip(line.groups(), ('loss', 'pixel_accuracy', 'mean_iou')):
    assert float(value) == pytest.approx(final[key], abs=1e-4)

  best_step = min(record['steps'], key=lambda s: record['steps'][s]['loss'])
  assert record['best_eval'] == pytest.approx(record['steps'][best_step]['loss'])
  best = keras.models.load_model(os.path.join(workdir, 'best_model.keras'))
  for got, want in zip(best.variables, _checkpoint_weights(
      os.path.join(workdir, 'checkpoints', f'ckpt-{best_step}'), best)):
    np.testing.assert_array_equal(got.numpy(), want)
