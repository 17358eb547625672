"""The modes that use a trained model: explain, predict, score and export, as a user runs them."""

import glob
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from data import resize as resize_lib
from interpretability import gradcam
from inference import explain as explain_mode
from inference import export
from inference import loading
from inference import predict
from inference import predictor
from inference import score
import specs
import tasks
from tests.conftest import main_in_process, small_config
from tests.test_models import xception_test_config
from tests.test_training import _event_tags


@pytest.mark.slow
def test_training_writes_explain_summaries_and_explain_mode_writes_pngs(trained_run, tmp_path,
                                                                        capsys):
  workdir, results, config = trained_run
  assert results['explain_seconds'] > 0
  tags = _event_tags(os.path.join(workdir, 'eval'))
  for prefix in ('activations/', 'filters/', 'gradcam/'):
    assert any(t.startswith(prefix) and kind == 'images' for t, kind in tags.items()), prefix
  assert {'gradcam/pet', 'gradcam/background', 'gradcam/outline'} <= set(tags)

  status, stderr = main_in_process(
      capsys, '--config=configs/seg.py', f'--workdir={workdir}', '--mode=explain',
      '--config.data.source=synthetic', '--config.data.image_size=32',
      '--config.summaries.explain.num_filters=8', f'--images={tmp_path}')
  assert status == 2 and 'matches no picture' in stderr
  pictures = sorted(glob.glob(os.path.join(config.data.folder, 'images', '*.jpg')))[:2]
  assert pictures
  status, stderr = main_in_process(
      capsys, '--config=configs/seg.py', f'--workdir={workdir}', '--mode=explain',
      '--config.data.image_size=32', '--config.summaries.explain.num_filters=8',
      f'--images={",".join(pictures)}')
  assert status == 0, stderr[-2000:]
  pngs = glob.glob(os.path.join(workdir, 'explain', '*.png'))
  kinds = {os.path.basename(p).split('_')[0] for p in pngs}
  assert kinds == {'activations', 'filters', 'gradcam'}
  for path in pngs:
    picture = tf.io.decode_png(tf.io.read_file(path)).numpy()
    assert picture.std() > 1.0, path  # Not blank.

def test_no_model_and_missing_picture_are_clear(tmp_path):
  config = small_config()
  with pytest.raises(Exception, match='No model in --workdir'):
    loading.load_model(specs.describe(config).network, str(tmp_path))
  with pytest.raises(Exception, match='does not exist'):
    loading.picture_paths(str(tmp_path / 'cat.jpg'))
  (tmp_path / 'notes.jpg').write_text('not a picture')
  with pytest.raises(Exception, match='is not a picture'):
    loading.read_picture(str(tmp_path / 'notes.jpg'))

def test_images_from_sub_folders_are_found_and_named_so_none_overwrites_another(tmp_path):
  for name in ('a.jpg', 'b.jpg', 'b.png', 'sub/a.png', '.hidden/c.png', 'notes.txt'):
    (tmp_path / name).parent.mkdir(exist_ok=True)
    (tmp_path / name).write_bytes(b'')
  named = loading.picture_paths(f'{tmp_path},{tmp_path / "a.jpg"}')
  assert [(os.path.relpath(path, tmp_path), name) for path, name in named] == [
      ('a.jpg', 'a'), ('b.jpg', 'b'), ('b.png', 'b_2'), ('sub/a.png', 'sub/a'), ('a.jpg', 'a_2')]


@pytest.mark.slow
def test_predict_masks_match_the_shapes_and_export_round_trips(trained_run, trained_exports,
                                                               tmp_path):
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

  loaded = tf.saved_model.load(trained_exports['saved_model', 'none'][0])
  picture = loading.read_picture(pictures[0])
  served = loaded.serve(tf.constant(picture[None]))['masks'].numpy()[0]
  model, _ = loading.load_model(specs.describe(config).network, workdir)
  # Inside the file: the antialiased downscale every converter takes (data/resize.py).
  probabilities = model(resize_lib.resize_pictures(picture[None], 32, exportable=True))
  expected = np.argmax(tf.image.resize(probabilities, picture.shape[:2]), -1)[0]
  assert served.shape == picture.shape[:2]
  np.testing.assert_array_equal(served, expected)

def _with_test_time_averaging(config):
  config = config.copy_and_resolve_references()
  config.predict.sizes, config.predict.flip = (32, 40), True
  return config

@pytest.mark.slow
def test_flip_averaging_makes_predictions_mirror_symmetric(trained_run):
  """Averaging a picture with its mirror image: the mirrored picture's probabilities are the
  mirror of the picture's (a forgotten flip back would break this), at every test-time side."""
  workdir, _, config = trained_run
  config = _with_test_time_averaging(config)
  model, _ = loading.load_model(specs.describe(config).network, workdir)
  averaging = predictor.Predictor(model, specs.describe(config))
  picture = np.random.default_rng(4).uniform(0, 255, (1, 50, 70, 3)).astype(np.float32)
  straight = averaging.probabilities(picture).numpy()
  mirrored = averaging.probabilities(np.ascontiguousarray(picture[:, :, ::-1])).numpy()
  assert straight.shape == (1, 40, 40, 3)
  np.testing.assert_allclose(mirrored[:, :, ::-1], straight, atol=1e-5)
  single = predictor.Predictor(model, specs.describe(trained_run[2])).probabilities(picture)
  assert np.abs(tf.image.resize(single, (40, 40)).numpy() - straight).max() > 1e-3

@pytest.mark.slow
def test_score_is_what_predicted_masks_score_and_export_serves_them(trained_run, tmp_path):
  workdir, _, config = trained_run
  config = _with_test_time_averaging(config)
  folder = config.data.folder
  names = [line.split()[0] for line in open(os.path.join(folder, 'annotations', 'test.txt'))]
  pictures = [os.path.join(folder, 'images', n + '.jpg') for n in names]
  written = predict.run(config, workdir, ','.join(pictures), str(tmp_path / 'pred'))
  confusions = {}  # By breed: the file name less its number.
  for name, mask_path in zip(names, written):
    mask = tf.io.decode_png(tf.io.read_file(mask_path)).numpy()[..., 0]
    trimap = tf.io.decode_png(tf.io.read_file(
        os.path.join(folder, 'annotations', 'trimaps', name + '.png'))).numpy()[..., 0] - 1
    np.add.at(confusions.setdefault(name.rsplit('_', 1)[0], np.zeros((3, 3))),
              (trimap.ravel(), mask.ravel()), 1)
  mean_iou = lambda c: (np.diag(c) / (c.sum(0) + c.sum(1) - np.diag(c))).mean()
  scored = score.run(config, workdir)  # The test list, which training never read.
  assert scored['predict_sizes'] == [32, 40] and scored['predict_flip']
  assert scored['test_split'] == 'test'
  np.testing.assert_allclose(scored['mean_iou'], mean_iou(sum(confusions.values())), atol=1e-4)
  assert set(scored['per_group']) == {'synthetic_cat', 'synthetic_dog'}
  for breed, confusion in confusions.items():
    np.testing.assert_allclose(scored['per_group'][breed]['mean_iou'], mean_iou(confusion),
                               atol=1e-4)
    assert scored['per_group'][breed]['num_pictures'] == sum(
        n.rsplit('_', 1)[0] == breed for n in names)
  worst_first = [group['mean_iou'] for group in scored['per_group'].values()]
  assert worst_first == sorted(worst_first)
  assert json.load(open(os.path.join(workdir, 'score.json')))['mean_iou'] == scored['mean_iou']

  loaded = tf.saved_model.load(export.run(config, workdir, str(tmp_path / 'export')))
  picture = loading.read_picture(pictures[0])
  served = loaded.serve(tf.constant(picture[None]))['masks'].numpy()[0]
  np.testing.assert_array_equal(served, tf.io.decode_png(tf.io.read_file(written[0])).numpy()[..., 0])

@pytest.mark.slow
def test_trained_unet_explains_every_class_and_points_at_the_pet(trained_unet):
  workdir, config = trained_unet
  config = config.copy_and_resolve_references()
  config.summaries.num_images = 13  # Every eval picture, scored at its own size.
  report = explain_mode.run(config, workdir, None)
  model = loading.load_model(specs.describe(config).network, workdir)[0]
  assert report['layer'] == gradcam.default_layer(model, tasks.SEGMENTATION)
  assert report['num_scored'] == 13
  for name in ('pet', 'background', 'outline'):
    assert report['summary'][name]['non_blank'] == 1.0, report['summary']
    assert report['summary'][name]['energy_lift'] > 1.0, report['summary']
  assert report['summary']['pet']['energy_lift'] > 1.5, report['summary']
  # Training logged the same measure at its explain pass.
  tags = {v.tag for p in tf.io.gfile.glob(os.path.join(workdir, 'eval', 'events.*'))
          for e in tf.compat.v1.train.summary_iterator(p) for v in e.summary.value}
  assert {'gradcam/pet/energy_lift', 'gradcam/outline/non_blank'} <= tags

def _write_official_layout(folder, name, picture, trimap=None):
  os.makedirs(os.path.join(folder, 'images'), exist_ok=True)
  tf.io.write_file(os.path.join(folder, 'images', name + '.jpg'), tf.io.encode_jpeg(picture))
  if trimap is not None:
    os.makedirs(os.path.join(folder, 'annotations', 'trimaps'), exist_ok=True)
    tf.io.write_file(os.path.join(folder, 'annotations', 'trimaps', name + '.png'),
                     tf.io.encode_png(trimap[..., None]))
  return os.path.join(folder, 'images', name + '.jpg')

@pytest.mark.slow
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

@pytest.mark.slow
def test_xception_explains_with_no_training_and_top_classes(tmp_path):
  config = xception_test_config()
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

def test_a_binary_classifiers_best_model_is_the_one_loaded(tmp_path):
  """One sigmoid unit for two classes: the best model fits data.class_names (not set aside for
  the newest checkpoint, which is not the best)."""
  import keras  # pylint: disable=import-outside-toplevel
  from configs import cls  # pylint: disable=import-outside-toplevel
  from modeling import models  # pylint: disable=import-outside-toplevel
  config = cls.get_config()
  config.data.image_size = 36
  model = models.build_model(config.model, 36, 2)
  assert model.output_shape[-1] == 1
  model.save(tmp_path / 'best_model.keras')
  loaded, source = loading.load_model(specs.describe(config).network, str(tmp_path))
  assert source == str(tmp_path / 'best_model.keras')
  assert isinstance(loaded, keras.Model)
