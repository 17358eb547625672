"""The model zoo (keras-hub families and backbones) and model.weights: every backbone builds
offline, each family trains in mixed precision (on 2 replicas: test_models), resumes and
serves, weights carry across runs and from keras-hub preset folders (with their image
converter), fine-tuning controls, and the one-line errors."""

import os
import time
from typing import NamedTuple

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

from errors import ConfigError
from inference import explain as explain_mode
from inference import export
from inference import loading
from inference import predict
from modeling import backbones
from modeling import models
from modeling import weights as weights_lib
from tests.conftest import main_in_process, model_config, small_config
from records import checkpoints
from training import loop
from training import optimizers
from training import steps as steps_lib

# Each family at its test scale (registry.Family.test_scale; the real backbones build in
# test_every_backbone_builds_offline_with_random_weights_and_a_pyramid_to_1_32), with the
# precision it trains in. Gradient accumulation is the same code for every model:
# test_multiworker's two-worker run trains the zoo U-Net with it (and with synchronized batch
# norm, clipping and EMA).
FAMILIES = {'unet': 'mixed_float16', 'deeplabv3plus': 'mixed_bfloat16',
            'segformer': 'mixed_float16'}


def _zoo_config(folder, name, **overrides):
  scale = {f'model__{field}': value for field, value in models.family(name).test_scale.items()}
  return small_config(data__source='folder', data__folder=folder, data__image_size=64,
                      model__name=name, train__optimizer='adam',
                      summaries__num_images=1, summaries__explain__num_filters=2,
                      summaries__explain__num_filter_layers=1,
                      summaries__explain__num_activation_layers=1, **scale, **overrides)


def _variables_by_key(model):
  return {key: v.numpy() for key, v in weights_lib.variable_keys(model).items()}


@pytest.mark.slow
# One test a backbone, so the workers share them: MiT-B5 alone takes 15 s of CPU to build.
@pytest.mark.parametrize('name', list(backbones.BACKBONES))
def test_every_backbone_builds_offline_with_random_weights_and_a_pyramid_to_1_32(name):
  size = max(64, backbones.BACKBONES[name].min_size)
  encoder = backbones.build(name, size)
  pyramid = keras.Model(encoder.inputs, encoder.pyramid_outputs)(np.zeros((1, size, size, 3)))
  sides = sorted({int(t.shape[1]) for t in pyramid.values()})
  assert sides[0] == size // backbones.MAX_STRIDE, name
  assert sides[-1] <= size // 2, name


class FamilyRun(NamedTuple):
  workdir: str
  config: object
  first: dict  # loop.train's results after epoch 1 (encoder frozen) and after epoch 2.
  second: dict
  initial: dict  # {variable key: value} at the start, after epoch 1 and after epoch 2.
  after_one: dict
  after_two: dict
  encoder_keys: set  # The keys of the keras-hub encoder's variables.


@pytest.fixture(scope='module', params=list(FAMILIES))
def family_run(request, tmp_path_factory, synthetic_folder):
  """A family trained in its precision on one replica (test_models trains each on 2): two
  epochs of two steps with EMA, clipping and the encoder frozen in the first, the second
  resumed from the first's checkpoint."""
  name = request.param
  precision = FAMILIES[name]
  config = _zoo_config(synthetic_folder, name, runtime__precision=precision,
                       train__steps_per_epoch=2, train__ema_decay=0.5,
                       train__global_clipnorm=1.0, model__freeze_encoder_epochs=1,
                       summaries__explain_every_epochs=0)
  workdir = str(tmp_path_factory.mktemp(name))
  keras.utils.set_random_seed(config.seed)
  model = models.build_model(config.model, 64, 3, precision)
  encoder = {id(v) for layer in models.encoder_layers(name, model) for v in layer.weights}
  encoder_keys = {k for k, v in weights_lib.variable_keys(model).items() if id(v) in encoder}

  def trained():  # Every variable of the model is in the checkpoint: restored over the first.
    latest = tf.train.latest_checkpoint(os.path.join(workdir, 'checkpoints'))
    tf.train.Checkpoint(model=checkpoints.tracked_model(model)).restore(
        latest).assert_existing_objects_matched()
    return _variables_by_key(model)

  initial = _variables_by_key(model)
  first = loop.train(config, workdir)
  after_one = trained()
  config.train.epochs = 2
  second = loop.train(config, workdir)
  return FamilyRun(workdir, config, first, second, initial, after_one, trained(), encoder_keys)


@pytest.mark.slow
def test_family_trains_resumes_predicts_exports_and_explains(
    tmp_path, synthetic_folder, family_run):
  """Then predict, the SavedModel export (its masks equal predict's) and explain, all from
  the workdir."""
  workdir, config = family_run.workdir, family_run.config
  assert family_run.first['step'] == 2 and np.isfinite(family_run.first['eval']['loss'])
  second = family_run.second
  assert second['step'] == 4 and second['epoch'] == 2  # Resumed: two more steps, not four.
  assert second['eval']['num_examples'] == 8
  pictures = sorted(os.path.join(synthetic_folder, 'images', f) for f in
                    os.listdir(os.path.join(synthetic_folder, 'images')))[:2]
  written = predict.run(config, workdir, ','.join(pictures), str(tmp_path / 'pred'))
  served = tf.saved_model.load(export.run(config, workdir, str(tmp_path / 'export')))
  for picture_path, mask_path in zip(pictures, written):
    picture = loading.read_picture(picture_path)
    mask = tf.io.decode_png(tf.io.read_file(mask_path)).numpy()[..., 0]
    masks = served.serve(tf.constant(picture[None]))['masks'].numpy()[0]
    assert mask.shape == picture.shape[:2]
    assert np.mean(masks == mask) > 0.999
  report = explain_mode.run(config, workdir, None)
  assert report['layer'] not in ('probabilities', 'logits', 'segmentation_output')
  assert os.listdir(os.path.join(workdir, 'explain'))


@pytest.mark.slow
def test_a_frozen_encoder_keeps_its_weights_and_statistics_for_an_epoch_then_trains(
    family_run):
  """model.freeze_encoder_epochs=1: epoch 1 moves the decoder alone, the encoder's batch-norm
  statistics stay too; epoch 2 moves the encoder."""
  run = family_run
  encoder, rest = run.encoder_keys, set(run.initial) - run.encoder_keys
  assert len(encoder) > 20 and rest
  for key in encoder:
    np.testing.assert_array_equal(run.after_one[key], run.initial[key], err_msg=key)
  assert any(not np.array_equal(run.after_one[k], run.initial[k]) for k in rest)
  moved = {k for k in encoder if not np.array_equal(run.after_two[k], run.after_one[k])}
  assert len(moved) > len(encoder) // 2, sorted(encoder - moved)
  statistics = {k for k in encoder if 'moving_' in k}
  assert statistics & moved or not statistics


@pytest.mark.slow
@pytest.mark.parametrize('family_run', ['unet'], indirect=True)
def test_a_runs_best_model_starts_a_new_run_as_it_ended_and_another_class_count_gets_a_new_head(
    family_run):
  workdir, config = family_run.workdir, family_run.config
  best = keras.models.load_model(os.path.join(workdir, 'best_model.keras'))
  pictures = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
  same = config.model.copy_and_resolve_references()
  same.weights = workdir
  model = models.build_model(same, 64, 3, config.runtime.precision)
  models.load_initial_weights(model, same)
  np.testing.assert_allclose(model(pictures).numpy(), best(pictures).numpy(), atol=1e-6)
  two_classes = models.build_model(same, 64, 2)
  models.load_initial_weights(two_classes, same)
  source, target = _variables_by_key(best), _variables_by_key(two_classes)
  heads = [k for k in target if k.startswith('segmentation_output/')]
  assert len(heads) == 2 and all(source[k].shape != target[k].shape for k in heads[:1])
  for key, value in target.items():
    if key not in heads:
      np.testing.assert_array_equal(value, source[key], err_msg=key)


@pytest.mark.slow
@pytest.mark.parametrize('family_run', ['unet'], indirect=True)
def test_a_weights_file_of_the_same_model_loads_and_a_head_of_other_classes_stays_new(
    family_run, tmp_path):
  workdir, config = family_run.workdir, family_run.config
  best = keras.models.load_model(os.path.join(workdir, 'best_model.keras'))
  path = str(tmp_path / 'unet.weights.h5')
  best.save_weights(path)
  cfg = config.model.copy_and_resolve_references()
  cfg.weights = path
  model = models.build_model(cfg, 64, 2)
  initial_head = model.get_layer('segmentation_output').kernel.numpy()
  models.load_initial_weights(model, cfg)
  np.testing.assert_array_equal(model.get_layer('segmentation_output').kernel.numpy(),
                                initial_head)
  np.testing.assert_array_equal(model.get_layer('decoder1a_conv').kernel.numpy(),
                                best.get_layer('decoder1a_conv').kernel.numpy())


def _random_statistics(model, seed=0):
  """Moving statistics away from 0/1, so that a load that skipped them would show."""
  rng = np.random.default_rng(seed)
  for variable in model.non_trainable_variables:
    if 'moving' in variable.path:
      low, high = (0.5, 1.5) if 'variance' in variable.path else (-0.1, 0.1)
      variable.assign(rng.uniform(low, high, variable.shape))


@pytest.mark.slow
def test_a_voc_style_deeplab_preset_folder_fine_tunes_on_3_classes_with_its_converter(tmp_path):
  """A keras-hub DeepLabV3+ segmenter of 21 classes saved with save_to_preset, as kagglehub
  would bring it: on 3 classes every tensor but the head is the preset's, and the model's
  input is what keras-hub's own preprocessor makes of the same picture."""
  encoder = backbones.build('resnet18', 64)
  body = keras_hub.models.DeepLabV3Backbone(
      image_encoder=encoder, spatial_pyramid_pooling_key='P5', low_level_feature_key='P2',
      upsampling_size=8, dilation_rates=[6, 12, 18], projection_filters=48)
  converter = keras_hub.layers.DeepLabV3ImageConverter(scale=1 / 127.5, offset=-1.0)
  preprocessor = keras_hub.models.DeepLabV3ImageSegmenterPreprocessor(image_converter=converter)
  segmenter = keras_hub.models.DeepLabV3ImageSegmenter(backbone=body, num_classes=21,
                                                       preprocessor=preprocessor)
  _random_statistics(segmenter)
  folder = str(tmp_path / 'deeplab_voc')
  segmenter.save_to_preset(folder)
  cfg = model_config('deeplabv3plus', backbone='resnet18', weights=folder)
  model = models.build_model(cfg, 64, 3)
  models.load_initial_weights(model, cfg)
  source, target = _variables_by_key(segmenter), _variables_by_key(model)
  assert set(source) == set(target)
  new = [k for k in target if not np.array_equal(source[k], target[k])]
  assert new == ['segmentation_output/kernel']
  picture = np.random.default_rng(1).integers(0, 256, (1, 64, 64, 3)).astype(np.float32)
  ours = keras.Model(model.input, model.get_layer('preprocess').output)(picture).numpy()
  reloaded = keras_hub.models.DeepLabV3ImageSegmenter.from_preset(folder)
  theirs = np.asarray(reloaded.preprocessor.image_converter(picture))
  np.testing.assert_allclose(ours, theirs, atol=1e-5)
  np.testing.assert_allclose(ours, picture / 127.5 - 1.0, atol=1e-5)


@pytest.mark.slow
def test_a_backbone_preset_folder_fills_the_unet_encoder_with_imagenet_normalisation(tmp_path):
  encoder = backbones.build('resnet18', 64)
  _random_statistics(encoder)
  folder = str(tmp_path / 'resnet18')
  encoder.save_to_preset(folder)
  cfg = model_config('unet', backbone='resnet18', weights=folder, decoder_widths=(16,))
  model = models.build_model(cfg, 64, 3)
  models.load_initial_weights(model, cfg)
  source, target = _variables_by_key(encoder), _variables_by_key(model)
  assert set(source) < set(target)
  for key, value in source.items():
    np.testing.assert_array_equal(target[key], value, err_msg=key)
  picture = np.full((1, 64, 64, 3), 255.0, np.float32)
  ours = keras.Model(model.input, model.get_layer('preprocess').output)(picture).numpy()
  expected = (1.0 - np.array(backbones.IMAGENET_MEAN)) / np.array(backbones.IMAGENET_STD)
  np.testing.assert_allclose(ours[0, 0, 0], expected, rtol=1e-5)


def test_weights_that_cannot_be_used_say_so_in_one_line(tmp_path):
  cfg = model_config('unet', backbone='resnet18', decoder_widths=(16,))
  model = models.build_model(cfg, 32, 3)
  book = models.build_model(model_config('book_segmentation'), 32, 3)
  book.save(str(tmp_path / 'book.keras'))
  text = keras_hub.models.BertBackbone(vocabulary_size=10, num_layers=1, num_heads=1,
                                       hidden_dim=4, intermediate_dim=4, max_sequence_length=4)
  text.save_to_preset(str(tmp_path / 'bert'))
  cases = [(str(tmp_path / 'book.keras'), 'none of its weights fits unet'),
           (str(tmp_path / 'bert'), 'is a preset of a BertBackbone, not of an image model'),
           (str(tmp_path / 'missing.keras'), 'no such file or folder'),
           ('resnet18_imagenet', "not a keras-hub preset name .the nearest: 'resnet_18_imagenet'"),
           (str(tmp_path), 'a folder with neither best_model.keras')]
  for weights, message in cases:
    cfg.weights = weights
    with pytest.raises(ConfigError, match=message) as error:
      if weights.endswith('missing.keras') or weights.endswith('_imagenet'):
        models.check_initial_weights(cfg)
      else:
        models.load_initial_weights(model, cfg)
    assert '\n' not in str(error.value)


@pytest.mark.parametrize('fields, size, message', [
    (dict(name='unet', backbone='resnet81'), 64, "Unknown model.backbone='resnet81'; did you "
                                                 "mean 'resnet18'"),
    (dict(name='segformer', backbone='resnet18'), 64, 'segformer takes an MiT encoder'),
    (dict(name='deeplabv3plus', backbone='mit_b0'), 64, 'use model.name=segformer or unet'),
    (dict(name='unet', backbone='mit_b0'), 32, 'mit_b0 takes data.image_size of at least 64'),
    (dict(name='deeplabv3plus', backbone='resnet18', weights='imagenet'), 64,
     "model.weights='imagenet' is Keras' download for mobilenet_v2_unet and xception"),
])
def test_zoo_fields_that_cannot_go_together_fail_before_building(fields, size, message):
  with pytest.raises(ConfigError, match=message):
    models.check_model(model_config(**fields), size)
  with pytest.raises(ConfigError, match='multiple of 32 .*: 100 is not; use 96 or 128'):
    models.check_model(model_config('unet', backbone='resnet18'), 100)


def test_encoder_lr_multiplier_scales_the_encoders_sgd_step_and_nothing_else():
  cfg = model_config('unet', backbone='resnet18', decoder_widths=(16,))
  pictures = tf.random.uniform([2, 32, 32, 3], 0, 255, seed=1)
  labels = tf.zeros([2, 32, 32, 1], tf.uint8)

  def steps(multiplier):
    keras.utils.set_random_seed(0)
    model = models.build_model(cfg, 32, 3)
    encoder = models.encoder_layers('unet', model)
    train = small_config(train__optimizer='sgd', train__learning_rate=0.1,
                         train__encoder_lr_multiplier=multiplier, settle=False).train
    optimizer = optimizers.make_optimizer(
        train, 'float32', encoder_variables=[v for l in encoder for v in l.trainable_variables])
    trainer = steps_lib.Steps(tf.distribute.get_strategy(), model, optimizer,
                              global_batch_size=2, num_classes=3)
    before = {v.path: v.numpy() for v in model.trainable_variables}
    trainer.train_steps(iter(tf.data.Dataset.from_tensors(
        {'image': pictures, 'label': labels}).repeat()), tf.constant(1))
    encoder_paths = {v.path for l in encoder for v in l.trainable_variables}
    return {p: (v.numpy() - before[p], p in encoder_paths) for p, v in
            ((v.path, v) for v in model.trainable_variables)}

  full, half = steps(1.0), steps(0.5)
  assert sum(is_encoder for _, is_encoder in full.values()) > 50
  for path, (update, is_encoder) in full.items():
    np.testing.assert_allclose(half[path][0], update * (0.5 if is_encoder else 1.0),
                               rtol=1e-4, atol=1e-7, err_msg=path)


@pytest.mark.slow
def test_an_unreachable_preset_name_exits_2_with_one_line_in_seconds(tmp_path, capsys):
  if weights_lib.local_preset_folder('resnet_18_imagenet'):
    pytest.skip('resnet_18_imagenet is in kagglehub\'s cache here: nothing would be fetched.')
  started = time.monotonic()
  status, stderr = main_in_process(
      capsys, '--config=configs/seg.py', f'--workdir={tmp_path}', '--config.data.source=synthetic',
      '--config.model.name=unet', '--config.model.backbone=resnet18',
      '--config.data.image_size=64', '--config.model.weights=resnet_18_imagenet')
  assert time.monotonic() - started < 30
  assert status == 2, stderr[-2000:]
  errors = [line for line in stderr.splitlines() if line.startswith('Error:')]
  assert len(errors) == 1 and 'kagglehub.model_download' in errors[0], stderr[-2000:]
  assert not os.path.exists(tmp_path / 'synthetic_pets')  # Failed before reading any data.
