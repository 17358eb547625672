"""Pictures with more bands through the input pipeline, against each format's decode limit.

Three sets of the same scenes (data/synthetic.py's multispectral stand-in): 3-band uint8 JPEG
photos (data.bands=0), 4-band and 13-band uint16 GeoTIFFs (deflate, tiled, as GDAL writes
them; data.bands=4 / 13). For each, in pictures per CPU-second of this process:

- decode_limit: the format's own decoder alone over every file (tf.io.decode_jpeg of the
  bytes; rasterio's read of every band);
- first_epoch: one pass of the training pipeline over the prepared set before anything is
  cached (read, decode, resize, batch): what every epoch costs when the set does not fit
  data.cache_budget_gb;
- preparation: the one-off check and preparation of the set (data.source=files: every
  picture decoded to check it and, for rasters, sum its bands, then written to the prepared
  set); with_preparation: the first epoch of a new run, both together.

    python -m benchmarks.bands_pipeline [--num_images=200 --size=256 --image_size=128]
"""

import json
import os
import shutil
import time

from absl import app
from absl import flags
import numpy as np
import rasterio
from rasterio.transform import from_origin
import tensorflow as tf

from configs import own_data
from data import input_pipeline
from data import sources
from data import synthetic
import specs
from training import settle

flags.DEFINE_integer('num_images', 200, 'Pictures in each set.')
flags.DEFINE_integer('size', 256, 'Side of every picture, in pixels.')
flags.DEFINE_integer('image_size', 128, 'Side the pipeline resizes to.')
flags.DEFINE_integer('batch', 16, 'Batch size of the pipeline.')
flags.DEFINE_string('folder', '/tmp/segstream_bench_bands', 'Where the sets are written.')
FLAGS = flags.FLAGS

CASES = (('jpeg_rgb_uint8', 0), ('geotiff_4_uint16', 4), ('geotiff_13_uint16', 13))


def _write_sets(folder: str) -> None:
  """The same scenes as JPEG photos (bands 3, 2, 1 stretched to 8 bits) and as 4- and 13-band
  GeoTIFFs (the 4 bands, then 9 more made from them)."""
  rng = np.random.default_rng(0)
  for name, _ in CASES:
    for kind in ('images', 'masks'):
      os.makedirs(os.path.join(folder, name, kind), exist_ok=True)
  for index in range(FLAGS.num_images):
    bands, classes = synthetic.render_multispectral(rng, FLAGS.size, FLAGS.size)
    stem = f'{index:05d}'
    rgb = np.clip(bands[..., [2, 1, 0]] / 12.0, 0, 255).astype(np.uint8)
    tf.io.write_file(os.path.join(folder, 'jpeg_rgb_uint8', 'images', stem + '.jpg'),
                     tf.io.encode_jpeg(rgb, quality=90))
    more = np.concatenate([bands] + [np.roll(bands, k, axis=1)[..., :3] // 2 + 300
                                     for k in range(1, 4)], -1)
    for name, count in CASES[1:]:
      with rasterio.open(os.path.join(folder, name, 'images', stem + '.tif'), 'w',
                         driver='GTiff', width=FLAGS.size, height=FLAGS.size, count=count,
                         dtype='uint16', compress='deflate', tiled=True, crs='EPSG:32633',
                         transform=from_origin(500000, 5000000, 10, 10)) as out:
        out.write(np.moveaxis(more[..., :count], -1, 0))
    for name, _ in CASES:
      tf.io.write_file(os.path.join(folder, name, 'masks', stem + '.png'),
                       tf.io.encode_png(classes[..., None]))


def _decode_limit(folder: str, bands: int) -> float:
  """Pictures per CPU-second of the format's own decoder over every file."""
  paths = sorted(os.path.join(folder, 'images', f) for f in os.listdir(
      os.path.join(folder, 'images')))
  start = time.process_time()
  for path in paths:
    if bands:
      with rasterio.open(path) as source:
        source.read()
    else:
      tf.io.decode_jpeg(tf.io.read_file(path)).numpy()
  return len(paths) / (time.process_time() - start)


def _config(folder: str, bands: int):
  config = own_data.get_config()
  config.data.bands = bands
  config.data.augment.color_jitter = 0.0
  config.data.class_names = synthetic.MULTISPECTRAL_CLASSES
  config.data.validation_fraction = 0.1  # The train split (90 %) is what passes count.
  config.data.files.train_images = os.path.join(folder, 'images')
  config.data.files.train_masks = os.path.join(folder, 'masks')
  config.data.image_size = FLAGS.image_size
  return settle.settle_config(config)


def _epoch(builder, data_config) -> int:
  spec = input_pipeline.pipeline(data_config)
  dataset = sources.read_encoded(builder, spec.splits.train).map(
      input_pipeline.preprocess_fn(spec), num_parallel_calls=tf.data.AUTOTUNE).batch(FLAGS.batch)
  return sum(int(batch['image'].shape[0]) for batch in dataset)


def main(argv):
  del argv
  shutil.rmtree(FLAGS.folder, ignore_errors=True)
  _write_sets(FLAGS.folder)
  for name, bands in CASES:
    folder = os.path.join(FLAGS.folder, name)
    limit = _decode_limit(folder, bands)
    config = _config(folder, bands)
    start = time.process_time()
    builder = sources.prepared_builder(specs.describe(config).data,
                                       os.path.join(folder, 'prepared'))
    prepared = time.process_time() - start
    start = time.process_time()
    count = _epoch(builder, config.data)
    first = time.process_time() - start
    print(json.dumps({'case': name, 'pictures': count, 'size': FLAGS.size,
                      'image_size': FLAGS.image_size,
                      'decode_limit_per_cpu_s': round(limit, 1),
                      'first_epoch_per_cpu_s': round(count / first, 1),
                      'first_epoch_to_limit': round(count / first / limit, 3),
                      'preparation_per_cpu_s': round(count / prepared, 1),
                      'with_preparation_per_cpu_s': round(count / (prepared + first), 1),
                      'with_preparation_to_limit': round(count / (prepared + first) / limit,
                                                         3)}), flush=True)

if __name__ == '__main__':
  app.run(main)
