"""model.weights is read one way in every mode: a model run without a trained workdir (the
ImageNet Xception of book 9.4) loads each kind of weights source as training does, and the log
says how many tensors it restored, or the mode stops with one line. No mode runs on weights it
did not load."""

import json
import logging
import os
import re
import shutil

import keras
import numpy as np
import pytest

from errors import ConfigError
from inference import loading
from modeling import backbones
from modeling import models
from modeling import xception_imagenet as xception_model
from modeling import weights as weights_lib
import specs
from tests.conftest import main_in_process, model_config
from tests.test_models import save_keras_h5, xception_test_config

SIZE = 71  # Xception's smallest side.
CLASSES = ('cat', 'dog')
RESTORED = re.compile(r'restored (\d+) of (\d+) weight tensors')


def _config(weights: str, classes=CLASSES):
  config = xception_test_config()
  config.data.image_size = SIZE
  config.data.label_feature = 'species'
  config.data.class_names = classes
  config.model.weights = weights
  return config


def _logits(model: keras.Model, pictures: np.ndarray) -> np.ndarray:
  return keras.Model(model.input, model.get_layer('predictions').output)(pictures).numpy()


@pytest.fixture(scope='module')
def weight_files(tmp_path_factory):
  """Every kind of model.weights, the Xception's own written from one seeded model: {kind:
  path}, the seeded model itself, and pictures to compare outputs on."""
  folder = str(tmp_path_factory.mktemp('weights'))
  keras.utils.set_random_seed(7)
  trained = models.build_model(_config('random').model, SIZE, len(CLASSES))
  files = {kind: os.path.join(folder, name) for kind, name in (
      ('keras', 'xception.keras'), ('weights_h5', 'xception.weights.h5'),
      ('keras_h5', 'xception_weights.h5'), ('workdir', 'run'), ('preset', 'resnet18'),
      ('other_model', 'book.keras'))}
  trained.save(files['keras'])
  trained.save_weights(files['weights_h5'])
  os.makedirs(files['workdir'])
  shutil.copy(files['keras'], os.path.join(files['workdir'], 'best_model.keras'))
  network = xception_model.network(None, SIZE, len(CLASSES))
  assert weights_lib.transfer(trained, network)[0] == len(network.weights)
  save_keras_h5(network, files['keras_h5'])
  backbones.build('resnet18', 64).save_to_preset(files['preset'])
  models.build_model(model_config('book_segmentation'), 32, 3).save(files['other_model'])
  pictures = np.random.default_rng(3).uniform(0, 255, (2, SIZE, SIZE, 3)).astype(np.float32)
  return files, _logits(trained, pictures), pictures, trained


@pytest.mark.parametrize('kind', ['keras', 'weights_h5', 'keras_h5', 'workdir'])
def test_each_whole_network_source_loads_every_tensor_and_says_so(kind, weight_files, tmp_path):
  files, expected, pictures, _ = weight_files
  model, source = loading.load_model(specs.describe(_config(files[kind])).network,
                                     str(tmp_path / 'fresh'))
  restored, total = map(int, RESTORED.search(source).groups())
  assert restored == total == len(model.weights), source
  assert f'model.weights={files[kind]}' in source
  np.testing.assert_allclose(_logits(model, pictures), expected,
                             atol=1e-4 * np.abs(expected).max())


@pytest.mark.parametrize('kind, message', [
    ('preset', 'none of its weights fits xception'),
    ('other_model', 'none of its weights fits xception'),
    ('missing', 'no such file or folder'),
    ('preset_without_weights', 'the preset folder .* has no model.weights.h5'),
])
def test_weights_that_do_not_fit_stop_in_one_line(kind, message, weight_files, tmp_path):
  files = dict(weight_files[0], missing=str(tmp_path / 'missing.keras'),
               preset_without_weights=str(tmp_path / 'preset'))
  shutil.copytree(files['preset'], files['preset_without_weights'],
                  ignore=shutil.ignore_patterns('model.weights.h5'))
  with pytest.raises(ConfigError, match=message) as error:
    loading.load_model(specs.describe(_config(files[kind])).network, str(tmp_path / 'fresh'))
  assert '\n' not in str(error.value)


def test_random_weights_say_nothing_was_restored(tmp_path):
  model, source = loading.load_model(specs.describe(_config('random')).network,
                                     str(tmp_path / 'fresh'))
  assert f'restored 0 of {len(model.weights)} weight tensors' in source, source


def test_imagenet_offline_stops_in_one_line(monkeypatch, tmp_path):
  import urllib.error  # pylint: disable=import-outside-toplevel
  from keras.src.utils import file_utils  # pylint: disable=import-outside-toplevel
  if os.path.exists(os.path.join(os.path.expanduser('~'), '.keras', 'models',
                                 xception_model.KERAS_FILE)):
    pytest.skip('The ImageNet weights are cached here: Keras would not go online.')

  def offline(*args, **kwargs):
    raise urllib.error.URLError('[Errno -2] Name or service not known')
  monkeypatch.setattr(file_utils, 'urlretrieve', offline)
  config = _config('imagenet', tuple(str(i) for i in range(xception_model.IMAGENET_CLASSES)))
  with pytest.raises(ConfigError, match='Keras could not get the ImageNet weights') as error:
    loading.load_model(specs.describe(config).network, str(tmp_path / 'fresh'))
  assert '\n' not in str(error.value)


def _mode(capsys, caplog, mode: str, weights: str, workdir: str, picture: str) -> tuple:
  args = ['--config=configs/xception_imagenet.py', f'--workdir={workdir}', f'--mode={mode}',
          f'--config.model.weights={weights}', f'--config.data.image_size={SIZE}',
          '--config.data.label_feature=species', f"--config.data.class_names={CLASSES!r}",
          '--config.data.source=synthetic', '--config.data.synthetic.num_trainval=8',
          '--config.data.synthetic.num_test=4', '--config.data.synthetic.photo_size=64',
          '--config.summaries.explain.class_index=', '--config.summaries.explain.num_filters=1',
          "--config.summaries.explain.activation_layers=('block1_conv1_act',)",
          "--config.summaries.explain.filter_layers=('block2_sepconv1',)",
          '--config.export.format=saved_model']
  if mode in ('explain', 'predict'):
    args.append(f'--images={picture}')
  caplog.clear()
  with caplog.at_level(logging.INFO, logger='absl'):
    return main_in_process(capsys, *args)


@pytest.mark.slow
@pytest.mark.parametrize('mode', ['explain', 'predict', 'score', 'export'])
def test_every_mode_uses_the_weights_it_loaded_or_stops_in_one_line(
    mode, weight_files, tmp_path, capsys, caplog):
  """The same source loads in every mode and its lines name how much was restored; weights
  of another model (the planted case) stop every mode with one line and write nothing."""
  files = weight_files[0]
  picture = str(tmp_path / 'picture.png')
  loading.write_png(picture, np.random.default_rng(1).integers(0, 255, (60, 80, 3)))
  status, stderr = _mode(capsys, caplog, mode, files['other_model'], str(tmp_path / 'planted'),
                         picture)
  errors = [line for line in stderr.splitlines() if line.startswith('Error:')]
  assert status == 2 and len(errors) == 1, stderr[-2000:]
  assert 'none of its weights fits xception' in errors[0]
  assert not os.path.exists(tmp_path / 'planted' / mode)
  status, stderr = _mode(capsys, caplog, mode, files['keras'], str(tmp_path / 'run'), picture)
  assert status == 0, stderr[-2000:]
  total = len(weight_files[3].weights)
  loaded = f'model.weights={files["keras"]}: restored {total} of {total} weight tensors'
  assert loaded in caplog.text, caplog.text[-3000:]
  record = {'score': tmp_path / 'run' / 'score.json',
            'export': tmp_path / 'run' / 'export' / 'saved_model' / 'export.json'}.get(mode)
  if record:  # What the mode writes of the model it used names what was loaded.
    assert loaded in json.loads(record.read_text())['model']
  else:
    assert any(r.getMessage().startswith(('Explained xception (', 'Predicted ')) and loaded in
               r.getMessage() for r in caplog.records), caplog.text[-3000:]
