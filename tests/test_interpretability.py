"""Activations, filter patterns, Grad-CAM and its default layer, pointing scores, colours:
the pure functions of interpretability/, on hand-built and trained models."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from inference import loading
from interpretability import activations
from interpretability import colormaps
from interpretability import explanation as explain_lib
from interpretability import filters
from interpretability import gradcam
from interpretability import pointing
from modeling import models
import specs
import tasks
from tests import test_models
from tests.conftest import data_spec, model_config, small_config


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
  assert gradcam.default_layer(model, tasks.CLASSIFICATION) == 'features'
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

def _mean_filter_activation(model, layer_name: str, images: np.ndarray, indices) -> np.ndarray:
  """Each image's mean activation of its own filter over the region the gradient ascent
  scores (the border it leaves out may fall while the rest rises)."""
  extract = filters._feature_extractor(model, layer_name)  # pylint: disable=protected-access
  inner = filters.scored_region(extract(tf.constant(images, tf.float32)).numpy())
  return inner.mean(axis=(1, 2))[np.arange(len(images)), np.asarray(indices)]


def test_filter_patterns_excite_every_filter_in_one_call():
  keras.utils.set_random_seed(0)  # Not whatever the worker's earlier tests left.
  model = models.build_model(small_config().model, 32, 3)
  indices = np.arange(12)
  patterns = filters.filter_patterns(model, 'encoder_conv2', indices)
  assert patterns.shape == (12, 32, 32, 3)
  start = tf.random.stateless_uniform(patterns.shape, [0, 0], minval=0.4, maxval=0.6).numpy()
  before = _mean_filter_activation(model, 'encoder_conv2', start, indices)
  after = _mean_filter_activation(model, 'encoder_conv2', patterns, indices)
  assert np.all(after > before + 0.05), (before, after)  # Typically +2 to +5.
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

# Every registered segmenter, with the layer the rule picks: its last post-ReLU block below
# full resolution (half the input side in both).
SEGMENTERS = [('book_segmentation', 64, 'decoder_deconv5'), ('xception_unet', 64, 'decoder3_out'),
              ('mobilenet_v2_unet', 64, 'decoder4_relu'), ('unet', 64, 'decoder4b_relu')]
# The zoo's keras-hub bodies are one nested layer each: the rule reads the body's output (the
# last feature map before the class scores) at the side it has.
ZOO_BODIES = [('deeplabv3plus', 'resnet18', 'deeplab', 64), ('segformer', 'mit_b0', 'segformer', 16)]

def test_every_registered_segmenter_has_its_layer_checked():
  assert {name for name, _, _ in SEGMENTERS} | {name for name, *_ in ZOO_BODIES} == {
      name for name, _, classes in test_models.MODELS if classes == 3}

@pytest.mark.parametrize('name, backbone, expected, side', ZOO_BODIES)
def test_zoo_bodies_are_read_not_their_class_scores(name, backbone, expected, side):
  model = models.build_model(model_config(name, backbone=backbone), 64, 3)
  layer = gradcam.default_layer(model, tasks.SEGMENTATION)
  assert layer == expected
  feature_map, _ = gradcam._grad_model(model, layer)(np.zeros((1, 64, 64, 3), np.float32))  # pylint: disable=protected-access
  assert feature_map.shape[1] == side and feature_map.shape[-1] > 3

@pytest.mark.parametrize('name, size, expected', SEGMENTERS)
def test_default_segmentation_layer_is_the_last_main_path_block_below_full_size(name, size,
                                                                                 expected):
  model = models.build_model(model_config(name), size, 3)  # Its real blocks and names.
  layer = model.get_layer(gradcam.default_layer(model, tasks.SEGMENTATION))
  assert layer.name == expected
  assert layer.name not in gradcam.shortcut_projections(model)
  assert layer.output.shape[1] == size // 2
  if name == 'xception_unet':  # Its 1x1 projections are found.
    assert {'encoder3_project', 'decoder3_project'} <= gradcam.shortcut_projections(model)

def test_default_classifier_layer_is_what_the_pooling_reads():
  model = models.build_model(model_config('mini_xception'), 64, 2)
  layer = gradcam.default_layer(model, tasks.CLASSIFICATION)
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

@pytest.mark.slow
def test_shortcut_projection_is_what_fails_and_is_reported_so(trained_unet):
  """The measure tells a useless layer from a useful one on the same model and pictures."""
  workdir, config = trained_unet
  model, _ = loading.load_model(specs.describe(config).network, workdir)
  pictures = loading.named_pictures(data_spec(config), workdir, None, 13)
  inputs = loading.model_input([p.pixels for p in pictures], 64)
  lifts = {}
  for layer in (gradcam.default_layer(model, tasks.SEGMENTATION), 'encoder3_project'):
    maps = explain_lib.class_maps(model, inputs, layer, ('pet', 'background', 'outline'),
                                      tasks.SEGMENTATION)
    scored = explain_lib.Explanation({}, {}, layer, maps, {})
    lifts[layer] = pointing.summarize(explain_lib.score(scored, [
        explain_lib.mask_regions(p.mask, scored, tasks.SEGMENTATION) for p in pictures]))['pet']
  default, projection = lifts.values()
  assert default['energy_lift'] > projection['energy_lift'], lifts
