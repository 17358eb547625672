"""Grad-CAM that explains: the default layer, scores against trimaps, pictures named and sized
as the user's own, and the book's pretrained Xception."""

import json
import os

import keras
import ml_collections
import numpy as np
import pytest
import tensorflow as tf

from configs import xception_imagenet
from errors import ConfigError
from inference import explain as explain_mode
from inference import loading
from interpretability import explain
from interpretability import gradcam
from interpretability import pointing
from modeling import models
from modeling import xception_imagenet as xception_model
from tests import test_models
from tests.conftest import small_config
from training import train

# Every registered segmenter, with the layer the rule picks: its last post-ReLU block below
# full resolution (half the input side in both).
SEGMENTERS = [('book_segmentation', 64, 'decoder_deconv5'), ('xception_unet', 64, 'decoder3_out')]


def test_every_registered_segmenter_has_its_layer_checked():
  assert {name for name, _, _ in SEGMENTERS} == {
      name for name, _, classes in test_models.MODELS if classes == 3}


@pytest.mark.parametrize('name, size, expected', SEGMENTERS)
def test_default_segmentation_layer_is_the_last_main_path_block_below_full_size(name, size,
                                                                                 expected):
  model = models.build_model(ml_collections.ConfigDict({'name': name}), size, 3)
  layer = model.get_layer(gradcam.default_layer(model, segmentation=True))
  assert layer.name == expected
  assert layer.name not in gradcam.shortcut_projections(model)
  assert layer.output.shape[1] == size // 2
  if name == 'xception_unet':  # Its 1x1 projections are found.
    assert {'encoder3_project', 'decoder3_project'} <= gradcam.shortcut_projections(model)


def test_default_classifier_layer_is_what_the_pooling_reads():
  model = models.build_model(ml_collections.ConfigDict({'name': 'mini_xception'}), 64, 2)
  layer = gradcam.default_layer(model, segmentation=False)
  pooling = model.get_layer('pool')
  assert pooling.input is model.get_layer(layer).output
  assert layer not in gradcam.shortcut_projections(model)


def test_pointing_scores_against_hand_built_maps():
  region = np.zeros((40, 60), bool)
  region[:10, :30] = True  # 300 of 2,400 pixels.
  inside = np.zeros((40, 60), np.float32)
  inside[2:8, 5:25] = 1.0
  scores = pointing.region_scores(inside, 3.5, region)
  assert scores == {'max': 3.5, 'energy_in_region': 1.0, 'region_share': 0.125}
  half = np.zeros((40, 60), np.float32)
  half[5, 10] = half[30, 50] = 1.0  # One peak inside, one outside.
  assert pointing.region_scores(half, 1.0, region)['energy_in_region'] == pytest.approx(0.5)
  blank = pointing.region_scores(np.zeros((40, 60)), 0.0, region)
  assert blank['max'] == 0.0 and blank['energy_in_region'] == 0.0
  # A coarse map is resized to the picture first: a 4x6 map lit in the region's cells.
  coarse = np.zeros((4, 6), np.float32)
  coarse[0, :3] = 1.0
  assert 0.8 < pointing.region_scores(coarse, 1.0, region)['energy_in_region'] < 1.0
  summary = pointing.summarize([{'pet': scores}, {'pet': blank}])
  assert summary['pet']['energy_lift'] == pytest.approx((1.0 + 0.0) / 2 / 0.125)
  assert summary['pet']['non_blank'] == 0.5


@pytest.fixture(scope='module')
def trained_unet(tmp_path_factory, synthetic_folder):
  """The Xception U-Net trained briefly on synthetic shapes: (workdir, config)."""
  workdir = str(tmp_path_factory.mktemp('unet'))
  config = small_config(data__source='folder', data__folder=synthetic_folder,
                        data__image_size=64, model__name='xception_unet',
                        model__widths=(16, 32, 64, 128), train__optimizer='adam',
                        train__learning_rate=3e-3, train__epochs=12, train__steps_per_call=3,
                        data__deterministic=True, summaries__explain_every_epochs=12,
                        summaries__explain__num_filters=4,
                        summaries__explain__num_filter_layers=1)
  results = train.train(config, workdir)
  assert results['eval']['iou/pet'] > 0.6, results['eval']  # It has learned the shapes.
  return workdir, config


def test_trained_unet_explains_every_class_and_points_at_the_pet(trained_unet):
  workdir, config = trained_unet
  config = config.copy_and_resolve_references()
  config.summaries.num_images = 13  # Every eval picture, scored at its own size.
  report = explain_mode.run(config, workdir, None)
  assert report['layer'] == gradcam.default_layer(loading.load_model(config, workdir)[0],
                                                  segmentation=True)
  assert report['num_scored'] == 13
  for name in ('pet', 'background', 'outline'):
    assert report['summary'][name]['non_blank'] == 1.0, report['summary']
    assert report['summary'][name]['energy_lift'] > 1.0, report['summary']
  assert report['summary']['pet']['energy_lift'] > 1.5, report['summary']
  # Training logged the same measure at its explain pass.
  tags = {v.tag for p in tf.io.gfile.glob(os.path.join(workdir, 'eval', 'events.*'))
          for e in tf.compat.v1.train.summary_iterator(p) for v in e.summary.value}
  assert {'gradcam/pet/energy_lift', 'gradcam/outline/non_blank'} <= tags


def test_shortcut_projection_is_what_fails_and_is_reported_so(trained_unet):
  """The measure tells a useless layer from a useful one on the same model and pictures."""
  workdir, config = trained_unet
  model, _ = loading.load_model(config, workdir)
  config = config.copy_and_resolve_references()
  config.summaries.num_images = 13
  pictures = loading.named_pictures(config, workdir, None)
  inputs = loading.model_input([p.pixels for p in pictures], 64)
  lifts = {}
  for layer in (gradcam.default_layer(model, True), 'encoder3_project'):
    maps = explain.class_maps(model, inputs, layer, ('pet', 'background', 'outline'), True)
    scored = explain.Explanation({}, {}, layer, maps, {})
    lifts[layer] = pointing.summarize(explain.score(scored, [
        explain.trimap_regions(p.trimap, scored, True) for p in pictures]))['pet']
  default, projection = lifts.values()
  assert default['energy_lift'] > projection['energy_lift'], lifts


def _write_official_layout(folder, name, picture, trimap=None):
  os.makedirs(os.path.join(folder, 'images'), exist_ok=True)
  tf.io.write_file(os.path.join(folder, 'images', name + '.jpg'), tf.io.encode_jpeg(picture))
  if trimap is not None:
    os.makedirs(os.path.join(folder, 'annotations', 'trimaps'), exist_ok=True)
    tf.io.write_file(os.path.join(folder, 'annotations', 'trimaps', name + '.png'),
                     tf.io.encode_png(trimap[..., None]))
  return os.path.join(folder, 'images', name + '.jpg')


def test_explain_mode_names_and_sizes_outputs_after_the_pictures(trained_unet, tmp_path):
  workdir, config = trained_unet
  rng = np.random.default_rng(0)
  wide = rng.integers(0, 255, (50, 90, 3), dtype=np.uint8)
  trimap = np.full((50, 90), 2, np.uint8)
  trimap[10:40, 20:60] = 1  # A pet in the middle, nothing outlined.
  with_trimap = _write_official_layout(str(tmp_path / 'pets'), 'Wide_1', wide, trimap)
  tall = _write_official_layout(str(tmp_path / 'other'), 'Tall_7',
                                rng.integers(0, 255, (80, 40, 3), dtype=np.uint8))
  report = explain_mode.run(config, workdir, f'{with_trimap},{tall}')
  out = os.path.join(workdir, 'explain')
  for name, shape in (('Wide_1', (50, 90, 3)), ('Tall_7', (80, 40, 3))):
    for label in ('pet', 'background', 'outline'):
      overlay = tf.io.decode_png(tf.io.read_file(
          os.path.join(out, f'gradcam_{label}_{name}.png'))).numpy()
      assert overlay.shape == shape
    assert tf.io.gfile.glob(os.path.join(out, f'activations_*_{name}.png'))
  saved = json.load(open(os.path.join(out, 'gradcam.json')))
  assert saved == json.loads(json.dumps(report))
  assert [p['name'] for p in saved['pictures']] == ['Wide_1', 'Tall_7']
  wide_pet = saved['pictures'][0]['classes']['pet']
  assert wide_pet['region_share'] == pytest.approx(30 * 40 / (50 * 90), abs=1e-6)
  assert saved['pictures'][0]['classes']['outline']['region_share'] == 0.0
  assert set(saved['pictures'][1]['classes']['pet']) == {'max'}  # No trimap: no scores.
  assert saved['num_scored'] == 1 and saved['layer'] == report['layer']


def _xception_config(**explain_overrides):
  config = xception_imagenet.get_config()
  config.model.weights = 'random'
  config.data.image_size = 96  # Xception takes any side from 71: fast enough for a test.
  explain_config = config.summaries.explain
  explain_config.activation_layers = ('block1_conv1_act',)
  explain_config.filter_layers = ('block2_sepconv1',)
  explain_config.num_filters = 2
  explain_config.class_index = ''  # No network in tests.
  for key, value in explain_overrides.items():
    explain_config[key] = value
  return config


def test_xception_explains_with_no_training_and_top_classes(tmp_path):
  config = _xception_config()
  picture = _write_official_layout(str(tmp_path / 'p'), 'elephant',
                                   np.random.default_rng(1).integers(0, 255, (120, 160, 3),
                                                                     dtype=np.uint8))
  report = explain_mode.run(config, str(tmp_path / 'run'), picture)
  assert report['layer'] == 'block14_sepconv2_act'
  classes = report['pictures'][0]['classes']
  assert list(classes) == ['top1', 'top2', 'top3']
  assert len({c['class'] for c in classes.values()}) == 3  # Three different class numbers.
  overlay = tf.io.decode_png(tf.io.read_file(
      str(tmp_path / 'run' / 'explain' / 'gradcam_top1_elephant.png'))).numpy()
  assert overlay.shape == (120, 160, 3)
  assert (tmp_path / 'run' / 'explain' / 'filters_block2_sepconv1.png').exists()


def test_xception_weights_file_loads_and_changes_predictions(tmp_path):
  config = _xception_config()
  keras.utils.set_random_seed(1)
  source = models.build_model(config.model, 96, 1000)
  path = str(tmp_path / 'xception.weights.h5')
  source.save_weights(path)
  pictures = np.random.default_rng(2).uniform(0, 255, (2, 96, 96, 3)).astype(np.float32)
  keras.utils.set_random_seed(2)
  fresh = models.build_model(config.model, 96, 1000)
  config.model.weights = path
  loaded = models.build_model(config.model, 96, 1000)
  logits = lambda model: keras.Model(model.input, gradcam.logits_tensor(model))(pictures).numpy()
  expected = logits(source)  # Untrained Xception logits are tiny (~1e-5): compare relatively.
  scale = np.abs(expected).max()
  assert np.abs(logits(loaded) - expected).max() < 1e-3 * scale
  assert np.abs(logits(fresh) - expected).max() > 0.5 * scale
  config.model.weights = str(tmp_path / 'missing.h5')
  with pytest.raises(ConfigError, match="model.weights=.*missing.h5.*no such file.*'random'"):
    models.build_model(config.model, 96, 1000)


def test_xception_imagenet_offline_is_a_clear_config_error(monkeypatch):
  import urllib.error  # pylint: disable=import-outside-toplevel
  from keras.src.utils import file_utils  # pylint: disable=import-outside-toplevel
  weights = os.path.join(os.path.expanduser('~'), '.keras', 'models',
                         'xception_weights_tf_dim_ordering_tf_kernels.h5')
  if os.path.exists(weights):
    pytest.skip('The ImageNet weights are cached here: Keras would not go online.')

  def offline(*args, **kwargs):
    raise urllib.error.URLError('[Errno -2] Name or service not known')
  monkeypatch.setattr(file_utils, 'urlretrieve', offline)
  config = _xception_config()
  config.model.weights = 'imagenet'
  with pytest.raises(ConfigError, match='model.weights=.imagenet.: Keras could not get the '
                                        'ImageNet weights .*path of a weights file'):
    models.build_model(config.model, 299, 1000)
  monkeypatch.setattr(keras.applications.imagenet_utils, 'decode_predictions',
                      lambda *a, **k: offline())
  assert xception_model.imagenet_class_names() is None
  config.summaries.explain.class_index = 'imagenet'
  assert explain_mode.explained_class_names(config)[:2] == ['0', '1']
