"""Multi-worker training on localhost: equal weights, chief-only writes, a lost worker."""

import glob
import logging
import os
import re
import subprocess
import sys
import time

import pytest

from errors import ConfigError
from launch import launch_local
from launch import tf_config
from tests.conftest import REPO, main_in_process
from training import runtime

ARGS = ['--config=configs/seg.py', '--config.data.source=synthetic',
        '--config.data.image_size=32', '--config.train.global_batch_size=8',
        '--config.eval.global_batch_size=8', '--config.data.synthetic.num_trainval=48',
        '--config.data.synthetic.num_test=12', '--config.data.synthetic.photo_size=48',
        '--config.train.steps_per_epoch=4', '--config.train.epochs=2',
        '--config.summaries.explain_every_epochs=0', '--config.data.deterministic=True',
        '--config.train.optimizer=sgd', '--config.train.learning_rate=0.05']
FINGERPRINT = re.compile(r'Final weights on (\S+ \d+|local): fingerprint (\S+)/(\S+)')


def _launch(workdir, *extra, workers=2, timeout=300, args=ARGS):
  return subprocess.run(
      [sys.executable, '-m', 'launch.launch_local', f'--workers={workers}', '--',
       *args, f'--workdir={workdir}', *extra], cwd=REPO, capture_output=True, text=True,
      timeout=timeout, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2'))


def _fingerprints(log: str) -> dict:
  return {m.group(1): (float(m.group(2)), float(m.group(3))) for m in FINGERPRINT.finditer(log)}


# The zoo's U-Net (batch norm in keras-hub's encoder and in our decoder) with every scale
# option on: one launch answers equality across workers and with local replicas, synchronized
# batch norm, accumulation, clipping, EMA and which worker writes what.
SCALE_ARGS = [*(a for a in ARGS if 'image_size' not in a), '--config.data.image_size=64',
              '--config.model.name=unet', '--config.model.backbone=resnet_tiny',
              '--config.model.decoder_widths=(16,)', '--config.model.sync_batch_norm=True',
              '--config.train.gradient_accumulation_steps=2', '--config.train.global_clipnorm=1.0',
              '--config.train.ema_decay=0.9', '--config.train.steps_per_epoch=2',
              '--config.train.epochs=1']


@pytest.fixture(scope='module')
def two_worker_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('mw'))
  return workdir, _launch(workdir, args=SCALE_ARGS)


@pytest.mark.slow
def test_two_workers_end_with_identical_weights_equal_to_two_local_replicas(two_worker_run,
                                                                             tmp_path, capsys,
                                                                             caplog):
  """Every variable (batch-norm statistics too, the keras-hub encoder's and the decoder's)
  ends equal on both workers and equal to 2 local replicas with the same options: without
  synchronized batch norm each worker keeps its own replicas' moving statistics, and the
  fingerprints of all weights differ."""
  _, result = two_worker_run
  assert result.returncode == 0, result.stdout[-3000:]
  prints = _fingerprints(result.stdout)
  assert set(prints) == {'worker 0', 'worker 1'} and prints['worker 0'] == prints['worker 1']
  with caplog.at_level(logging.INFO, logger='absl'):  # main.py's `main` in this process.
    status, stderr = main_in_process(capsys, *SCALE_ARGS, f'--workdir={tmp_path}/local',
                                     '--config.runtime.cpu_devices=2')
  assert status == 0, stderr[-3000:]
  (total, squares), = _fingerprints(caplog.text).values()
  assert total == pytest.approx(prints['worker 0'][0], rel=1e-4, abs=1e-3)
  assert squares == pytest.approx(prints['worker 0'][1], rel=1e-4)


@pytest.mark.slow
def test_only_the_chief_writes_events_exports_and_config(two_worker_run):
  workdir, result = two_worker_run
  assert result.returncode == 0
  for run in ('train', 'eval'):
    assert len(glob.glob(os.path.join(workdir, run, 'events.out.tfevents.*'))) == 1
  assert glob.glob(os.path.join(workdir, '**', '*.keras'), recursive=True) == [
      os.path.join(workdir, 'best_model.keras')]
  assert glob.glob(os.path.join(workdir, '**', 'config.json'), recursive=True) == [
      os.path.join(workdir, 'config.json')]
  # The other worker's checkpoints went to its own folder and were removed after each save.
  assert not glob.glob(os.path.join(workdir, 'workers', '*', 'checkpoints'))
  assert os.path.isfile(os.path.join(workdir, 'checkpoints', 'ckpt-2.index'))


@pytest.mark.slow
def test_a_lost_worker_fails_the_other_clearly_and_a_relaunch_resumes(tmp_path):
  workdir = str(tmp_path / 'run')
  hosts = [f'localhost:{p}' for p in launch_local.free_ports(2)]
  args = [*ARGS, f'--workdir={workdir}', '--config.runtime.strategy=multi_worker',
          '--config.train.steps_per_epoch=30', '--config.train.epochs=1',
          '--config.train.checkpoint_every_steps=5', '--config.runtime.collective_timeout_s=30']
  logs = [open(tmp_path / f'worker{t}.log', 'w+') for t in range(2)]
  workers = [subprocess.Popen(
      [sys.executable, 'main.py', *args], cwd=REPO, stdout=logs[t], stderr=subprocess.STDOUT,
      env=dict(os.environ, TF_CONFIG=tf_config.tf_config(hosts, t), TF_CPP_MIN_LOG_LEVEL='2'))
      for t in range(2)]
  try:
    deadline = time.time() + 240
    while 'ckpt-10' not in (tmp_path / 'worker0.log').read_text():
      assert time.time() < deadline and workers[0].poll() is None, (
          tmp_path / 'worker0.log').read_text()[-3000:]
      time.sleep(0.3)
    workers[1].kill()
    killed_at = time.time()
    workers[0].wait(timeout=90)
    waited = time.time() - killed_at
  finally:
    for w in workers:
      if w.poll() is None:
        w.kill()
  log = (tmp_path / 'worker0.log').read_text()
  assert workers[0].returncode == 4, log[-3000:]
  assert waited < 60
  assert 'worker 0 lost contact with /job:worker/replica:0/task:1' in log
  assert 'restart every worker with the same command' in log
  saved = max(int(m) for m in re.findall(r'Saved checkpoint \S+/ckpt-(\d+)', log))

  # The relaunch keeps the default collective timeout: 30 s is for noticing the lost worker,
  # and on a loaded machine one worker may trace its first step that much later than the other.
  relaunched = subprocess.run(
      [sys.executable, '-m', 'launch.launch_local', '--workers=2', '--',
       *[a for a in args if 'strategy' not in a and 'collective_timeout' not in a]], cwd=REPO,
      capture_output=True, text=True,
      timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2'))
  assert relaunched.returncode == 0, relaunched.stdout[-3000:]
  for task in range(2):
    assert re.search(rf'\[worker {task}\] .*Resumed from \S+/ckpt-{saved} at step {saved}\.',
                     relaunched.stdout), relaunched.stdout[-3000:]
  assert 'epoch 1/1 step 30' in relaunched.stdout


def test_no_cluster_description_is_a_clear_error(monkeypatch):
  monkeypatch.delenv('TF_CONFIG', raising=False)
  monkeypatch.delenv('SLURM_PROCID', raising=False)
  with pytest.raises(ConfigError, match='needs a cluster description: set TF_CONFIG'):
    runtime.cluster_resolver()


def test_tf_config_helper():
  config = tf_config.tf_config(['a:1', 'b:2'], 1)
  assert config == ('{"cluster": {"worker": ["a:1", "b:2"]}, '
                    '"task": {"type": "worker", "index": 1}}')
  with pytest.raises(ValueError, match='not an index'):
    tf_config.tf_config(['a:1'], 3)


@pytest.mark.slow
def test_tf_data_service_serves_a_training_run(tmp_path, synthetic_folder):
  from data import service  # pylint: disable=import-outside-toplevel
  from tests.conftest import small_config  # pylint: disable=import-outside-toplevel
  from training import loop  # pylint: disable=import-outside-toplevel
  dispatcher = service.start_dispatcher()
  worker = service.start_worker(dispatcher.target)
  try:
    config = small_config(data__source='folder', data__folder=synthetic_folder,
                          data__service_address=dispatcher.target, train__optimizer='adam',
                          train__steps_per_epoch=6, train__epochs=4,
                          summaries__explain_every_epochs=0)
    losses = []
    for epochs in (2, 4):  # A rerun resumes with the service's streams of the same names.
      config.train.epochs = epochs
      result = loop.train(config, str(tmp_path), evaluate=False)
      losses.append(result['train']['loss'])
    assert result['step'] == 24
    assert losses[-1] < losses[0]
  finally:
    worker._stop()  # pylint: disable=protected-access
    dispatcher._stop()  # pylint: disable=protected-access
