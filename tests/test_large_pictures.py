"""Large pictures: native-resolution crops after a random rescale stay aligned with their masks,
their padding counts nowhere, a window slid over a picture answers as the whole picture does,
and downscaling averages instead of sampling."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from data import check_data
from data import crops
from data import decode
from data import resize as resize_lib
from errors import ConfigError
from inference import loading
from inference.artifacts import Artifact
from inference.predictor import Predictor
from modeling import sliding
import specs
import tasks
from tasks import IGNORE, MASK_FEATURE
from tasks import losses
from tasks import metrics
from tasks import multilabel
from tests import own_data
from tests.conftest import data_spec, main_in_process, small_config
from training import config_checks

BLOCK = 8  # The test pictures are blocks of BLOCK x BLOCK pixels, one class each.


def _blocks_example(height: int, width: int, seed: int = 0, as_png: bool = False) -> tuple:
  """(an encoded example of a non-square picture whose every BLOCK x BLOCK block has one class
  and that class's own colour channel at 200, its class-id mask): alignment is checkable by
  value, and no blend of two classes passes for a third."""
  rng = np.random.default_rng(seed)
  classes = rng.integers(0, 3, (height // BLOCK, width // BLOCK)).astype(np.uint8)
  mask = np.kron(classes, np.ones((BLOCK, BLOCK), np.uint8))
  picture = (np.eye(3)[mask] * 200).astype(np.uint8)
  encode = tf.io.encode_png if as_png else (
      lambda p: tf.io.encode_jpeg(p, quality=100, chroma_downsampling=False))
  return {'image': encode(picture), MASK_FEATURE: tf.io.encode_png(mask[..., None])}, mask


def _flat_class(image: np.ndarray, tolerance: int) -> tuple:
  """(each pixel's class by its brightest channel, where the pixel is one class's flat colour
  rather than a blend at a border)."""
  pixels = image.astype(float)
  flat = (pixels.max(-1) >= 200 - tolerance) & (np.sort(pixels, -1)[..., 1] <= tolerance)
  return pixels.argmax(-1), flat


@pytest.mark.parametrize('as_png', [False, True])
def test_crops_and_masks_stay_aligned_through_scale_and_crop_on_non_square_pictures(as_png):
  example, mask = _blocks_example(96, 160, as_png=as_png)
  spec = crops.CropSpec((48, 64), (0.5, 2.0))
  scales_seen = set()
  for draw in range(24):
    out = crops.random_crop(example, tf.constant([draw, 7], tf.int64), spec)
    image, label = out['image'].numpy(), out['label'].numpy()[..., 0]
    assert image.shape == (48, 64, 3) and label.shape == (48, 64)
    valid = label != IGNORE
    assert valid.any()
    window, scaled = crops.crop_window(tf.constant([96, 160]), tf.constant([draw, 7], tf.int64),
                                       spec)
    scales_seen.add(round(float(scaled[0]) / float(window[2]), 1))
    # Padding sits at the bottom and right only, black, and the mask's valid part is a box of
    # the scaled window's size.
    rows, cols = np.where(valid)
    assert (rows.max() + 1, cols.max() + 1) == tuple(scaled.numpy())
    assert valid[:rows.max() + 1, :cols.max() + 1].all()
    assert (image[~valid] == 0).all()
    # Pixel for pixel: where the picture is one block's flat colour (not a blend at a border),
    # its class is the mask's. JPEG's block edges ring, so its test allows 8 grey levels.
    found, flat = _flat_class(image, 1 if as_png else 8)
    flat &= valid
    assert flat.sum() > 0.3 * valid.sum()
    np.testing.assert_array_equal(found[flat], label[flat])
    # And the mask is the source mask's window, rescaled by nearest neighbour.
    y, x, h, w = window.numpy()
    expected = tf.image.resize(mask[y:y + h, x:x + w, None], scaled, 'nearest').numpy()[..., 0]
    np.testing.assert_array_equal(label[:expected.shape[0], :expected.shape[1]], expected)
  assert min(scales_seen) < 0.8 and max(scales_seen) > 1.2  # The rescale is drawn, both ways.


@pytest.mark.parametrize('task', [tasks.SEGMENTATION, tasks.MULTILABEL], ids=lambda t: t.name)
def test_a_crop_from_the_masks_strips_equals_the_crop_from_the_whole_mask(task, monkeypatch):
  """A prepared set stores its masks also in strips of rows; a crop that decodes only the
  strips its window covers is the crop of the whole mask, for class ids and bitmasks alike."""
  monkeypatch.setattr(decode, 'MASK_STRIP_ROWS', 16)
  example, mask = _blocks_example(120, 96, seed=4)  # 8 strips, the last of 8 rows.
  lookup = task.stored_mask_reader(3)
  stored = (multilabel.pack_bits(np.eye(3, dtype=np.uint8)[mask]) if task is tasks.MULTILABEL
            else mask)[..., None]
  whole = {**example, MASK_FEATURE: tf.io.encode_png(stored)}
  stripped = {**whole, decode.MASK_STRIPS_FEATURE: tf.constant(decode.encode_mask_strips(stored))}
  spec = crops.CropSpec((32, 40), (0.5, 2.0))
  rows_seen = set()
  for draw in range(24):
    seed = tf.constant([draw, 3], tf.int64)
    expected, got = (crops.random_crop(e, seed, spec, lookup) for e in (whole, stripped))
    np.testing.assert_array_equal(got['image'].numpy(), expected['image'].numpy())
    np.testing.assert_array_equal(got['label'].numpy(), expected['label'].numpy())
    window, _ = crops.crop_window(tf.constant([120, 96]), seed, spec)
    rows_seen.add((int(window[0]) // 16, (int(window[0] + window[2]) - 1) // 16))
  assert any(last > first for first, last in rows_seen)  # Windows across strips,
  assert any(last == 7 for _, last in rows_seen)  # and into the short last one.


def test_a_crop_at_scale_one_is_the_pictures_own_pixels():
  example, mask = _blocks_example(80, 120, seed=3, as_png=True)
  picture = tf.io.decode_png(example['image']).numpy()
  out = crops.random_crop(example, tf.constant([5, 5], tf.int64), crops.CropSpec((40, 56)))
  window, _ = crops.crop_window(tf.constant([80, 120]), tf.constant([5, 5], tf.int64),
                                crops.CropSpec((40, 56)))
  y, x, h, w = window.numpy()
  assert (h, w) == (40, 56)
  np.testing.assert_array_equal(out['image'].numpy(), picture[y:y + h, x:x + w])
  np.testing.assert_array_equal(out['label'].numpy()[..., 0], mask[y:y + h, x:x + w])


def _rare_class_example(height: int = 96, width: int = 160) -> tuple:
  """(an example whose class 2 is one 3 x 3 spot, 0.06 % of the pixels; class 1 a band)."""
  mask = np.zeros((height, width), np.uint8)
  mask[:, 100:130] = 1
  mask[70:73, 20:23] = 2
  picture = (np.eye(3)[mask] * 200).astype(np.uint8)
  return {'image': tf.io.encode_png(picture), MASK_FEATURE: tf.io.encode_png(mask[..., None])}, mask


def test_class_balanced_crops_find_a_rare_class_and_keep_picture_and_mask_aligned():
  example, mask = _rare_class_example()
  chances = crops.class_probabilities(np.bincount(mask.ravel(), minlength=3), 0.0)
  assert chances == pytest.approx((1 / 3, 1 / 3, 1 / 3))
  assert crops.class_probabilities((90, 10, 0), 1.0) == pytest.approx((0.9, 0.1, 0.0))
  uniform, balanced = crops.CropSpec((32, 32)), crops.CropSpec((32, 32), class_probabilities=chances)
  seen = {}
  for name, spec in (('uniform', uniform), ('balanced', balanced)):
    seen[name] = 0
    for draw in range(60):
      seed = tf.constant([draw, 3], tf.int64)
      out = crops.random_crop(example, seed, spec)
      label, image = out['label'].numpy()[..., 0], out['image'].numpy()
      seen[name] += int((label == 2).any())
      np.testing.assert_array_equal(image.argmax(-1), label)  # Each pixel its class's colour.
      again = crops.random_crop(example, seed, spec)['label'].numpy()  # Seeded: a resumed run
      np.testing.assert_array_equal(again[..., 0], label)  # draws the same crop.
  assert seen['balanced'] >= 15 and seen['uniform'] <= 10, seen
  half = crops.CropSpec((32, 32), class_probabilities=(0.0, 0.0, 1.0), centred_fraction=0.5)
  centred = sum(int((crops.random_crop(example, tf.constant([d, 9], tf.int64), half)['label']
                     .numpy() == 2).any()) for d in range(40))
  assert 10 <= centred <= 32  # About half centred on the spot, the rest uniform.
  with pytest.raises(ConfigError, match="class_balanced places crops .* needs data.resize='none'"):
    small_config(data__crop_sampling='class_balanced')
  with pytest.raises(ConfigError, match='data.crop_centred_fraction=1.5 is a share'):
    small_config(data__resize='none', data__crop_size=(32, 32), data__crop_centred_fraction=1.5)


def test_padding_counts_in_no_loss_term_and_no_metric():
  """A picture smaller than its crop: every loss term and the confusion matrix are the same
  on the padded crop, whatever the model answers on the padding, as on the picture alone."""
  example, mask = _blocks_example(24, 40, seed=2, as_png=True)
  out = crops.random_crop(example, tf.constant([1, 2], tf.int64), crops.CropSpec((32, 48)))
  padded = out['label'].numpy()[None].astype(np.int64)
  assert (padded[0, 24:] == IGNORE).all() and (padded[0, :, 40:] == IGNORE).all()
  np.testing.assert_array_equal(padded[0, :24, :40, 0], mask)
  rng = np.random.default_rng(0)
  probabilities = tf.nn.softmax(rng.normal(size=(1, 32, 48, 3)).astype(np.float32) * 3).numpy()
  inside = probabilities[:, :24, :40]
  for term in losses.TERMS:
    spec = losses.LossSpec(terms=((term, 1.0),))
    whole = losses.per_example_loss(tf.constant(padded), tf.constant(probabilities), spec)
    alone = losses.per_example_loss(tf.constant(padded[:, :24, :40]), tf.constant(inside), spec)
    np.testing.assert_allclose(whole.numpy(), alone.numpy(), rtol=1e-5, err_msg=term)
  np.testing.assert_array_equal(
      metrics.confusion_matrix(tf.constant(padded), tf.constant(probabilities), 3).numpy(),
      metrics.confusion_matrix(tf.constant(padded[:, :24, :40]), tf.constant(inside), 3).numpy())


def _pointwise_model(classes: int = 3) -> keras.Model:
  """A fully convolutional model whose every pixel's answer is its own (1x1 convolutions)."""
  inputs = keras.Input((None, None, 3))
  x = keras.layers.Conv2D(8, 1, activation='relu')(inputs)
  return keras.Model(inputs, keras.layers.Softmax()(keras.layers.Conv2D(classes, 1)(x)))


@pytest.mark.parametrize('windows_per_call', [0, 1, 5])
def test_a_slid_prediction_equals_the_whole_picture_prediction(windows_per_call):
  model = _pointwise_model()
  pictures = tf.random.uniform([2, 70, 101, 3], 0, 255, seed=1)
  slid = sliding.slide(lambda w: model(w), pictures, (32, 48), (20, 30), 3, windows_per_call)
  np.testing.assert_allclose(slid.numpy(), model(pictures).numpy(), atol=1e-6)
  small = tf.random.uniform([1, 20, 30, 3], 0, 255, seed=2)  # Smaller than one window.
  np.testing.assert_allclose(sliding.slide(lambda w: model(w), small, (32, 48), (16, 24), 3)
                             .numpy(), model(small).numpy(), atol=1e-6)


def test_windows_cover_every_pixel_and_overlaps_are_averaged():
  corners = sliding.window_corners(tf.constant(100), 32, 20).numpy()
  assert list(corners) == [0, 20, 40, 60, 68]  # The last flush with the end.
  coverage = sliding.coverage(tf.constant(100), tf.constant(corners), 32).numpy()
  assert coverage.min() >= 1 and coverage[25] == 2 and coverage[0] == 1
  # A model that answers each window with its own constant: the average of those covering.
  seen = []
  def answer(windows):
    seen.append(int(windows.shape[0]))
    ids = tf.cast(tf.range(tf.shape(windows)[0]), tf.float32)[:, None, None, None]
    return tf.concat([tf.zeros_like(windows[..., :1]) + ids, tf.ones_like(windows[..., :1])], -1)
  out = sliding.slide(answer, tf.zeros([1, 100, 32, 3]), (32, 32), (20, 20), 2).numpy()
  np.testing.assert_allclose(out[0, 25, 0, 0], (0 + 1) / 2)  # Windows 0 and 1 cover row 25.
  np.testing.assert_allclose(out[0, 99, 0, 0], 4.0)  # Only the last window covers row 99.
  np.testing.assert_allclose(out[..., 1], 1.0)


def test_downscaling_averages_and_the_exportable_resize_is_the_same_filter():
  stripes = np.zeros((1, 400, 400, 3), np.float32)
  stripes[:, :, ::4] = 255.0  # 1-pixel lines every 4 pixels: their mean is 63.75.
  averaged = resize_lib.resize_pictures(stripes, 40).numpy()
  np.testing.assert_allclose(averaged, 63.75, atol=8)  # A triangle's weights, near the mean.
  sampled = tf.image.resize(stripes, (40, 40)).numpy()  # Sampled: lines lost or halved.
  assert sampled.min() == 0 and sampled.max() == 127.5
  rng = np.random.default_rng(0)
  picture = rng.uniform(0, 255, (2, 97, 131, 3)).astype(np.float32)
  for size in (40, (50, 31), (97, 131), (200, 150)):
    np.testing.assert_allclose(resize_lib.resize_pictures(picture, size, exportable=True),
                               resize_lib.resize_pictures(picture, size), atol=0.01)


def _check(**overrides):
  config_checks.check_config(small_config(**overrides))


def test_large_picture_settings_that_cannot_work_get_one_line_naming_the_fix():
  _check(data__resize='none', data__crop_size=(32, 48), data__augment__scale_range=(0.5, 2.0),
         data__image_size=(32, 48), predict__window=(32, 32), predict__stride=(16, 16))
  cases = {
      ('data__resize', 'crop'): "data.resize='crop' is not one of square, none",
      ('data__crop_size', (30, 48)): 'data.crop_size that is a multiple of 8 (its total '
                                     'stride): 30x48 is not; use 24 or 32 for its side 30.',
      ('predict__window', (36, 32)): 'predict.window that is a multiple of 8',
      ('predict__stride', (48, 16)): 'is larger than the window',
      ('data__augment__scale_range', (2.0, 0.5)): 'must be (lo, hi) with 0 < lo <= hi',
      ('predict__sizes', (32,)): 'set predict.scales',
  }
  for (field, value), message in cases.items():
    with pytest.raises(ConfigError, match=message.replace('(', r'\(').replace(')', r'\)')):
      _check(**{'data__resize': 'none', 'data__crop_size': (32, 48), field: value})
  with pytest.raises(ConfigError, match='needs data.resize=.none.'):
    _check(data__augment__scale_range=(0.5, 2.0))
  with pytest.raises(ConfigError, match='predict.scales.*need predict.mode=slide'):
    _check(predict__scales=(1.0, 1.5))
  with pytest.raises(ConfigError, match=r'data.image_size=\(32, -8\) must be a side'):
    _check(data__image_size=(32, -8))
  with pytest.raises(ConfigError, match=r'model.backbone=mit_b0 takes square data.crop_size'):
    _check(data__resize='none', data__crop_size=(64, 96), model__name='segformer',
           model__backbone='mit_b0')
  with pytest.raises(ConfigError, match='a classifier answers whole pictures'):
    _check(task='classification', data__label_feature='species', predict__mode='slide',
           model__name='mini_xception')


@pytest.fixture(scope='module')
def crop_run(tmp_path_factory):
  """2 epochs on 40x48 crops, rescaled by 0.75-1.5, of a user's pictures of several heights
  (48-55 x 48 px, some smaller than a scaled crop), evaluated on 2 replicas by sliding 40x48
  windows over the whole validation pictures: (workdir, config, results)."""
  from tests import own_data  # pylint: disable=import-outside-toplevel
  from tests.test_own_data import files_config  # pylint: disable=import-outside-toplevel
  from training import loop  # pylint: disable=import-outside-toplevel
  folder = str(tmp_path_factory.mktemp('own'))
  own_data.write_set(folder, 'ids', count=24, size=48, mask_suffix='_label')
  workdir = str(tmp_path_factory.mktemp('crops'))
  config = files_config(folder, 'ids', data__resize='none', data__crop_size=(40, 48),
                        data__augment__scale_range=(0.75, 1.5), train__optimizer='adam',
                        train__epochs=2, data__deterministic=True, predict__stride=(16, 24),
                        data__validation_fraction=0.3, summaries__explain_every_epochs=2,
                        summaries__explain__num_filters=4, runtime__cpu_devices=2)
  return workdir, config, loop.train(config, workdir)


def test_training_on_crops_evaluates_every_whole_picture_once_as_predict_answers(crop_run):
  """The loop's evaluation (one picture per replica, slid) counts each validation picture
  once, at its own resolution, and its metrics are those of --mode=score's masks on the same
  pictures (the Predictor slides the same windows)."""
  from data import sources  # pylint: disable=import-outside-toplevel
  from inference import predictor as predictor_lib  # pylint: disable=import-outside-toplevel
  from inference import score  # pylint: disable=import-outside-toplevel
  workdir, config, results = crop_run
  builder = sources.prepared_builder(data_spec(config), workdir)
  eval_split = sources.resolve_splits(data_spec(config)).eval
  heights = {int(tf.image.decode_image(example['image']).shape[0])
             for example in sources.read_encoded(builder, eval_split)}
  assert len(heights) > 1  # Pictures of several sizes, each evaluated at its own.
  assert results['eval']['num_examples'] == sources.num_examples(builder, eval_split)
  config = config.copy_and_resolve_references()
  config.data.test_split = eval_split
  predictor, _ = predictor_lib.load(specs.describe(config), workdir)
  assert predictor.slides and predictor.window == (40, 48) and predictor.stride == (16, 24)
  scored = score.test_metrics(predictor, builder, data_spec(config))
  assert scored['num_pictures'] == results['eval']['num_examples']
  for key in ('pixel_accuracy', 'mean_iou', 'iou/background', 'iou/disc', 'iou/square'):
    assert abs(scored[key] - results['eval'][key]) < 2e-3, (key, scored, results['eval'])


def test_a_model_trained_on_crops_exports_with_its_sliding_window(crop_run, tmp_path):
  """The slide (windows gathered, answered predict.windows_per_call at a time in a loop,
  scattered back and averaged) is inside the exported file, which answers pictures of any size
  as the Predictor does, in memory that does not grow with the number of windows."""
  from inference import export  # pylint: disable=import-outside-toplevel
  workdir, config, _ = crop_run
  for fmt in ('saved_model', 'litert', 'onnx'):
    config = config.copy_and_resolve_references()
    config.export.format = fmt
    config.predict.windows_per_call = 3  # The 53 x 70 picture's 4 windows: two calls a view.
    if fmt == 'saved_model':  # Scales and mirror images compose with the slide, in the file too.
      config.predict.scales, config.predict.flip = (0.75, 1.0), True
    folder = export.run(config, workdir, str(tmp_path / fmt))
    with open(os.path.join(folder, 'export.json')) as f:
      record = json.load(f)
    assert record['predict_mode'] == 'slide' and record['check']['passed'], (fmt, record)
    assert record['predict_scales'] == list(config.predict.scales or (1.0,))
    assert record['predict_windows_per_call'] == 3
    assert record['check']['agreement'] >= 0.999, (fmt, record['check'])
    # Probabilities too: where windows overlap they are averaged in every runtime (ONNX's
    # ScatterND once kept one window's answer there, which masks alone did not show).
    picture = np.random.default_rng(1).integers(0, 255, (53, 70, 3)).astype(np.uint8)
    run = specs.describe(config)
    expected = Predictor(loading.load_model(run.network, workdir)[0], run).probabilities(
        tf.constant(picture[None], tf.float32)).numpy()
    np.testing.assert_allclose(Artifact(folder).outputs(picture[None])['probabilities'],
                               expected, atol=2e-4, err_msg=fmt)


def _nearest(mask: np.ndarray, height: int, width: int) -> np.ndarray:
  """Nearest-neighbour resize by hand: output pixel i reads input floor((i + 0.5) * in / out)."""
  rows = np.floor((np.arange(height) + 0.5) * mask.shape[0] / height).astype(int)
  cols = np.floor((np.arange(width) + 0.5) * mask.shape[1] / width).astype(int)
  return mask[rows][:, cols]


def test_check_data_names_the_ceiling_of_squashed_masks_and_the_fields_that_lift_it(
    tmp_path, capsys):
  rng = np.random.default_rng(0)
  masks = []
  for _ in range(3):  # Thin structures: 1-2 px lines, as membranes between cells.
    mask = np.zeros((60, 80), np.uint8)
    mask[:, rng.integers(0, 80, 4)] = 1
    mask[rng.integers(0, 60, 2), :] = 1
    mask[0, 0] = IGNORE
    masks.append(mask)
  ceiling = check_data.squashed_ceiling(masks, (16, 20), tasks.SEGMENTATION, ('cell', 'line'))
  hits, unions = np.zeros(2), np.zeros(2)
  for mask in masks:
    restored = _nearest(_nearest(mask, 16, 20), 60, 80)
    restored[restored == IGNORE] = 0
    counted = mask != IGNORE
    for c in range(2):
      hits[c] += np.sum((mask == c) & (restored == c) & counted)
      unions[c] += np.sum(((mask == c) | (restored == c)) & counted)
  assert ceiling['cell'] == pytest.approx(hits[0] / unions[0])
  assert ceiling['line'] == pytest.approx(hits[1] / unions[1])
  assert ceiling['mean_iou'] == pytest.approx((hits / unions).mean()) and ceiling['line'] < 0.6
  # A class the masks do not hold has no ceiling (it is not advice-worthy at 0).
  assert check_data.squashed_ceiling(masks, (16, 20), tasks.SEGMENTATION,
                                     ('cell', 'line', 'absent')).keys() == ceiling.keys()
  folder = str(tmp_path)
  own_data.write_set(folder, 'binary', count=6, size=48)
  status = main_in_process(
      capsys, '--config=configs/own_binary.py', f'--workdir={tmp_path}/run',
      '--mode=check_data', '--config.data.image_size=16',
      f'--config.data.files.train_images={folder}/train/images',
      f'--config.data.files.train_masks={folder}/train/masks',
      "--config.data.label_map=0:0,255:1")[0]
  printed = capsys.readouterr().out
  assert status == 0 and 'ceiling train: a perfect model at data.image_size=16' in printed
  assert "data.resize='none' with data.crop_size" in printed


def test_vectors_trace_each_class_with_its_holes_on_the_rasters_grid():
  """predict.vectors' polygons: every predicted pixel in exactly one class's regions (the
  ignore label in none), holes kept, corners on the raster's grid, and a simplification that
  keeps each outline within its tolerance."""
  import affine  # pylint: disable=import-outside-toplevel
  from rasterio.crs import CRS  # pylint: disable=import-outside-toplevel
  import shapely.geometry  # pylint: disable=import-outside-toplevel
  from inference import vectors  # pylint: disable=import-outside-toplevel
  mask = np.zeros((40, 50), np.uint8)
  mask[5:25, 5:25] = 1
  mask[10:15, 10:15] = 0  # A hole in the square.
  rows, cols = np.mgrid[:40, :50]
  mask[(rows - 28) ** 2 + (cols - 38) ** 2 < 81] = 2  # A disc.
  mask[36:, :4] = IGNORE
  grid = affine.Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 4000000.0)  # 10 m pixels, north up.
  exact = vectors.polygons(mask, ('ground', 'square', 'disc'), grid, CRS.from_epsg(32633), 0)
  assert exact['crs']['properties']['name'] == 'urn:ogc:def:crs:EPSG::32633'
  by_class = {}
  for feature in exact['features']:
    shape = shapely.geometry.shape(feature['geometry'])
    by_class.setdefault(feature['properties']['class'], []).append(shape)
    assert shape.area == feature['properties']['pixels'] * 100.0
  for index, name in enumerate(('ground', 'square', 'disc')):
    assert sum(s.area for s in by_class[name]) == np.sum(mask == index) * 100.0, name
  (square,) = by_class['square']
  assert len(square.interiors) == 1 and square.bounds == (500050.0, 3999750.0, 500250.0,
                                                          3999950.0)
  (disc,) = by_class['disc']
  simple = shapely.geometry.shape(next(f['geometry'] for f in vectors.polygons(
      mask, ('ground', 'square', 'disc'), grid, None, 1.5)['features']
                                       if f['properties']['class'] == 'disc'))
  assert len(simple.exterior.coords) < len(disc.exterior.coords)
  assert disc.hausdorff_distance(simple) <= 15.0  # 1.5 pixels of 10 m.
  labels = np.stack([mask == 1, (mask == 1) | (mask == 2)], axis=-1).astype(np.uint8)
  overlapping = vectors.polygons(labels, ('square', 'blob'), None, None, 0)  # In pixels.
  areas = {f['properties']['class']: f['properties']['pixels'] for f in overlapping['features']
           if f['properties']['class'] == 'square'}
  assert areas['square'] == np.sum(mask == 1) and 'crs' not in overlapping
  assert sum(f['properties']['pixels'] for f in overlapping['features']
             if f['properties']['class'] == 'blob') == np.sum((mask == 1) | (mask == 2))
