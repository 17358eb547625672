"""Pictures with any number of bands (data.bands): rasters read in their own values, their
statistics, the stem carried from RGB, every model on 1, 4 and 13 bands, and a 4-band 16-bit
GeoTIFF set through check_data, training, predict, score and export, with its bad inputs."""

import csv
import json
import os

import keras
import numpy as np
import pytest
import rasterio
import tensorflow as tf

from data import decode
from data import files_pairing
from data import files_source
from data import masks as masks_lib
from data import rasters
from data import synthetic
from errors import ConfigError, DataError
from interpretability import colormaps
from modeling import backbones
from modeling import blocks
from modeling import models
from modeling import sliding
from modeling import weights as weights_lib
import specs
import tasks
from tasks import IGNORE
from tests.conftest import data_spec, main_in_process, model_config
from tests.test_models import zoo_model_config


def _write_tiff(path: str, pixels: np.ndarray, **profile) -> None:
  """pixels [H, W, B] as a GeoTIFF written by GDAL with `profile`'s options."""
  height, width, count = pixels.shape
  with rasterio.open(path, 'w', driver='GTiff', width=width, height=height, count=count,
                     dtype=pixels.dtype.name, **profile) as out:
    out.write(np.moveaxis(pixels, -1, 0))


@pytest.mark.parametrize('dtype, profile', [
    ('uint16', dict(interleave='band', compress='deflate', tiled=True, blockxsize=16,
                    blockysize=16)),
    ('uint16', dict(interleave='pixel', compress='lzw')),
    ('int16', dict(compress='packbits')),
    ('float32', dict(tiled=True, blockxsize=32, blockysize=32, compress='zstd')),
    ('uint8', dict()),
])
def test_geotiffs_as_gdal_writes_them_read_in_their_own_values(dtype, profile, tmp_path):
  info = np.iinfo(dtype) if dtype != 'float32' else None
  rng = np.random.default_rng(0)
  pixels = (rng.integers(info.min, info.max, (40, 48, 5), endpoint=True) if info else
            rng.normal(0, 3e4, (40, 48, 5))).astype(dtype)
  path = str(tmp_path / 'scene.tif')
  _write_tiff(path, pixels, **profile)
  read = rasters.read(path, rasters.BandSpec(5))
  assert read.dtype == dtype and read.file_bands == 5
  np.testing.assert_array_equal(read.pixels, pixels.astype(np.float32))
  chosen = rasters.read(path, rasters.BandSpec(3, read=(4, 1, 5)))
  np.testing.assert_array_equal(chosen.pixels, pixels[..., [3, 0, 4]].astype(np.float32))
  encoded = rasters.serialize(read.pixels, read.dtype)
  stored = rasters.decode(tf.constant(encoded), 5).numpy()
  np.testing.assert_array_equal(stored, read.pixels)  # The prepared set is lossless,
  assert len(encoded) < pixels.nbytes + 100  # and in the file's own type where it can be.


def test_npy_and_16_bit_png_keep_every_value(tmp_path):
  deep = np.random.default_rng(1).integers(0, 65535, (20, 30, 1), endpoint=True).astype(np.uint16)
  tf.io.write_file(str(tmp_path / 'deep.png'), tf.io.encode_png(deep))
  np.testing.assert_array_equal(rasters.read(str(tmp_path / 'deep.png'),
                                             rasters.BandSpec(1)).pixels, deep)
  volume = np.random.default_rng(2).normal(size=(20, 30, 7)).astype(np.float32)
  np.save(tmp_path / 'mri.npy', volume)
  np.testing.assert_array_equal(rasters.read(str(tmp_path / 'mri.npy'),
                                             rasters.BandSpec(7)).pixels, volume)
  np.save(tmp_path / 'grey.npy', volume[..., 0])
  assert rasters.read(str(tmp_path / 'grey.npy'), rasters.BandSpec(1)).pixels.shape == (20, 30, 1)


def test_rasters_that_do_not_fit_are_named_with_the_fix(tmp_path):
  path = str(tmp_path / 'scene.tif')
  _write_tiff(path, np.zeros((8, 8, 4), np.uint16))
  with pytest.raises(rasters.BandsError, match=r'scene.tif has 4 bands; data.bands=13\. Set '
                     'data.bands'):
    rasters.read(path, rasters.BandSpec(13))
  with pytest.raises(rasters.BandsError, match='scene.tif has 4 bands; data.read_bands asks '
                     'for band 8 .bands are numbered from 1'):
    rasters.read(path, rasters.BandSpec(2, read=(2, 8)))
  (tmp_path / 'broken.tif').write_bytes(b'II*\x00' + b'\x00' * 20)
  with pytest.raises(DataError, match='broken.tif cannot be read as a raster .rasterio/GDAL: '):
    rasters.read(str(tmp_path / 'broken.tif'), rasters.BandSpec(4))
  with pytest.raises(DataError, match='photo.jpg: data.bands reads GeoTIFF/TIFF, .npy and PNG'):
    rasters.read(str(tmp_path / 'photo.jpg'), rasters.BandSpec(3))


def test_band_statistics_stream_to_the_statistics_of_all_valid_pixels():
  rng = np.random.default_rng(3)
  pictures = [rng.normal([100, 5000, -3], [10, 800, 2], (h, 20, 3)).astype(np.float32)
              for h in (10, 17, 31)]
  pictures[1][:4] = 0.0  # nodata in every band: left out.
  pictures[2][0, :5, 1] = 0.0  # 0 in one band only: a value, kept.
  pictures[2][1, :3] = np.nan  # NaN in every band: left out.
  streamed = rasters.BandStats(3)
  for picture in pictures:
    part = rasters.BandStats(3)
    part.add(picture, rasters.valid_pixels(picture, nodata=0.0))
    streamed.merge(part)
  values = np.concatenate([p[rasters.valid_pixels(p, 0.0)] for p in pictures]).astype(np.float64)
  result = streamed.result()
  assert len(values) == 10 * 20 + 13 * 20 + 31 * 20 - 3
  np.testing.assert_allclose(result['mean'], values.mean(0), rtol=1e-6)
  np.testing.assert_allclose(result['std'], values.std(0), rtol=1e-5)
  np.testing.assert_allclose(result['min'], values.min(0))
  np.testing.assert_allclose(result['nodata_fraction'], 83 / (58 * 20), rtol=1e-5)


def test_band_normalization_feeds_the_model_z_scores_and_0_where_nothing_was_measured():
  layer = blocks.BandNormalization(nodata=-9999.0, dtype='float32')
  layer.build((None, None, None, 2))
  layer.mean.assign([1000.0, 20.0])
  layer.std.assign([100.0, 4.0])
  pixels = np.array([[[[1100.0, 12.0], [-9999.0, -9999.0], [-9999.0, 24.0],
                       [np.nan, 28.0], [np.nan, np.nan]]]], np.float32)
  expected = [[1.0, -2.0], [0.0, 0.0], [(-9999.0 - 1000.0) / 100.0, 1.0], [0.0, 2.0], [0, 0]]
  np.testing.assert_allclose(layer(pixels).numpy()[0, 0], expected, rtol=1e-6)


def test_an_rgb_stem_carried_to_n_bands_answers_as_the_rgb_model_when_extra_bands_are_zero():
  """segmentation_models.pytorch's rule on a zoo encoder: RGB kernels repeated over the bands,
  scaled by 3/N. With the extra bands 0 and the RGB kernels scaled back by N/3 the 4-band
  model's output is the RGB model's; one band (kernels summed) of a grey picture likewise."""
  keras.utils.set_random_seed(5)
  rgb_config = model_config('unet', backbone='resnet18', decoder_widths=(8,))
  rgb = models.build_model(rgb_config, 32, 3)
  scale, offset, _ = backbones.preprocessing('resnet18', None)
  picture = np.random.default_rng(6).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
  expected = rgb(picture).numpy()
  for bands in (4, 1):
    model = models.build_model(model_config('unet', backbone='resnet18', decoder_widths=(8,),
                                            input_bands=bands), 32, 3)
    restored, new = weights_lib.transfer(rgb, model)
    assert restored == len(model.weights) - 2 and len(new) == 2  # All but mean/std.
    mean = -np.asarray(offset) / np.asarray(scale)  # The RGB model's own normalisation.
    std = 1.0 / np.asarray(scale)
    stem = next(v for v in model.weights if len(v.shape) == 4 and v.shape[-2] == bands)
    if bands == 4:
      models.set_band_statistics(model, [*mean, 0.0], [*std, 1.0])
      stem.assign(stem.numpy() * np.array([4 / 3] * 3 + [1.0])[:, None])
      inputs = np.concatenate([picture, np.zeros_like(picture[..., :1])], -1)
      reference = expected
    else:  # A grey picture: the RGB model gets the same normalised value in R, G and B.
      models.set_band_statistics(model, [128.0], [64.0])
      inputs = picture[..., :1]
      reference = rgb((inputs - 128.0) / 64.0 * std + mean).numpy()
    np.testing.assert_allclose(model(inputs).numpy(), reference, atol=2e-5)


BAND_MODELS = {name: 71 if name == 'xception' else 64 if name in ('segformer',) else 32
               for name in models.names()}


@pytest.mark.slow
@pytest.mark.parametrize('name', models.names())
def test_every_model_builds_and_trains_a_step_on_1_4_and_13_bands(name):
  size = BAND_MODELS[name]
  for bands in (1, 4, 13):
    config = zoo_model_config(name)
    config.input_bands = bands
    model = models.build_model(config, size, 3)
    assert model.input_shape == (None, size, size, bands)
    models.set_band_statistics(model, [1000.0] * bands, [300.0] * bands)
    pictures = np.random.default_rng(bands).uniform(0, 4000, (2, size, size, bands))
    classification = len(model.output_shape) == 2
    labels = (np.array([0, 1]) if classification else
              np.random.default_rng(0).integers(0, 3, (2, size, size)))
    before = [v.numpy() for v in model.trainable_weights]
    with tf.GradientTape() as tape:
      probabilities = model(pictures.astype(np.float32), training=True)
      loss = keras.losses.sparse_categorical_crossentropy(labels, probabilities) if \
          probabilities.shape[-1] > 1 else keras.losses.binary_crossentropy(
              labels[:, None].astype(np.float32), probabilities)
    gradients = tape.gradient(loss, model.trainable_weights)
    keras.optimizers.SGD(0.01).apply(gradients, model.trainable_weights)
    assert np.isfinite(np.mean(loss)), (name, bands)
    assert any(not np.allclose(b, v.numpy()) for b, v in zip(before, model.trainable_weights))


@pytest.fixture(scope='module')
def geotiff_set(tmp_path_factory):
  """A 4-band uint16 GeoTIFF set with PNG masks (data/synthetic.py), its truth by stem."""
  folder = str(tmp_path_factory.mktemp('multispectral'))
  return folder, synthetic.write_multispectral(folder, count=12, size=32)


def _args(folder: str, workdir: str, *more) -> list:
  return ['--config=configs/own_multispectral.py', f'--workdir={workdir}',
          f'--config.data.files.train_images={folder}/train/images',
          f'--config.data.files.train_masks={folder}/train/masks',
          f'--config.data.files.test_images={folder}/test/images',
          f'--config.data.files.test_masks={folder}/test/masks',
          '--config.data.image_size=32', '--config.model.widths=(8, 16, 32, 64)',
          '--config.train.global_batch_size=4', '--config.eval.global_batch_size=4',
          '--config.train.steps=6', '--config.train.steps_per_epoch=3',
          '--config.train.warmup_steps=0', '--config.train.steps_per_call=3',
          '--config.summaries.num_images=2', '--config.summaries.explain_every_epochs=2',
          '--config.summaries.explain.num_filters=2',
          '--config.summaries.explain.num_filter_layers=1',
          '--config.summaries.explain.num_activation_layers=1',
          '--config.data.validation_fraction=0.3', *more]


@pytest.mark.slow
def test_a_geotiff_set_checks_trains_predicts_scores_and_exports(geotiff_set, tmp_path, capsys,
                                                                 monkeypatch):
  folder, truth = geotiff_set
  workdir = str(tmp_path / 'run')
  status, stderr = main_in_process(capsys, *_args(folder, workdir, '--mode=check_data'))
  printed = capsys.readouterr().out
  assert status == 0, stderr[-2000:]
  assert 'sample types: uint16' in printed and 'No problems found.' in printed
  band_lines = [line.split() for line in printed.splitlines() if line.startswith('     ')]
  assert [row[0] for row in band_lines] == ['1', '2', '3', '4']
  assert float(band_lines[3][3]) > 1.5 * float(band_lines[0][3])  # NIR is the brightest band.
  status, stderr = main_in_process(capsys, *_args(folder, workdir))
  assert status == 0, stderr[-2000:]
  model = keras.models.load_model(os.path.join(workdir, 'best_model.keras'))
  assert model.input_shape[-1] == 4
  layer = blocks.band_normalization(model)
  prepared = [json.load(open(p)) for p in _reports(workdir)]
  np.testing.assert_allclose(layer.mean.numpy(), prepared[0]['bands']['mean'], rtol=1e-5)
  tif = os.path.join(folder, 'test', 'images', 'test_000.tif')
  status, stderr = main_in_process(capsys, *_args(
      folder, workdir, '--mode=predict', f'--images={tif}', '--config.predict.vectors=True',
      '--config.predict.probabilities=True'))
  assert status == 0, stderr[-2000:]
  mask = tf.io.decode_png(tf.io.read_file(os.path.join(workdir, 'predict',
                                                       'test_000_mask.png'))).numpy()
  overlay = tf.io.decode_png(tf.io.read_file(os.path.join(workdir, 'predict',
                                                          'test_000_overlay.png'))).numpy()
  assert mask.shape[:2] == truth['test_000'].shape and overlay.shape[0] > 32  # Legend below.
  with rasterio.open(os.path.join(workdir, 'predict', 'test_000_mask.tif')) as on_map, \
      rasterio.open(tif) as source:  # The mask on the source's grid.
    assert (on_map.crs, on_map.transform) == (source.crs, source.transform)
    assert on_map.nodata == IGNORE and on_map.profile['tiled']
    np.testing.assert_array_equal(on_map.read(1), mask[..., 0])
    with rasterio.open(os.path.join(workdir, 'predict', 'test_000_probabilities.tif')) as odds:
      assert (odds.crs, odds.transform, odds.count) == (source.crs, source.transform, 3)
      answered = np.moveaxis(odds.read(), 0, -1)  # Its mask's class is each pixel's likeliest.
      np.testing.assert_allclose(answered.sum(-1), 1.0, atol=1e-4)
      np.testing.assert_array_equal(answered.argmax(-1), mask[..., 0])
    with open(os.path.join(workdir, 'predict', 'test_000_mask.geojson')) as f:
      regions = json.load(f)  # Its regions on the map, every predicted pixel in one.
    assert regions['crs']['properties']['name'].endswith(str(source.crs.to_epsg()))
    assert sum(f['properties']['pixels'] for f in regions['features']) == mask.size
    left, bottom, right, top = source.bounds
    corners = np.concatenate([np.asarray(ring).reshape(-1, 2) for f in regions['features']
                              for ring in f['geometry']['coordinates']])
    assert corners[:, 0].min() >= left - 1e-6 and corners[:, 1].max() <= top + 1e-6
  # Sliding, read whole and read a strip at a time (as a raster too large to hold is): the
  # same masks, probabilities and uncertainty.
  from inference import predict  # pylint: disable=import-outside-toplevel
  outputs, strip_reads, strip_mask = {}, [], predict._strip_mask
  monkeypatch.setattr(predict, '_strip_mask',
                      lambda *args, **kwargs: strip_reads.append(args[0]) or strip_mask(
                          *args, **kwargs))
  for read, strip_pixels in (('whole', predict.STRIP_PIXELS), ('strips', 0)):
    monkeypatch.setattr(predict, 'STRIP_PIXELS', strip_pixels)
    out = str(tmp_path / read)
    status, stderr = main_in_process(capsys, *_args(
        folder, workdir, '--mode=predict', f'--images={tif}', f'--output={out}',
        '--config.predict.mode=slide', '--config.predict.probabilities=True',
        '--config.predict.uncertainty=True'))
    assert status == 0, stderr[-2000:]
    with rasterio.open(os.path.join(out, 'test_000_probabilities.tif')) as odds:
      outputs[read] = [odds.read()] + [tf.io.decode_png(tf.io.read_file(os.path.join(
          out, f'test_000_{kind}.png'))).numpy() for kind in ('mask', 'uncertainty')]
  assert strip_reads == [tif]  # Read in strips the second time only.
  np.testing.assert_allclose(outputs['strips'][0], outputs['whole'][0], atol=1e-5)
  np.testing.assert_array_equal(outputs['strips'][1], outputs['whole'][1])
  assert np.mean(outputs['strips'][2] == outputs['whole'][2]) > 0.999
  status, stderr = main_in_process(capsys, *_args(folder, workdir, '--mode=score'))
  assert status == 0, stderr[-2000:]
  with open(os.path.join(workdir, 'score.json')) as f:
    scored = json.load(f)
  assert scored['num_pictures'] == len([s for s in truth if s.startswith('test')])
  with open(os.path.join(workdir, 'score_pictures.csv')) as f:  # Sums back to score.json.
    rows = list(csv.DictReader(f))
  assert len(rows) == scored['num_pictures']
  assert [float(r['mean_iou']) for r in rows] == sorted(float(r['mean_iou']) for r in rows)
  total = lambda column: sum(int(r[column]) for r in rows)
  assert abs(total('correct') / total('pixels') - scored['pixel_accuracy']) < 1e-4
  for name in synthetic.MULTISPECTRAL_CLASSES:
    assert abs(total(f'intersection/{name}') / max(total(f'union/{name}'), 1)
               - scored[f'iou/{name}']) < 1e-4, name
  worst = sorted(os.listdir(os.path.join(workdir, 'score_worst')))  # Worst first, drawn.
  assert worst[0] == f'01_{rows[0]["picture"]}.png' and len(worst) == len(rows)
  drawn = tf.io.decode_png(tf.io.read_file(os.path.join(workdir, 'score_worst', worst[0])))
  assert drawn.shape[1] == 4 * 32 + 3 * 4  # Picture, truth, prediction, errors.
  shown = {}  # The same gallery in TensorBoard's score run, a tag a rank.
  for path in tf.io.gfile.glob(os.path.join(workdir, 'score', 'events.*')):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        shown[value.tag] = tf.io.decode_png(value.tensor.string_val[2]).numpy()
  assert sorted(shown) == [f'score_worst/{rank:02d}' for rank in range(1, len(worst) + 1)]
  np.testing.assert_array_equal(shown['score_worst/01'], drawn.numpy())
  status, stderr = main_in_process(capsys, *_args(folder, workdir, '--mode=export',
                                                  '--config.export.format=onnx'))
  assert status == 0, stderr[-2000:]
  with open(os.path.join(workdir, 'export', 'onnx', 'export.json')) as f:
    record = json.load(f)
  assert record['pictures'] == {'bands': 4, 'dtype': 'uint16', 'nodata': None}
  assert record['check']['passed']


def _reports(workdir: str) -> list:
  found = []
  for root, _, files in os.walk(os.path.join(workdir, 'prepared_data')):
    found += [os.path.join(root, f) for f in files if f == files_source.REPORT_FILE]
  return found


def test_bad_rasters_are_named_before_anything_is_prepared(tmp_path):
  """Another band count, another sample type mid-set, NaN without data.nodata, a file the
  reader cannot open: each named in the check's table, nothing prepared."""
  from tests.conftest import small_config  # pylint: disable=import-outside-toplevel
  folder = str(tmp_path / 'set')
  synthetic.write_multispectral(folder, count=6, size=16, splits=('train',))
  images = os.path.join(folder, 'train', 'images')
  _write_tiff(os.path.join(images, 'train_001.tif'), np.zeros((16, 16, 3), np.uint16))
  _write_tiff(os.path.join(images, 'train_002.tif'), np.zeros((16, 16, 4), np.float32))
  nan = np.zeros((16, 16, 4), np.float32)
  nan[3, 3] = np.nan
  _write_tiff(os.path.join(images, 'train_003.tif'), nan)
  with open(os.path.join(images, 'train_004.tif'), 'wb') as f:
    f.write(b'not a tiff')
  config = small_config(data__source='files', data__bands=4, data__files__train_images=images,
                        data__files__train_masks=os.path.join(folder, 'train', 'masks'),
                        data__class_names=synthetic.MULTISPECTRAL_CLASSES)
  _, report = files_source.check(data_spec(config))
  text = report.format()
  assert 'train_001.tif has 3 bands; data.bands=4' in text
  assert 'float rasters with NaN pixels and no data.nodata' in text and 'train_003' in text
  assert 'train_004.tif cannot be read as a raster (rasterio/GDAL' in text
  assert 'PROBLEM train: 1 rasters of another sample type' in text  # train_003 is unusable.
  assert 'train_002.tif (float32; most are uint16)' in text
  assert not os.path.exists(tmp_path / 'prepared')
  config = small_config(data__source='files', data__bands=4, data__nodata=0.0,
                        data__files__train_images=images,
                        data__files__train_masks=os.path.join(folder, 'train', 'masks'),
                        data__class_names=synthetic.MULTISPECTRAL_CLASSES)
  _, report = files_source.check(data_spec(config))
  text = report.format()
  assert 'PROBLEM train: 2 rasters of another sample type' in text  # NaN is nodata now.
  assert 'train_003.tif (float32; most are uint16)' in text


def test_nodata_pixels_become_the_ignore_label_of_the_prepared_mask(tmp_path):
  pixels = np.full((6, 8, 2), 500, np.uint16)
  pixels[:2, :3] = 65535
  pixels[4, 4, 0] = 65535  # Missing in one band only: still a measurement.
  _write_tiff(str(tmp_path / 'a.tif'), pixels)
  tf.io.write_file(str(tmp_path / 'a.png'), tf.io.encode_png(np.ones((6, 8, 1), np.uint8)))
  example = files_pairing.Example('a', str(tmp_path / 'a.tif'), str(tmp_path / 'a.png'))
  scanned = files_source.scan_example(
      example, masks_lib.MaskEncoding(2, None), rasters.BandSpec(2, nodata=65535.0))
  classes = tf.io.decode_png(scanned.mask_png).numpy()[..., 0]
  assert (classes[:2, :3] == masks_lib.IGNORE).all() and classes[4, 4] == 1
  assert (classes != masks_lib.IGNORE).sum() == 6 * 8 - 6
  measured = pixels[~(pixels == 65535).all(-1)].astype(np.float64)  # 42 pixels.
  np.testing.assert_allclose(scanned.bands.result()['mean'], measured.mean(0), rtol=1e-6)


def test_raster_files_are_pictures_only_where_data_bands_reads_them(tmp_path):
  """A class tree (classification) or a picture folder of GeoTIFFs and .npy arrays: found with
  data.bands, left alone for photos (whose decoders would refuse them)."""
  for name in ('crops', 'water'):
    os.makedirs(tmp_path / name)
    _write_tiff(str(tmp_path / name / 'a.tif'), np.zeros((4, 4, 13), np.uint16))
    np.save(tmp_path / name / 'b.npy', np.zeros((4, 4, 13), np.float32))
    tf.io.write_file(str(tmp_path / name / 'c.jpg'), tf.io.encode_jpeg(np.zeros((4, 4, 3),
                                                                                np.uint8)))
  rasters_found = files_pairing.classify_split(str(tmp_path), ('crops', 'water'), 'f', {},
                                               bands=13)
  assert sorted(os.path.basename(e.image) for e in rasters_found) == ['a.tif'] * 2 + ['b.npy'] * 2
  photos = files_pairing.classify_split(str(tmp_path), ('crops', 'water'), 'f', {})
  assert sorted(os.path.basename(e.image) for e in photos) == ['c.jpg'] * 2


def test_sliding_windows_carry_every_band():
  """Sliding-window prediction (data.resize=none) hands each window all its bands: a per-pixel
  answer read from bands 4 and 5 comes back as those bands, overlaps averaged."""
  pictures = tf.random.stateless_uniform([2, 50, 70, 5], [0, 1], 0, 4000)
  answer = lambda windows: windows[..., 3:5]
  for per_call in (0, 3):
    slid = sliding.slide(answer, pictures, (32, 32), (20, 20), 2, windows_per_call=per_call)
    np.testing.assert_allclose(slid.numpy(), pictures[..., 3:5].numpy(), rtol=1e-5)


def test_missing_values_are_filled_with_the_band_mean_before_anything_resizes_them():
  """A nodata strip of -9999 resized with its neighbours would give outliers the model never
  saw; the prepared set (rasters.filled) and the predictor (BandNormalization.filled) both put
  the band's mean there first, so the resized edge stays within the measured values."""
  pixels = np.full((8, 12, 2), 0.2, np.float32)
  pixels[..., 1] = 0.4
  pixels[:, :3] = -9999.0
  pixels[5, 6, 0] = np.nan
  mean = [0.25, 0.5]
  stored = rasters.filled(pixels, -9999.0, mean)
  layer = blocks.BandNormalization(nodata=-9999.0, dtype='float32')
  layer.build((None, None, None, 2))
  layer.mean.assign(mean)
  np.testing.assert_array_equal(layer.filled(pixels[None]).numpy()[0], stored)
  np.testing.assert_array_equal(stored[:, :3], np.broadcast_to(mean, (8, 3, 2)))
  assert stored[5, 6, 0] == 0.25 and stored[5, 6, 1] == 0.4
  resized = tf.image.resize(stored[None], (4, 6), antialias=True).numpy()
  assert resized.min() >= 0.2 - 1e-6 and resized.max() <= 0.5 + 1e-6


def test_the_predictor_fills_missing_values_before_it_resizes():
  """A raster with a -9999 strip predicts as the same raster with the band means there (what
  the model makes of missing values), at a size that needs resizing: the strip is filled
  before the resize, not blended into its neighbours."""
  from inference.predictor import Predictor  # pylint: disable=import-outside-toplevel
  from tests.conftest import small_config  # pylint: disable=import-outside-toplevel
  config = small_config(settle=False)
  config.model = model_config('book_segmentation', input_bands=2, input_nodata=-9999.0)
  keras.utils.set_random_seed(3)
  model = models.build_model(config.model, 32, 3)
  models.set_band_statistics(model, [0.25, 0.5], [0.1, 0.1])
  picture = np.random.default_rng(4).normal([0.25, 0.5], 0.1, (1, 45, 57, 2)).astype(np.float32)
  missing, filled = picture.copy(), picture.copy()
  missing[:, :, :6] = -9999.0
  filled[:, :, :6] = [0.25, 0.5]
  predictor = Predictor(model, specs.describe(config))
  np.testing.assert_allclose(predictor.probabilities(tf.constant(missing)).numpy(),
                             predictor.probabilities(tf.constant(filled)).numpy(), atol=1e-5)


def test_geotiff_masks_beside_rasters_are_read_as_their_first_band(tmp_path):
  """Remote-sensing sets ship their labels as GeoTIFFs too: a uint8 single-band mask with the
  raster's transform pairs with its picture (data.bands only) and keeps every class id."""
  for kind in ('images', 'masks'):
    os.makedirs(tmp_path / kind)
  _write_tiff(str(tmp_path / 'images' / 'tile.tif'), np.ones((12, 10, 4), np.uint16),
              crs='EPSG:32633', transform=rasterio.transform.from_origin(500000, 5e6, 10, 10))
  classes = np.random.default_rng(7).integers(0, 3, (12, 10, 1)).astype(np.uint8)
  _write_tiff(str(tmp_path / 'masks' / 'tile.tif'), classes, compress='deflate',
              crs='EPSG:32633', transform=rasterio.transform.from_origin(500000, 5e6, 10, 10))
  from configs import base  # pylint: disable=import-outside-toplevel
  files = base.get_base_config().data.files
  files.train_images, files.train_masks = str(tmp_path / 'images'), str(tmp_path / 'masks')
  problems = {}
  (example,) = files_pairing.pair_split(files, 'train', problems, bands=4)
  assert example.target.endswith('tile.tif') and not any(problems.values())
  assert files_pairing.pair_split(files, 'train', {}, bands=0) == []  # Photos: no TIFFs.
  scanned = files_source.scan_example(example, masks_lib.MaskEncoding(3, None),
                                      rasters.BandSpec(4))
  assert scanned.problem is None
  np.testing.assert_array_equal(tf.io.decode_png(scanned.mask_png).numpy(), classes)


def test_raster_colour_jitter_changes_only_the_bands_asked_for_in_their_own_units():
  """Brightness and contrast on jitter_bands alone, values never squashed into 0-255; noise
  follows each band's own spread; flips move every band and the mask together."""
  from data import augment as augment_lib  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(0)
  pixels = np.stack([rng.uniform(2000, 9000, (4, 16, 16)), rng.uniform(0, 1, (4, 16, 16)),
                     rng.uniform(2000, 9000, (4, 16, 16)), rng.uniform(-30, -5, (4, 16, 16)),
                     rng.uniform(100, 300, (4, 16, 16))], -1).astype(np.float32)
  mask = rng.integers(0, 3, (4, 16, 16, 1)).astype(np.uint8)
  batch = {'image': tf.constant(pixels), 'label': tf.constant(mask)}
  seed = tf.constant([3, 4], tf.int64)
  jitter = augment_lib.Augmentation(color_jitter=0.4, jitter_bands=(0, 2))
  out = augment_lib.augment(batch, seed, jitter)['image'].numpy()
  np.testing.assert_array_equal(out[..., [1, 3, 4]], pixels[..., [1, 3, 4]])
  assert all(np.abs(out[..., b] - pixels[..., b]).max() > 50 for b in (0, 2))
  assert out[..., 0].max() > 1000  # Its own units, not 0-255.
  ratio = out[..., 0].mean(axis=(1, 2)) / pixels[..., 0].mean(axis=(1, 2))
  assert np.all(np.abs(ratio - 1) <= 0.4 + 1e-4) and np.ptp(ratio) > 0.01  # Its own gain.
  noisy = augment_lib.augment(batch, seed, augment_lib.Augmentation(noise=0.5))['image']
  change = np.abs(noisy.numpy() - pixels).mean(axis=(0, 1, 2))
  spread = pixels.std(axis=(1, 2)).mean(axis=0)
  np.testing.assert_allclose(change / spread, (change / spread)[0], rtol=0.3)
  flipped = augment_lib.augment(batch, seed, augment_lib.Augmentation(flip=True))
  for picture, label, out_picture, out_label in zip(pixels, mask, flipped['image'].numpy(),
                                                    flipped['label'].numpy()):
    mirrored = not np.array_equal(out_picture, picture)
    np.testing.assert_array_equal(out_picture, picture[:, ::-1] if mirrored else picture)
    np.testing.assert_array_equal(out_label, label[:, ::-1] if mirrored else label)


@pytest.mark.parametrize('override, message', [
    (dict(data__augment__hue=0.1), 'data.augment.hue changes a photo\'s colours'),
    (dict(data__augment__jitter_bands=(5,)), 'data.augment.jitter_bands=(5,): give band numbers'),
])
def test_raster_augmentations_that_cannot_apply_are_named(override, message, tmp_path):
  from tests.conftest import small_config  # pylint: disable=import-outside-toplevel
  files = dict(data__source='files', data__bands=4, data__files__train_images=str(tmp_path),
               data__files__train_masks=str(tmp_path))
  with pytest.raises(ConfigError, match=message.replace('(', r'\(').replace(')', r'\)')):
    small_config(**files, **override)
  small_config(**files, data__augment__color_jitter=0.3, data__augment__noise=0.1,
               data__augment__blur=0.5)


def test_a_nodata_tag_that_marks_pixels_is_named_until_data_nodata_says_it(tmp_path):
  """GDAL's own nodata tag: pixels it marks are not measurements, so they are never trained
  on as values without a word; a tag that marks no pixel is no problem."""
  from tests.conftest import small_config  # pylint: disable=import-outside-toplevel
  folder = str(tmp_path / 'set')
  synthetic.write_multispectral(folder, count=4, size=16, splits=('train',))
  images = os.path.join(folder, 'train', 'images')
  gap = rasters.read(os.path.join(images, 'train_001.tif'), rasters.BandSpec(4)).pixels
  gap = gap.astype(np.uint16)
  gap[:4] = 0
  _write_tiff(os.path.join(images, 'train_001.tif'), gap, nodata=0)
  _write_tiff(os.path.join(images, 'train_002.tif'), gap[4:8].repeat(4, axis=0), nodata=0)

  def report_text(**nodata):
    config = small_config(data__source='files', data__bands=4, data__files__train_images=images,
                          data__files__train_masks=os.path.join(folder, 'train', 'masks'),
                          data__class_names=synthetic.MULTISPECTRAL_CLASSES, **nodata)
    return files_source.check(data_spec(config))[1].format()
  text = report_text()
  assert '1 rasters whose own nodata tag marks pixels that data.nodata does not' in text
  assert 'train_001.tif (tag 0: 25.0% of its pixels)' in text and 'set data.nodata' in text
  assert 'train_002' not in text  # Tagged, but no pixel has the tag.
  assert 'nodata tag' not in report_text(data__nodata=0.0)
  from inference import loading  # pylint: disable=import-outside-toplevel
  read = loading.read_picture(os.path.join(images, 'train_001.tif'), rasters.BandSpec(4))
  assert np.isnan(read[:4]).all() and not np.isnan(read[4:]).any()  # Predict fills them.


def test_filter_patterns_of_a_raster_model_are_shown_on_its_rgb_bands():
  from interpretability import filters  # pylint: disable=import-outside-toplevel
  patterns = np.random.default_rng(0).normal(size=(3, 20, 20, 5)).astype(np.float32)
  first_three = filters.pattern_grid(patterns)
  shown = filters.pattern_grid(patterns, rgb_bands=(3, 2, 1))
  np.testing.assert_array_equal(shown, first_three[..., ::-1])
  assert not np.array_equal(filters.pattern_grid(patterns, rgb_bands=(5, 4, 1)), first_three)


def test_an_integer_export_is_fed_missing_pixels_as_the_nodata_value_it_was_trained_with(
    tmp_path):
  from inference import artifacts  # pylint: disable=import-outside-toplevel
  from errors import UserError  # pylint: disable=import-outside-toplevel

  @tf.function(input_signature=[tf.TensorSpec([None, None, None, 2], tf.uint16,
                                              name='pictures')])
  def serve(pictures):
    values = tf.cast(pictures, tf.float32)
    return {'masks': tf.cast(values[..., 0] > 100, tf.uint8), 'probabilities': values}
  module = tf.Module()
  module.serve = serve
  folder = str(tmp_path / 'export')
  tf.saved_model.save(module, folder)
  picture = np.full((1, 3, 3, 2), 500, np.float32)
  picture[0, 0, 0] = np.nan
  with open(os.path.join(folder, artifacts.RECORD), 'w') as f:
    json.dump({'pictures': {'bands': 2, 'dtype': 'uint16', 'nodata': 65535}}, f)
  out = artifacts.Artifact(folder).outputs(picture)
  assert out['probabilities'][0, 0, 0, 0] == 65535 and out['probabilities'][0, 1, 1, 0] == 500
  with open(os.path.join(folder, artifacts.RECORD), 'w') as f:
    json.dump({'pictures': {'bands': 2, 'dtype': 'uint16', 'nodata': None}}, f)
  with pytest.raises(UserError, match='takes uint16 pictures and knows no nodata value'):
    artifacts.Artifact(folder).outputs(picture)


@pytest.mark.parametrize('task', ['segmentation', 'multilabel'])
def test_a_raster_read_a_strip_at_a_time_gets_the_masks_of_the_whole_picture(tmp_path, task,
                                                                             monkeypatch):
  """Strips of window rows, their sums carried across, mirrored views, a nodata tag and a
  picture whose last window is flush with its end: the labels equal the whole picture's (and
  multi-label thresholds read the same averaged probabilities), and so do the probabilities
  TIFF (written a row of tiles at a time) and the uncertainty picture."""
  from inference import predict  # pylint: disable=import-outside-toplevel
  from inference.predictor import Predictor  # pylint: disable=import-outside-toplevel
  from tests.conftest import small_config  # pylint: disable=import-outside-toplevel
  config = small_config(settle=False)
  config.model = model_config('book_segmentation', input_bands=3)
  config.predict.mode, config.predict.window, config.predict.stride = 'slide', (24, 24), (16, 14)
  config.predict.flip, config.predict.windows_per_call = True, 5
  keras.utils.set_random_seed(5)
  head = tasks.TASKS[task].head_activation
  model = models.build_model(config.model, 24, 3, head=head)
  models.set_band_statistics(model, [300.0, 500.0, 700.0], [50.0, 80.0, 90.0])
  pixels = np.random.default_rng(6).normal([300, 500, 700], [50, 80, 90], (107, 75, 3))
  pixels = pixels.clip(1, None).astype(np.uint16)
  pixels[40:52, 10:30] = 0
  path = str(tmp_path / 'scene.tif')
  _write_tiff(path, pixels, nodata=0, tiled=True, blockxsize=16, blockysize=16)
  predictor = Predictor(model, specs.describe(config), tasks.TASKS[task])
  assert predictor.reads_in_strips
  read = rasters.read(path, rasters.BandSpec(3))
  picture = rasters.tagged_missing(read.pixels, read.nodata_tag)
  whole = predictor.masks([picture])[0]
  assert len(np.unique(whole)) > 1 and whole.ndim == (3 if task == 'multilabel' else 2)
  # A probability within float32 rounding of a threshold may read either way when summed in
  # another order (1 label in 24,075 here): those labels are left out of the comparison.
  probabilities = predictor.picture_probabilities([picture])[0][0].numpy()
  counted = (np.abs(probabilities - 0.5) > 1e-5) if task == 'multilabel' else np.ones(
      whole.shape, bool)
  source = rasters.RasterRows(path, rasters.BandSpec(3))
  for windows_down in (1, 2, 100):
    strips = np.full(whole.shape, 255, np.uint8)
    for top, strip in predictor.strip_probabilities(source.rows, 107, windows_down):
      np.testing.assert_allclose(strip, probabilities[top:top + len(strip)], atol=1e-5)
      strips[top:top + len(strip)] = predictor.task.predicted_labels(strip).numpy()
    np.testing.assert_array_equal(strips[counted], whole[counted])
  monkeypatch.setattr(rasters, 'TILE', 16)  # Several rows of tiles, each written when whole.
  mask, shown, shown_mask = predict._strip_mask(
      path, rasters.BandSpec(3), predictor, uncertainty=str(tmp_path / 'unsure.png'),
      probabilities=str(tmp_path / 'odds.tif'))
  whole[40:52, 10:30] = IGNORE  # Nothing measured there, nothing predicted.
  np.testing.assert_array_equal(mask[counted], whole[counted])
  assert shown.shape[-1] == 3 and shown_mask.shape[:2] == shown.shape[:2]
  with rasterio.open(tmp_path / 'odds.tif') as odds:
    assert odds.block_shapes[0] == (16, 16)
    written = np.transpose(odds.read(), (1, 2, 0))
  assert np.isnan(written[40:52, 10:30]).all() and not np.isnan(written[:40]).any()
  unsure = decode.decode_upright(tf.io.read_file(str(tmp_path / 'unsure.png')).numpy())
  expected = colormaps.jet(predictor.task.uncertainty(probabilities[None])[0].numpy())
  assert np.mean(np.all(unsure == expected, axis=-1)) > 0.999
  probabilities[40:52, 10:30] = np.nan
  np.testing.assert_allclose(written, probabilities, atol=1e-5)
