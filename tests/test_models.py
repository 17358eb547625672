"""The model library: book parameter counts, block shapes, every model under both
precisions and two replicas, size errors, the classification task end to end, and Keras'
ImageNet Xception with its weights from a file or (offline) a clear error."""

import glob
import os

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

from configs import xception_imagenet
from errors import ConfigError
from inference import explain as explain_mode
from inference import predict
from inference import score
from interpretability import gradcam
from modeling import blocks
from modeling import models
from modeling import xception_imagenet as xception_model
from tests.conftest import model_config, small_config
from records import checkpoints
from training import loop
from training import optimizers
from training import runtime
from training import steps as steps_lib

# (name, two input sizes, classes) for every registered model.
MODELS = [('book_segmentation', (32, 48), 3), ('xception_unet', (32, 64), 3),
          ('residual_convnet', (32, 40), 2), ('mini_xception', (36, 64), 2),
          ('xception', (71, 80), 5), ('mobilenet_v2_unet', (32, 64), 3),
          ('unet', (32, 64), 3), ('deeplabv3plus', (32, 64), 3), ('segformer', (64, 96), 3)]
# Trained on 2 replicas in mixed_float16 elsewhere: by
# test_frozen_encoder_stays_put_then_trains_under_mixed_precision_on_two_replicas below.
TRAINED_ELSEWHERE = ('mobilenet_v2_unet',)


def zoo_model_config(name):
  """model_config(name) at its family's test scale (registry.Family.test_scale): the same
  code at a fraction of its layers; the real sizes build in test_book_parameter_counts,
  test_conv_bn_and_separable_blocks_follow_their_patterns and test_zoo's backbone test."""
  return model_config(name, **(models.family(name).test_scale if name in models.names()
                               else {}))


def test_every_registered_model_is_covered():
  assert sorted(models.names()) == sorted(name for name, _, _ in MODELS)


def test_book_parameter_counts():
  assert models.build_model(zoo_model_config('book_segmentation'), 200, 3).count_params() == 2_880_643
  assert models.build_model(zoo_model_config('residual_convnet'), 32, 2).count_params() == 297_697


@pytest.mark.parametrize('pooling, filters, expected', [
    (False, 8, (None, 16, 16, 8)),  # Same width: identity shortcut.
    (False, 24, (None, 16, 16, 24)),  # Wider: 1x1 projection.
    (True, 24, (None, 8, 8, 24)),  # Pooled: strided 1x1 projection.
])
def test_residual_block_variants(pooling, filters, expected):
  inputs = keras.Input((16, 16, 8))
  outputs = blocks.residual_block(inputs, filters, pooling=pooling, name='r')
  model = keras.Model(inputs, outputs)
  assert model.output_shape == expected
  has_projection = any(l.name == 'r_project' for l in model.layers)
  assert has_projection == (pooling or filters != 8)
  if pooling:
    assert model.get_layer('r_project').strides == (2, 2)


def test_conv_bn_and_separable_blocks_follow_their_patterns():
  inputs = keras.Input((16, 16, 3))
  x = blocks.conv_bn_act(inputs, 8, strides=2, name='c')
  x = blocks.sep_bn_act(x, 16, name='s')
  model = keras.Model(inputs, x)
  names = [l.name for l in model.layers[1:]]
  assert names == ['c_conv', 'c_bn', 'c_relu', 's_sepconv', 's_bn', 's_relu']
  assert not model.get_layer('c_conv').use_bias and not model.get_layer('s_sepconv').use_bias
  assert isinstance(model.get_layer('s_sepconv'), keras.layers.SeparableConv2D)
  unet = models.build_model(model_config('xception_unet'), 32, 3)  # Its real widths.
  convs = [l for l in unet.layers if type(l) is keras.layers.Conv2D]  # pylint: disable=unidiomatic-typecheck
  separable = [l for l in unet.layers if isinstance(l, keras.layers.SeparableConv2D)]
  assert len(separable) >= 14  # Everything past the stem is separable but 1x1 projections.
  assert all(l.kernel_size == (1, 1) for l in convs if l.name not in ('stem_conv', 'logits'))
  for layer in unet.layers:  # A conv that feeds batch norm has no bias.
    if isinstance(layer, keras.layers.BatchNormalization):
      source = layer.input._keras_history.operation  # pylint: disable=protected-access
      assert not source.use_bias, source.name


@pytest.mark.slow
@pytest.mark.parametrize('name, sizes, classes', MODELS)
def test_models_build_run_in_both_precisions_and_train_on_two_replicas(name, sizes, classes):
  """Every model at its first size in float32 and its second in mixed_float16 (sizes and
  precisions are separate code paths), then a few float16 steps on 2 replicas at the first
  size (TRAINED_ELSEWHERE: in tests that also resume them)."""
  for size, precision in zip(sizes, ('float32', 'mixed_float16')):
    model = models.build_model(zoo_model_config(name), size, classes, precision)
    output = model(tf.zeros([2, size, size, 3]))
    assert output.dtype == tf.float32
    assert np.all(np.isfinite(output.numpy()))
  if name in TRAINED_ELSEWHERE:
    return
  strategy = runtime.create_strategy(small_config(runtime__cpu_devices=2).runtime)
  assert strategy.num_replicas_in_sync == 2
  size = sizes[0]
  with strategy.scope():
    model = models.build_model(zoo_model_config(name), size, classes, 'mixed_float16')
    optimizer = optimizers.make_optimizer(small_config().train, 'mixed_float16')
    optimizer.build(model.trainable_variables)
  label = (tf.zeros([4, size, size, 1], tf.uint8) if classes == 3
           else tf.constant([0, 1, 0, 1], tf.int32))
  data = tf.data.Dataset.from_tensors({'image': tf.random.uniform([4, size, size, 3], 0, 255),
                                       'label': label}).repeat()
  trainer = steps_lib.Steps(strategy, model, optimizer,
                            global_batch_size=8, num_classes=classes)
  before = [v.numpy() for v in model.trainable_variables]
  batches = iter(strategy.experimental_distribute_dataset(data.unbatch().batch(8)))
  # Up to six steps, one at a time, until the weights move: float16's dynamic loss scale skips
  # the steps whose gradients overflow, halving the scale each time (DeepLabV3+ overflows at
  # the initial 2^15 two to four times); the rest move at the first.
  for steps in range(1, 7):
    loss_sum, count, *_ = trainer.train_steps(batches, tf.constant(1))
    assert count == 8 and np.isfinite(float(loss_sum)), (steps, float(loss_sum))
    if any(not np.array_equal(a, b.numpy()) for a, b in zip(before, model.trainable_variables)):
      break
  else:
    raise AssertionError(f'{name}: six float16 steps on 2 replicas left every weight as built')


def test_sizes_a_model_cannot_take_fail_clearly():
  with pytest.raises(ConfigError, match='xception_unet takes data.image_size that is a '
                                        'multiple of 16 .*: 100 is not; use 96 or 112'):
    models.build_model(zoo_model_config('xception_unet'), 100, 3)
  with pytest.raises(ConfigError, match="Unknown model.name='unet9000'"):
    models.build_model(zoo_model_config('unet9000'), 32, 3)


def test_policy_does_not_leak_out_of_the_build():
  models.build_model(zoo_model_config('book_segmentation'), 32, 3, 'mixed_bfloat16')
  assert keras.config.dtype_policy().name == 'float32'


@pytest.mark.slow
def test_cls_config_learns_species_on_synthetic_data(tmp_path, synthetic_folder):
  from configs import cls  # pylint: disable=import-outside-toplevel
  config = cls.get_config()
  config.data.source, config.data.folder = 'folder', synthetic_folder
  config.data.image_size = 48
  config.train.global_batch_size = config.eval.global_batch_size = 16
  config.train.optimizer, config.train.weight_decay = 'adam', 0.0
  config.train.schedule = 'constant'  # 120 steps: no room for warm-up and decay.
  config.train.epochs = 10
  config.train.steps_per_epoch = 12  # 48 pictures, seen 4 times an epoch.
  config.model.bn_momentum = 0.8  # Statistics that settle within a 30-step run.
  config.runtime.cpu_devices = 1  # Learning, not distribution: one replica.
  config.summaries.explain_every_epochs = 10
  config.summaries.explain.num_filters = 8
  results = loop.train(config, str(tmp_path))
  assert results['train']['accuracy'] > 0.8, results['train']
  assert results['eval']['num_examples'] == 8  # The validation split.
  accuracies = []
  for path in glob.glob(os.path.join(tmp_path, 'eval', 'events.*')):
    for event in tf.compat.v1.train.summary_iterator(path):
      accuracies += [float(tf.make_ndarray(v.tensor)) for v in event.summary.value
                     if v.tag == 'accuracy']
  assert max(accuracies) > 0.75, accuracies
  assert 'gradcam/cat' in {v.tag for p in glob.glob(os.path.join(tmp_path, 'eval', 'events.*'))
                           for e in tf.compat.v1.train.summary_iterator(p)
                           for v in e.summary.value}
  # --mode=score: the best model's accuracy on the test list, as predict answers, per breed.
  scored = score.run(config, str(tmp_path))
  lines = [line.split() for line in open(os.path.join(synthetic_folder, 'annotations',
                                                      'test.txt'))]
  pictures = [os.path.join(synthetic_folder, 'images', name + '.jpg') for name, *_ in lines]
  predict.run(config, str(tmp_path), ','.join(pictures), str(tmp_path / 'predict'))
  answers = [row.split(',')[1] for row in
             open(tmp_path / 'predict' / 'predictions.csv').read().splitlines()[1:]]
  right = {}
  for (name, _, species, _), answer in zip(lines, answers):
    right.setdefault(name.rsplit('_', 1)[0], []).append(answer == ('cat', 'dog')[int(species) - 1])
  assert scored['num_pictures'] == 13
  np.testing.assert_allclose(scored['accuracy'], np.mean(sum(right.values(), [])), atol=1e-4)
  for breed, hits in right.items():
    np.testing.assert_allclose(scored['per_group'][breed]['accuracy'], np.mean(hits), atol=1e-4)


def xception_test_config(**explain_overrides):
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

@pytest.mark.slow
def test_xception_weights_file_loads_and_changes_predictions(tmp_path):
  config = xception_test_config()
  keras.utils.set_random_seed(1)
  source = models.build_model(config.model, 96, 1000)
  path = str(tmp_path / 'xception.weights.h5')
  source.save_weights(path)
  pictures = np.random.default_rng(2).uniform(0, 255, (2, 96, 96, 3)).astype(np.float32)
  keras.utils.set_random_seed(2)
  fresh = models.build_model(config.model, 96, 1000)
  config.model.weights = path
  loaded = models.build_model(config.model, 96, 1000)
  models.load_initial_weights(loaded, config.model)
  logits = lambda model: keras.Model(model.input, gradcam.logits_tensor(model))(pictures).numpy()
  expected = logits(source)  # Untrained Xception logits are tiny (~1e-5): compare relatively.
  scale = np.abs(expected).max()
  assert np.abs(logits(loaded) - expected).max() < 1e-3 * scale
  assert np.abs(logits(fresh) - expected).max() > 0.5 * scale
  config.model.weights = str(tmp_path / 'missing.h5')
  with pytest.raises(ConfigError, match="model.weights=.*missing.h5.*no such file.*'random'"):
    models.load_initial_weights(fresh, config.model)

def _saved_encoder(path: str, alpha: float = 0.5, seed: int = 3) -> keras.Model:
  """A MobileNetV2 encoder on its own, with seeded random weights saved to `path`: what a
  user saves from the same encoder (random moving statistics too, so that loading shows)."""
  keras.utils.set_random_seed(seed)
  encoder = keras.applications.MobileNetV2(include_top=False, weights=None, alpha=alpha,
                                           input_shape=(64, 64, 3))
  rng = np.random.default_rng(seed)
  for variable in encoder.non_trainable_variables:
    low, high = (0.5, 1.5) if 'variance' in variable.path else (-0.1, 0.1)
    variable.assign(rng.uniform(low, high, variable.shape))
  encoder.save_weights(path)
  return encoder


def _mobilenet_config(encoder_weights: str, **overrides):
  return model_config('mobilenet_v2_unet', **{'alpha': 0.5, 'weights': encoder_weights,
                                             'decoder_widths': (64, 32, 32, 16), **overrides})


@pytest.mark.slow
def test_mobilenet_encoder_weights_from_a_file_load_and_wrong_ones_are_clear(tmp_path):
  path = str(tmp_path / 'encoder.weights.h5')
  encoder = _saved_encoder(path)
  model = _loaded(_mobilenet_config(path))
  names = {layer.name for layer in model.layers}
  shared = [layer for layer in encoder.layers if layer.name in names and layer.weights]
  assert len(shared) > 100
  for layer in shared:
    for got, saved in zip(model.get_layer(layer.name).weights, layer.weights):
      np.testing.assert_array_equal(got.numpy(), saved.numpy())
  assert model.get_layer('block_16_project').output.shape[1:3] == (2, 2)  # 1/32 of the side.
  assert model.output_shape == (None, 64, 64, 3)
  # Pretrained batch norm stays in its statistics (inference mode) for good; random trains.
  assert not any(l.trainable for l in model.layers if isinstance(l, keras.layers.BatchNormalization)
                 and not l.name.startswith('decoder'))
  random = models.build_model(_mobilenet_config('random'), 64, 3)
  assert random.get_layer('bn_Conv1').trainable
  with pytest.raises(ConfigError, match='model.weights=.*none of its weights fits') as wrong:
    _loaded(_mobilenet_config(path, alpha=1.0))
  assert '\n' not in str(wrong.value) and len(str(wrong.value)) < 800  # Not Keras' object list.
  keras_h5 = str(tmp_path / 'encoder.h5')
  save_keras_h5(encoder, keras_h5)
  with pytest.raises(ConfigError, match='model.weights=.*does not fit this network') as wrong:
    _loaded(_mobilenet_config(keras_h5, alpha=1.0))
  assert '\n' not in str(wrong.value) and len(str(wrong.value)) < 800
  from_keras_h5 = _loaded(_mobilenet_config(keras_h5))
  for layer in shared:
    for got, saved in zip(from_keras_h5.get_layer(layer.name).weights, layer.weights):
      np.testing.assert_array_equal(got.numpy(), saved.numpy())
  with pytest.raises(ConfigError, match="model.weights=.*no such file.*'random'"):
    _loaded(_mobilenet_config(str(tmp_path / 'missing.h5')))


def save_keras_h5(network: keras.Model, path: str) -> None:
  """Keras' own (legacy) .h5 format, as its ImageNet files are written."""
  from keras.src.legacy.saving import legacy_h5_format  # pylint: disable=import-outside-toplevel
  with h5py.File(path, 'w') as f:
    legacy_h5_format.save_weights_to_hdf5_group(f, network)


def _loaded(config, size: int = 64) -> keras.Model:
  """The model as a new run starts it: built, then model.weights loaded."""
  model = models.build_model(config, size, 3)
  models.load_initial_weights(model, config)
  return model


@pytest.mark.slow
def test_frozen_encoder_stays_put_then_trains_under_mixed_precision_on_two_replicas(
    tmp_path, synthetic_folder):
  """model.freeze_encoder_epochs=1 of 2: after epoch 1 the encoder holds the file's weights
  while the decoder moved; after epoch 2 (resumed) the encoder moved too, except the
  pretrained batch norm's statistics and scales."""
  path = str(tmp_path / 'encoder.weights.h5')
  encoder = _saved_encoder(path)
  config = small_config(data__source='folder', data__folder=synthetic_folder,
                        data__image_size=32, train__optimizer='adamw',
                        runtime__precision='mixed_float16', summaries__explain_every_epochs=0,
                        train__ema_decay=0.5, train__steps_per_call=4, runtime__cpu_devices=2)
  config.model = _mobilenet_config(path, freeze_encoder_epochs=1, bn_momentum=0.9,
                                   sync_batch_norm=False)
  workdir = str(tmp_path / 'run')
  keras.utils.set_random_seed(config.seed)
  initial = _loaded(config.model, 32)

  def weights_after(epochs):
    config.train.epochs = epochs
    loop.train(config, workdir, evaluate=False)
    model = models.build_model(config.model, 32, 3)
    checkpoint = tf.train.Checkpoint(model=checkpoints.tracked_model(model))
    checkpoint.restore(tf.train.latest_checkpoint(os.path.join(workdir, 'checkpoints'))
                       ).expect_partial().assert_existing_objects_matched()
    return model

  def moved(model, name):
    return any(not np.array_equal(a.numpy(), b.numpy()) for a, b in
               zip(model.get_layer(name).weights, initial.get_layer(name).weights))

  after_one = weights_after(1)
  assert not any(moved(after_one, n) for n in ('Conv1', 'block_6_depthwise', 'block_16_expand'))
  assert moved(after_one, 'decoder1_upconv') and moved(after_one, 'logits')
  after_two = weights_after(2)
  assert moved(after_two, 'Conv1') and moved(after_two, 'block_6_depthwise')
  assert not moved(after_two, 'bn_Conv1')  # Pretrained batch norm never trains.
  np.testing.assert_array_equal(after_two.get_layer('bn_Conv1').moving_mean.numpy(),
                                encoder.get_layer('bn_Conv1').moving_mean.numpy())


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
  config = xception_test_config()
  config.model.weights = 'imagenet'
  with pytest.raises(ConfigError, match='model.weights=.imagenet.: Keras could not get the '
                                        'ImageNet weights .*path of a weights file'):
    models.load_initial_weights(models.build_model(config.model, 299, 1000), config.model)
  with pytest.raises(ConfigError, match='model.weights=.imagenet.: Keras could not get '
                                        'the ImageNet weights .*path of a weights file'):
    _loaded(_mobilenet_config('imagenet'))
  monkeypatch.setattr(keras.applications.imagenet_utils, 'decode_predictions',
                      lambda *a, **k: offline())
  assert xception_model.imagenet_class_names() is None
  assert explain_mode.explained_class_names(config.data.class_names, 'imagenet')[:2] == ['0', '1']
