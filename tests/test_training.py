"""End to end: a short run learns, writes TensorBoard events and files, and resumes."""

import glob
import logging
import os
import re
import socket

import numpy as np
import pytest
import tensorflow as tf
from tensorboard.plugins.hparams import plugin_data_pb2

from tests.conftest import data_spec, main_in_process, small_config
from records import checkpoints
from training import loop
from training import optimizers

pytestmark = pytest.mark.slow  # Every test here trains or runs main.py.


def _event_tags(run_dir: str) -> dict:
  """{tag: kind} of every summary in a TensorBoard run folder."""
  tags = {}
  for path in glob.glob(os.path.join(run_dir, 'events.out.tfevents.*')):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        kind = value.metadata.plugin_data.plugin_name
        tags[value.tag] = kind
  return tags


def _eval_scalars(workdir: str, tag: str) -> list[float]:
  """The values of scalar `tag` in the workdir's eval run, in step order."""
  values = []
  for path in glob.glob(os.path.join(workdir, 'eval', 'events.out.tfevents.*')):
    for event in tf.compat.v1.train.summary_iterator(path):
      values += [(event.step, float(tf.make_ndarray(v.tensor))) for v in event.summary.value
                 if v.tag == tag]
  return [v for _, v in sorted(values)]


def test_short_run_learns(trained_run):
  _, results, _ = trained_run
  assert results['epoch'] == 20
  assert results['eval']['num_examples'] == 8  # The validation split: 15 % of 48 trainval.
  # Chance: a constant 'background' answer scores about 0.25 mean IoU on these pictures.
  assert results['eval']['mean_iou'] > 0.45, results['eval']
  assert results['eval']['iou/pet'] > 0.6, results['eval']
  assert results['train']['loss'] < 0.5, results['train']


def test_run_leaves_checkpoint_best_model_config_and_events(trained_run):
  workdir, _, _ = trained_run
  assert os.path.isfile(os.path.join(workdir, checkpoints.BEST_MODEL))
  latest = tf.train.latest_checkpoint(os.path.join(workdir, 'checkpoints'))
  assert latest.endswith('ckpt-100')  # 20 epochs of 40 pictures, 8 a step.
  assert '"global_batch_size": 8' in open(os.path.join(workdir, 'config.json')).read()
  train_tags = _event_tags(os.path.join(workdir, 'train'))
  for tag in ('loss', 'learning_rate', 'images_per_s', 'step_time_s', 'epoch/mean_iou'):
    assert train_tags.get(tag) == 'scalars', (tag, train_tags)
  eval_tags = _event_tags(os.path.join(workdir, 'eval'))
  for tag in ('loss', 'pixel_accuracy', 'mean_iou', 'iou/pet', 'iou/background',
              'iou/outline'):
    assert eval_tags.get(tag) == 'scalars', (tag, eval_tags)
  assert eval_tags.get('masks/ground_truth') == 'images'
  assert eval_tags.get('masks/prediction') == 'images'


def test_loss_falls_over_the_run(trained_run):
  workdir, _, _ = trained_run
  losses = _eval_scalars(workdir, 'loss')
  assert len(losses) == 20
  assert losses[-1] < 0.7 * losses[0]


def _model_weights(checkpoint_dir: str) -> dict:
  reader = tf.train.load_checkpoint(checkpoint_dir)
  return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
          if name.startswith('model/')}


def test_rerun_resumes_from_the_saved_step(tmp_path, synthetic_folder):
  """Stopped after one epoch and rerun: it continues, and ends as an uninterrupted run."""
  config = small_config(data__source='folder', data__folder=synthetic_folder,
                        data__deterministic=True, train__steps_per_epoch=3, train__epochs=1)
  resumed = str(tmp_path / 'resumed')
  assert loop.train(config, resumed, evaluate=False)['step'] == 3
  config.train.epochs = 2
  second = loop.train(config, resumed, evaluate=False)
  assert second['step'] == 6 and second['epoch'] == 2
  saved = sorted(os.path.basename(p) for p in glob.glob(f'{resumed}/checkpoints/ckpt-*.index'))
  assert saved == ['ckpt-0.index', 'ckpt-3.index', 'ckpt-6.index']
  assert loop.train(config, resumed, evaluate=False) == {'step': 6}  # Finished: nothing to do.

  straight = str(tmp_path / 'straight')
  loop.train(config, straight, evaluate=False)
  resumed_weights = _model_weights(f'{resumed}/checkpoints')
  straight_weights = _model_weights(f'{straight}/checkpoints')
  assert resumed_weights.keys() == straight_weights.keys() and resumed_weights
  for name, value in straight_weights.items():
    np.testing.assert_allclose(resumed_weights[name], value, rtol=1e-4, atol=1e-5)


def test_a_run_in_steps_ends_mid_epoch_evaluated_and_saved(tmp_path, synthetic_folder):
  """train.steps=8 with 3-step epochs: epochs end at 3 and 6, the run at 8, evaluated and
  checkpointed there; a rerun has nothing to do."""
  config = small_config(data__source='folder', data__folder=synthetic_folder,
                        train__steps_per_epoch=3, train__steps=8, train__epochs=100,
                        summaries__explain_every_epochs=0)
  results = loop.train(config, str(tmp_path))
  assert results['step'] == 8 and results['epoch'] == 3 and 'eval' in results
  saved = sorted(os.path.basename(p) for p in glob.glob(f'{tmp_path}/checkpoints/ckpt-*.index'))
  assert saved[-2:] == ['ckpt-6.index', 'ckpt-8.index']
  assert len(_eval_scalars(str(tmp_path), 'loss')) == 3  # Epochs 1, 2 and the end.
  assert loop.train(config, str(tmp_path)) == {'step': 8}


def test_early_stopping_stops_after_patience_and_keeps_the_best(tmp_path, synthetic_folder):
  """A learning rate too small to move a float32 weight: every evaluation after the first
  ties it, so with eval.patience=2 the run stops at epoch 3 of 20, the best model and that
  step's checkpoint kept; a rerun (the counter is checkpointed) has nothing to do."""
  config = small_config(data__source='folder', data__folder=synthetic_folder,
                        train__optimizer='sgd', train__learning_rate=1e-12,
                        train__steps_per_epoch=1, train__epochs=20, eval__patience=2,
                        summaries__explain_every_epochs=0)
  results = loop.train(config, str(tmp_path))
  assert results['step'] == 3 and results['epoch'] == 3 and results['stop_early']
  assert os.path.isfile(os.path.join(tmp_path, checkpoints.BEST_MODEL))
  assert tf.train.latest_checkpoint(f'{tmp_path}/checkpoints').endswith('ckpt-3')
  assert loop.train(config, str(tmp_path)) == {'step': 3}
  config.eval.patience = 4  # More patience on a rerun: it continues from step 3.
  assert loop.train(config, str(tmp_path))['step'] == 5


def test_poly_schedule_warms_up_then_decays_with_power_0_9():
  config = small_config(train__schedule='poly', train__learning_rate=0.1,
                        train__warmup_steps=10)
  schedule = optimizers.learning_rate(config.train, total_steps=110)
  rates = {step: float(schedule(step)) for step in (0, 5, 10, 60, 110, 200)}
  np.testing.assert_allclose([rates[0], rates[5], rates[10]], [0.0, 0.05, 0.1], atol=1e-7)
  np.testing.assert_allclose(rates[60], 0.1 * 0.5 ** 0.9, rtol=1e-5)
  assert rates[110] == 0.0 and rates[200] == 0.0


def test_eval_mode_counts_every_example(tmp_path, synthetic_folder):
  config = small_config(data__source='folder', data__folder=synthetic_folder,
                        train__steps_per_epoch=2)
  with pytest.raises(Exception, match='found no checkpoint'):
    loop.evaluate(config, str(tmp_path))
  loop.train(config, str(tmp_path), evaluate=False)
  results = loop.evaluate(config, str(tmp_path))
  assert results['step'] == 2 and results['eval']['num_examples'] == 8


def _download_server_resolves() -> bool:
  try:
    socket.getaddrinfo('thor.robots.ox.ac.uk', 443)
    return True
  except OSError:
    return False


@pytest.mark.skipif(_download_server_resolves(), reason='needs a machine without internet')
def test_default_command_offline_prints_the_three_ways(tmp_path, capsys):
  status, stderr = main_in_process(capsys, '--config=configs/seg.py', f'--workdir={tmp_path}/run',
                                   f'--config.data.data_dir={tmp_path}/empty_tfds')
  assert status == 2
  for phrase in ('No copy of the Oxford-IIIT Pet dataset could be found',
                 '--config.data.data_dir=DIR', '--config.data.manual_dir=DIR',
                 '--config.data.source=folder', '--config.data.source=synthetic'):
    assert phrase in stderr
  assert 'Traceback' not in stderr


def test_download_disabled_prints_the_three_ways(tmp_path, capsys):
  status, stderr = main_in_process(capsys, '--config=configs/seg.py', f'--workdir={tmp_path}/run',
                                   f'--config.data.data_dir={tmp_path}/empty_tfds',
                                   '--config.data.download=False')
  assert status == 2
  assert 'data.download=False' in stderr and 'Traceback' not in stderr


def test_best_model_is_best_at_the_chosen_metric(tmp_path, synthetic_folder):
  """eval.best_metric=mean_iou: best_model.keras scores the highest mean IoU any evaluation
  logged (re-measured here on the eval split), whatever its loss was."""
  import keras  # pylint: disable=import-outside-toplevel
  from data import input_pipeline, sources  # pylint: disable=import-outside-toplevel
  from tasks import metrics  # pylint: disable=import-outside-toplevel
  # A learning rate high enough that loss and mean IoU disagree on the best epoch.
  config = small_config(data__source='folder', data__folder=synthetic_folder,
                        train__optimizer='adam', train__learning_rate=3e-3, train__epochs=6,
                        train__steps_per_epoch=3, eval__best_metric='mean_iou',
                        data__deterministic=True, summaries__explain_every_epochs=0,
                        data__validation_fraction=0.0)
  loop.train(config, str(tmp_path))
  logged, losses = _eval_scalars(str(tmp_path), 'mean_iou'), _eval_scalars(str(tmp_path), 'loss')
  assert len(logged) == 6
  assert np.argmax(logged) != np.argmin(losses), (logged, losses)
  model = keras.models.load_model(os.path.join(tmp_path, checkpoints.BEST_MODEL))
  builder = sources.prepared_builder(data_spec(config), str(tmp_path))
  confusion = 0.0
  for batch in input_pipeline.eval_dataset(builder, input_pipeline.pipeline(data_spec(config)), 8):
    confusion += metrics.confusion_matrix(batch['label'], model(batch['image']), 3,
                                          batch['weight']).numpy()
  best = metrics.summarize(0.0, 1.0, confusion, ('pet', 'background', 'outline'))
  np.testing.assert_allclose(best['mean_iou'], max(logged), atol=1e-4)


def test_run_writes_hparams_and_logs_an_eta(trained_run, tmp_path, capsys, caplog):
  workdir, _, config = trained_run
  sessions = []
  for path in glob.glob(os.path.join(workdir, 'eval', 'events.out.tfevents.*')):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.metadata.plugin_data.plugin_name == 'hparams':
          data = plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
          if data.HasField('session_start_info'):
            sessions.append(data.session_start_info)
  assert sessions, 'no HParams session in the eval run'
  logged = sessions[-1].hparams
  assert logged['train.global_batch_size'].number_value == config.train.global_batch_size
  assert logged['model.name'].string_value == config.model.name
  assert sessions[-1].group_name == os.path.basename(workdir)  # trial_id: the workdir's name.
  with caplog.at_level(logging.INFO, logger='absl'):
    status, stderr = main_in_process(
        capsys, '--config=configs/seg.py', '--config.data.source=synthetic',
        '--config.data.image_size=32', '--config.train.global_batch_size=8',
        '--config.eval.global_batch_size=8', '--config.train.epochs=1',
        '--config.train.log_every_steps=5', '--config.summaries.explain_every_epochs=0',
        '--config.data.synthetic.num_trainval=48', '--config.data.synthetic.num_test=8',
        '--config.data.validation_fraction=0', f'--workdir={tmp_path}')
  assert status == 0, stderr[-2000:]
  assert re.search(r'step 5/6: train loss [0-9.]+, [0-9.]+ images/s, ETA 0:00:\d\d', caplog.text)
  assert re.search(r'epoch 1/1 step 6: .*, elapsed 0:0\d:\d\d', caplog.text)
