"""Activations, filter patterns, Grad-CAM, colours, and the explain/predict/export modes."""

import glob
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from inference import export
from inference import loading
from inference import predict
from inference import predictor
from inference import score
from interpretability import activations
from interpretability import colormaps
from interpretability import filters
from interpretability import gradcam
from modeling import models
from tests.conftest import run_main, small_config
from tests.test_training import _event_tags


def _two_region_image():
  """Channel 0 lit in the top-left quarter (region A), channel 1 in the bottom-right (B)."""
  image = np.zeros((1, 16, 16, 3), np.float32)
  image[0, :8, :8, 0] = 1.0
  image[0, 8:, 8:, 1] = 1.0
  return image


def _identity_features(x):
  """A 1x1 conv with fixed weights: feature k is input channel k (evidence stays in place)."""
  layer = keras.layers.Conv2D(2, 1, activation='relu', name='features')
  y = layer(x)
  layer.set_weights([np.eye(3, 2, dtype=np.float32)[None, None], np.zeros(2, np.float32)])
  return y


def _peak(heatmap):
  return np.unravel_index(np.argmax(heatmap), heatmap.shape)


def test_gradcam_classification_localises_the_evidence():
  inputs = keras.Input((16, 16, 3))
  pooled = keras.layers.GlobalAveragePooling2D()(_identity_features(inputs))
  dense = keras.layers.Dense(2, name='logits')
  model = keras.Model(inputs, keras.layers.Softmax()(dense(pooled)))
  dense.set_weights([np.eye(2, dtype=np.float32), np.zeros(2, np.float32)])
  image = _two_region_image()
  (heat_a, _), classes = gradcam.gradcam(model, image, class_index=0)
  (heat_b, _), _ = gradcam.gradcam(model, image, class_index=1)
  assert gradcam.default_layer(model, segmentation=False) == 'features'
  assert classes.tolist() == [0]
  ya, xa = _peak(heat_a[0])
  yb, xb = _peak(heat_b[0])
  assert ya < 8 and xa < 8 and yb >= 8 and xb >= 8
  assert heat_a.max() == pytest.approx(1.0) and heat_a.min() >= 0


def test_seg_gradcam_localises_each_class():
  inputs = keras.Input((16, 16, 3))
  logits_layer = keras.layers.Conv2D(2, 1, name='logits')
  logits = logits_layer(_identity_features(inputs))
  model = keras.Model(inputs, keras.layers.Softmax(dtype='float32')(logits))
  logits_layer.set_weights([np.eye(2, dtype=np.float32)[None, None], np.zeros(2, np.float32)])
  heatmaps, peaks = gradcam.seg_gradcam(model, _two_region_image())
  assert peaks.shape == (1, 2) and np.all(peaks > 0)
  assert heatmaps.shape == (1, 2, 16, 16)
  ya, xa = _peak(heatmaps[0, 0])
  yb, xb = _peak(heatmaps[0, 1])
  assert ya < 8 and xa < 8 and yb >= 8 and xb >= 8
  everywhere = gradcam.seg_gradcam(model, _two_region_image(), pixels='all').maps
  assert np.all(np.isfinite(everywhere))


def test_activation_grids_shape_dtype_zero_channels_and_one_pass():
  calls = []

  class Counting(keras.layers.Layer):
    def call(self, x):
      calls.append(1)
      return x

  inputs = keras.Input((10, 10, 3))
  x = Counting()(inputs)
  conv = keras.layers.Conv2D(20, 3, padding='same', name='conv_a')
  x = conv(x)
  x = keras.layers.MaxPooling2D(2, name='pool')(x)
  model = keras.Model(inputs, keras.layers.Conv2D(4, 1, name='conv_b')(x))
  kernel, bias = conv.get_weights()
  kernel[..., 5] = 0.0  # Channel 5 is all zero for every input.
  bias[5] = 0.0
  conv.set_weights([kernel, bias])
  image = np.random.default_rng(0).uniform(0, 255, (10, 10, 3)).astype(np.float32)
  calls.clear()
  grids = activations.activation_grids(model, image)
  assert len(calls) == 1
  assert set(grids) == {'conv_a', 'pool', 'conv_b'}
  grid = grids['conv_a']
  assert grid.dtype == np.uint8 and grid.shape == (2 * 11 - 1, 16 * 11 - 1)
  assert not grid[0:10, 5 * 11:5 * 11 + 10].any()  # The zero channel's tile stays zero.
  assert grid[0:10, 0:10].any()
  assert grids['conv_b'].shape == (5, 4 * 6 - 1)


def test_filter_patterns_excite_every_filter_in_one_call():
  model = models.build_model(small_config().model, 32, 3)
  indices = np.arange(12)
  patterns = filters.filter_patterns(model, 'encoder_conv2', indices)
  assert patterns.shape == (12, 32, 32, 3)
  start = tf.random.stateless_uniform(patterns.shape, [0, 0], minval=0.4, maxval=0.6).numpy()
  before = filters.mean_filter_activation(model, 'encoder_conv2', start, indices)
  after = filters.mean_filter_activation(model, 'encoder_conv2', patterns, indices)
  assert np.all(after > before + 0.05), (before, after)  # Typically +1 to +5.
  assert np.median(after - before) > 1.0, (before, after)
  grid = filters.pattern_grid(patterns)
  tile = 32 - 2 * (32 * 25 // 200)
  assert grid.shape == (2 * tile + 5, 8 * tile + 7 * 5, 3) and grid.dtype == np.uint8


def test_colormap_and_blend_values():
  # Dark blue, green in the middle (a 256-entry table: +-2 around 0.5), dark red.
  np.testing.assert_allclose(colormaps.jet(np.array([0.0, 0.5, 1.0])),
                             [[0, 0, 128], [128, 255, 128], [128, 0, 0]], atol=2)
  image = np.full((1, 1, 3), 100, np.uint8)
  np.testing.assert_array_equal(colormaps.blend(image, np.full((1, 1, 3), 200), 0.4), [[[140] * 3]])
  overlay = colormaps.heatmap_overlay(image, np.ones((1, 1)), alpha=0.4)
  np.testing.assert_array_equal(overlay, [[[111, 60, 60]]])  # 0.6 * 100 + 0.4 * (128, 0, 0)


def test_mixed_float16_heatmaps_match_float32():
  config = small_config()
  model32 = models.build_model(config.model, 32, 3, 'float32')
  model16 = models.build_model(config.model, 32, 3, 'mixed_float16')
  model16.set_weights(model32.get_weights())
  images = np.random.default_rng(3).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
  heat32 = gradcam.seg_gradcam(model32, images, pixels='all').maps
  heat16 = gradcam.seg_gradcam(model16, images, pixels='all').maps
  assert np.all(np.isfinite(heat16))
  assert np.abs(heat32 - heat16).mean() < 0.02


def test_training_writes_explain_summaries_and_explain_mode_writes_pngs(trained_run, tmp_path):
  workdir, results, config = trained_run
  assert results['explain_seconds'] > 0
  tags = _event_tags(os.path.join(workdir, 'eval'))
  for prefix in ('activations/', 'filters/', 'gradcam/'):
    assert any(t.startswith(prefix) and kind == 'images' for t, kind in tags.items()), prefix
  assert {'gradcam/pet', 'gradcam/background', 'gradcam/outline'} <= set(tags)

  explained = run_main('--config=configs/seg.py', f'--workdir={workdir}', '--mode=explain',
                       '--config.data.source=synthetic', '--config.data.image_size=32',
                       '--config.summaries.explain.num_filters=8', f'--images={tmp_path}')
  assert explained.returncode == 2 and 'matches no picture' in explained.stderr
  pictures = sorted(glob.glob(os.path.join(config.data.folder, 'images', '*.jpg')))[:2]
  assert pictures
  explained = run_main('--config=configs/seg.py', f'--workdir={workdir}', '--mode=explain',
                       '--config.data.image_size=32', '--config.summaries.explain.num_filters=8',
                       f'--images={",".join(pictures)}')
  assert explained.returncode == 0, explained.stderr[-2000:]
  pngs = glob.glob(os.path.join(workdir, 'explain', '*.png'))
  kinds = {os.path.basename(p).split('_')[0] for p in pngs}
  assert kinds == {'activations', 'filters', 'gradcam'}
  for path in pngs:
    picture = tf.io.decode_png(tf.io.read_file(path)).numpy()
    assert picture.std() > 1.0, path  # Not blank.


def test_no_model_and_missing_picture_are_clear(tmp_path):
  config = small_config()
  with pytest.raises(Exception, match='No model in --workdir'):
    loading.load_model(config, str(tmp_path))
  with pytest.raises(Exception, match='does not exist'):
    loading.picture_paths(str(tmp_path / 'cat.jpg'))
  (tmp_path / 'notes.jpg').write_text('not a picture')
  with pytest.raises(Exception, match='is not a picture'):
    loading.read_picture(str(tmp_path / 'notes.jpg'))


def test_predict_masks_match_the_shapes_and_export_round_trips(trained_run, tmp_path):
  workdir, _, config = trained_run
  folder = config.data.folder
  names = [line.split()[0] for line in open(os.path.join(folder, 'annotations', 'test.txt'))]
  pictures = [os.path.join(folder, 'images', n + '.jpg') for n in names]
  written = predict.run(config, workdir, ','.join(pictures), str(tmp_path / 'pred'))
  assert len(written) == len(pictures)
  intersection = union = 0
  for name, mask_path in zip(names, written):
    mask = tf.io.decode_png(tf.io.read_file(mask_path)).numpy()[..., 0]
    trimap = tf.io.decode_png(tf.io.read_file(
        os.path.join(folder, 'annotations', 'trimaps', name + '.png'))).numpy()[..., 0]
    assert mask.shape == trimap.shape
    assert set(np.unique(mask)) <= {0, 1, 2}
    pet, truth = mask == 0, trimap == 1
    intersection += np.sum(pet & truth)
    union += np.sum(pet | truth)
  assert intersection / union > 0.5

  export_dir = export.run(config, workdir, str(tmp_path / 'export'))
  loaded = tf.saved_model.load(export_dir)
  picture = loading.read_picture(pictures[0])
  served = loaded.serve(tf.constant(picture[None]))['masks'].numpy()[0]
  model, _ = loading.load_model(config, workdir)
  probabilities = model(tf.image.resize(picture[None].astype(np.float32), (32, 32)))
  expected = tf.image.resize(np.argmax(probabilities, -1)[..., None].astype(np.uint8),
                             picture.shape[:2], method='nearest').numpy()[0, ..., 0]
  assert served.shape == picture.shape[:2]
  np.testing.assert_array_equal(served, expected)


def _with_test_time_averaging(config):
  config = config.copy_and_resolve_references()
  config.predict.sizes, config.predict.flip = (32, 40), True
  return config


def test_flip_averaging_makes_predictions_mirror_symmetric(trained_run):
  """Averaging a picture with its mirror image: the mirrored picture's probabilities are the
  mirror of the picture's (a forgotten flip back would break this), at every test-time side."""
  workdir, _, config = trained_run
  config = _with_test_time_averaging(config)
  model, _ = loading.load_model(config, workdir)
  averaging = predictor.Predictor(model, config)
  picture = np.random.default_rng(4).uniform(0, 255, (1, 50, 70, 3)).astype(np.float32)
  resize = lambda pictures: (lambda size: tf.image.resize(pictures, (size, size)))
  straight = averaging.probabilities(resize(picture)).numpy()
  mirrored = averaging.probabilities(resize(picture[:, :, ::-1])).numpy()
  assert straight.shape == (1, 40, 40, 3)
  np.testing.assert_allclose(mirrored[:, :, ::-1], straight, atol=1e-5)
  single = predictor.Predictor(model, trained_run[2]).probabilities(resize(picture))
  assert np.abs(tf.image.resize(single, (40, 40)).numpy() - straight).max() > 1e-3


def test_score_is_what_predicted_masks_score_and_export_serves_them(trained_run, tmp_path):
  workdir, _, config = trained_run
  config = _with_test_time_averaging(config)
  folder = config.data.folder
  names = [line.split()[0] for line in open(os.path.join(folder, 'annotations', 'test.txt'))]
  pictures = [os.path.join(folder, 'images', n + '.jpg') for n in names]
  written = predict.run(config, workdir, ','.join(pictures), str(tmp_path / 'pred'))
  confusion = np.zeros((3, 3))
  for name, mask_path in zip(names, written):
    mask = tf.io.decode_png(tf.io.read_file(mask_path)).numpy()[..., 0]
    trimap = tf.io.decode_png(tf.io.read_file(
        os.path.join(folder, 'annotations', 'trimaps', name + '.png'))).numpy()[..., 0] - 1
    np.add.at(confusion, (trimap.ravel(), mask.ravel()), 1)
  iou = np.diag(confusion) / (confusion.sum(0) + confusion.sum(1) - np.diag(confusion))
  scored = score.run(config, workdir)
  assert scored['predict_sizes'] == [32, 40] and scored['predict_flip']
  np.testing.assert_allclose(scored['mean_iou'], iou.mean(), atol=1e-4)
  assert json.load(open(os.path.join(workdir, 'score.json')))['mean_iou'] == scored['mean_iou']

  loaded = tf.saved_model.load(export.run(config, workdir, str(tmp_path / 'export')))
  picture = loading.read_picture(pictures[0])
  served = loaded.serve(tf.constant(picture[None]))['masks'].numpy()[0]
  np.testing.assert_array_equal(served, tf.io.decode_png(tf.io.read_file(written[0])).numpy()[..., 0])
