"""Peak memory of --mode=predict on one large raster against one large photo, same model.

Trains two small xception_unet models on 128 px crops (a few steps: memory, not quality, is
measured), one on `--bands`-band uint16 GeoTIFFs and one on the same scenes as JPEG photos,
then predicts, each in its own process, one `--raster_side` square uint16 GeoTIFF of those
bands (tiled, deflate, georeferenced, written window by window) and one `--photo_size` JPEG,
sliding 128 px windows over them; then exports the photo model to each of --formats and
predicts the same photo through each exported file (predict.artifact: the file slides its
windows itself, predict.windows_per_call at a time). Prints each process's peak resident
memory (ru_maxrss) and seconds, and the mask GeoTIFF's grid against the source's.

    python -m benchmarks.large_raster [--raster_side=10000 --bands=8 --photo_size=6000,4000]
        [--formats=saved_model,onnx,litert]
"""

import os
import subprocess
import sys
import time

from absl import app
from absl import flags
import numpy as np
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window
import tensorflow as tf

from data import synthetic

flags.DEFINE_integer('raster_side', 10000, 'Side of the square raster predicted.')
flags.DEFINE_integer('bands', 8, 'Bands of the rasters (1-8): 4 drawn, the rest made from them.')
flags.DEFINE_list('photo_size', ['6000', '4000'], 'Width and height of the photo predicted.')
flags.DEFINE_integer('train_steps', 4, 'Steps each model trains (memory does not need more).')
flags.DEFINE_string('folder', '/tmp/segstream_bench_large_raster', 'Where files are written.')
flags.DEFINE_list('formats', ['saved_model', 'onnx', 'litert'],
                  'Export formats the photo is also predicted through (empty: none).')
FLAGS = flags.FLAGS

TILE = 512  # Rows and columns of the scene drawn at a time.


def _raster_bands(bands: np.ndarray) -> np.ndarray:
  """The first --bands of 4 synthetic bands and 4 more made from them, uint16."""
  return np.concatenate([bands, bands // 2 + 300], axis=-1)[..., :FLAGS.bands]


def _photo(bands: np.ndarray) -> np.ndarray:
  return np.clip(bands[..., [2, 1, 0]] / 12.0, 0, 255).astype(np.uint8)


def _write_training_sets(folder: str) -> None:
  rng = np.random.default_rng(0)
  for kind in ('raster', 'photo'):
    for part in ('images', 'masks'):
      os.makedirs(os.path.join(folder, kind, part), exist_ok=True)
  for index in range(24):
    bands, classes = synthetic.render_multispectral(rng, 160, 160)
    stem = f'{index:03d}'
    with rasterio.open(os.path.join(folder, 'raster', 'images', stem + '.tif'), 'w',
                       driver='GTiff', width=160, height=160, count=FLAGS.bands, dtype='uint16',
                       compress='deflate') as out:
      out.write(np.moveaxis(_raster_bands(bands), -1, 0))
    tf.io.write_file(os.path.join(folder, 'photo', 'images', stem + '.jpg'),
                     tf.io.encode_jpeg(_photo(bands), quality=90))
    for kind in ('raster', 'photo'):
      tf.io.write_file(os.path.join(folder, kind, 'masks', stem + '.png'),
                       tf.io.encode_png(classes[..., None]))


def _write_large_raster(path: str, side: int) -> None:
  """A side x side scene of --bands uint16 bands, drawn and written TILE x TILE at a time."""
  rng = np.random.default_rng(1)
  with rasterio.open(path, 'w', driver='GTiff', width=side, height=side, count=FLAGS.bands,
                     dtype='uint16', tiled=True, blockxsize=256, blockysize=256,
                     compress='deflate', crs='EPSG:32633',
                     transform=from_origin(500000, 5000000, 10, 10)) as out:
    for top in range(0, side, TILE):
      for left in range(0, side, TILE):
        height, width = min(TILE, side - top), min(TILE, side - left)
        bands, _ = synthetic.render_multispectral(rng, height, width)
        out.write(np.moveaxis(_raster_bands(bands), -1, 0),
                  window=Window(left, top, width, height))


# Runs a command as its child and prints the child's peak resident memory (KiB) last: a
# fresh process, so the peak is that command's alone.
_MEASURE = ('import resource, subprocess, sys; code = subprocess.run(sys.argv[1:]).returncode; '
            'print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); '
            'sys.exit(code)')


def _run(args: list) -> tuple[float, float]:
  """(peak resident GB, seconds) of `python main.py args`."""
  start = time.perf_counter()
  result = subprocess.run([sys.executable, '-c', _MEASURE, sys.executable, 'main.py', *args],
                          capture_output=True, text=True, check=False)
  seconds = time.perf_counter() - start
  if result.returncode:
    raise SystemExit(f'main.py {" ".join(args)} failed:\n{result.stderr[-3000:]}')
  return int(result.stderr.strip().splitlines()[-1]) / 2**20, seconds


def _print_grids(source: str, mask: str) -> None:
  """The mask GeoTIFF's grid, storage and overviews beside the source's (gdalinfo's fields)."""
  with rasterio.open(source) as a, rasterio.open(mask) as b:
    for field, in_source, in_mask in (
        ('size', (a.width, a.height), (b.width, b.height)), ('crs', a.crs, b.crs),
        ('transform', tuple(a.transform), tuple(b.transform)),
        ('nodata', a.nodata, b.nodata), ('dtype and bands', (a.dtypes[0], a.count),
                                         (b.dtypes[0], b.count)),
        ('tiles', a.block_shapes[0], b.block_shapes[0]),
        ('compression', a.compression, b.compression),
        ('overviews', a.overviews(1), b.overviews(1))):
      print(f'{field:<16} source {str(in_source):<48} mask {in_mask}'
            f'{"  (same)" if in_source == in_mask else ""}')


def main(argv):
  del argv
  folder = FLAGS.folder
  _write_training_sets(folder)
  common = ['--config=configs/own_large.py', '--config.data.crop_size=(128,128)',
            "--config.data.class_names=('soil','vegetation','turf')",
            f'--config.train.steps={FLAGS.train_steps}', '--config.train.steps_per_epoch=2',
            '--config.train.steps_per_call=2', '--config.train.warmup_steps=0',
            '--config.train.global_batch_size=4', '--config.eval.global_batch_size=4',
            '--config.summaries.num_images=0', '--config.summaries.explain_every_epochs=0']
  runs = {}
  shown_bands = ['--config.data.rgb_bands=(3,2,1)'] if FLAGS.bands >= 4 else []
  for kind, extra in (('photo', []), ('raster', [f'--config.data.bands={FLAGS.bands}',
                                                 *shown_bands])):
    workdir = os.path.join(folder, f'run_{kind}{FLAGS.bands if kind == "raster" else ""}')
    runs[kind] = [*common, *extra, f'--workdir={workdir}',
                  f'--config.data.files.train_images={folder}/{kind}/images',
                  f'--config.data.files.train_masks={folder}/{kind}/masks']
    if not os.path.exists(os.path.join(workdir, 'best_model.keras')):
      _run(runs[kind])
  width, height = (int(side) for side in FLAGS.photo_size)
  photo = os.path.join(folder, f'photo_{width}x{height}.jpg')
  raster = os.path.join(folder, f'raster_{FLAGS.raster_side}x{FLAGS.bands}.tif')
  if not os.path.exists(photo):
    rng = np.random.default_rng(2)
    scene = np.concatenate([_photo(synthetic.render_multispectral(rng, height, TILE)[0])
                            for _ in range(-(-width // TILE))], axis=1)[:, :width]
    tf.io.write_file(photo, tf.io.encode_jpeg(scene, quality=90))
  if not os.path.exists(raster):
    _write_large_raster(raster, FLAGS.raster_side)
  print(f'{"picture":<44} {"peak GB":>8} {"seconds":>8}')
  for kind, picture, label in (
      ('photo', photo, f'photo {width}x{height} JPEG'),
      ('raster', raster, f'raster {FLAGS.raster_side}x{FLAGS.raster_side}x{FLAGS.bands} uint16 '
                         'GeoTIFF')):
    peak, seconds = _run([*runs[kind], '--mode=predict', f'--images={picture}',
                          f'--output={folder}/predict_{kind}'])
    print(f'{label:<44} {peak:8.2f} {seconds:8.1f}')
  _print_grids(raster, os.path.join(folder, 'predict_raster',
                                    os.path.basename(raster)[:-len('.tif')] + '_mask.tif'))
  for fmt in FLAGS.formats:
    exported = os.path.join(folder, f'export_{fmt}')
    _run([*runs['photo'], '--mode=export', f'--config.export.format={fmt}',
          f'--output={exported}'])
    peak, seconds = _run([*runs['photo'], '--mode=predict', f'--images={photo}',
                          f'--config.predict.artifact={exported}',
                          f'--output={folder}/predict_photo_{fmt}'])
    print(f'{f"photo {width}x{height} JPEG through {fmt}":<44} {peak:8.2f} {seconds:8.1f}')


if __name__ == '__main__':
  app.run(main)
