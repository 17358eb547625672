"""What every mode that uses a trained model starts from: the model of a workdir, and
pictures from disk (with their trimaps where the official layout keeps them) or from the eval
split."""

import glob
import os
from typing import NamedTuple

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from data import decode
from data import files_pairing
from data import rasters
from data import resize as resize_lib
from data import sources
from data import spec as data_spec
from errors import DataError, UserError, first_line, write_failed
from modeling import blocks
from modeling import models
from records import checkpoints
import specs
import tasks


def load_model(network: specs.Network, workdir: str) -> tuple[keras.Model, str]:
  """The workdir's best model if it loads and fits the config, else its newest readable
  checkpoint (said so), else (for a model whose `model.weights` holds a whole network) the
  model with those weights loaded as training loads them; a UserError when there is none. The
  second value names what was loaded, and how much of it."""
  best = os.path.join(workdir, checkpoints.BEST_MODEL)
  if os.path.isfile(best):
    try:
      model = keras.models.load_model(best)
    except Exception as e:  # pylint: disable=broad-except  Keras raises many kinds on a bad file.
      logging.warning('%s cannot be read (%s); using the newest readable checkpoint instead.',
                      best, first_line(e))
    else:
      if tasks.predicts_classes(model.output_shape[-1], network.num_classes):
        return model, best
      logging.warning('%s predicts %d classes, data.class_names has %d; using the newest '
                      'readable checkpoint instead.', best, model.output_shape[-1],
                      network.num_classes)
  checkpoint_dir = os.path.join(workdir, checkpoints.CHECKPOINT_DIR)
  model = models.build_model(network, network.input_size, network.num_classes,
                             head=network.head)
  latest = checkpoints.restore_newest_readable(
      tf.train.Checkpoint(model=checkpoints.tracked_model(model)), checkpoint_dir,
      'They are damaged, or of another network: rerun with the config the run was trained '
      f'with (saved in {workdir}/config.json), or train again.',
      partial=True) if os.path.isdir(checkpoint_dir) else None
  if latest:
    if network.averaged_weights:  # What evaluation and best_model.keras use: the average.
      checkpoints.restore_moving_average(model, latest)
    return model, latest
  if models.runs_without_checkpoint(network.name):  # Its model.weights is a whole network.
    models.check_initial_weights(network)
    return model, f'{network.name} ({models.load_initial_weights(model, network)})'
  raise UserError(f'No model in --workdir={workdir}: it has neither a readable '
                  f'{checkpoints.BEST_MODEL} nor a checkpoint. Train first '
                  '(--mode=train_and_eval) or point --workdir at a trained run.')


def picture_paths(spec: str, bands: int = 0) -> list[tuple[str, str]]:
  """(path, name) of each picture of comma-separated files, folders and globs, in order, each
  checked. A folder gives its pictures and its sub-folders', each named by its path below the
  folder without extension (as training finds them); a file or a glob's match is named by its
  stem. A name met again gets _2, _3...: no output overwrites another."""
  found = []
  for item in filter(None, (part.strip() for part in spec.split(','))):
    if os.path.isdir(item):
      try:
        pictures = files_pairing.find_pictures(item, files_pairing.picture_suffixes(bands))
      except OSError as e:
        raise UserError(f'--images: the folder {e.filename!r} cannot be read ({e.strerror}).'
                        ) from None
      matches = [(path, key) for key, paths in pictures.items() for path in paths]
    else:
      paths = sorted(glob.glob(item)) if any(ch in item for ch in '*?[') else [item]
      matches = [(path, os.path.splitext(os.path.basename(path))[0]) for path in paths]
    if not matches:
      raise UserError(f'--images: {item!r} matches no picture.')
    found += matches
  for path, _ in found:
    if not os.path.isfile(path):
      raise UserError(f'--images: {path!r} does not exist.')
  return list(zip([path for path, _ in found], _unique([name for _, name in found])))


def read_picture(path: str, bands: rasters.BandSpec | None = None) -> np.ndarray:
  """A photo upright as uint8 RGB, or (`bands`) a raster's bands as float32 at its own size,
  NaN where its own nodata tag says nothing was measured."""
  if bands is not None:
    try:
      raster = rasters.read(path, bands)
      return rasters.tagged_missing(raster.pixels, raster.nodata_tag)
    except DataError as e:
      raise UserError(f'--images: {e}') from None
  try:
    return decode.decode_upright(tf.io.read_file(path).numpy())
  except tf.errors.InvalidArgumentError as e:
    raise UserError(f'--images: {path!r} is not a picture TensorFlow can decode '
                    '(JPEG, PNG, GIF or BMP).') from e


def model_input(pictures: list[np.ndarray], image_size, model: keras.Model | None = None
                ) -> np.ndarray:
  """float32 [N, H, W, C]: pictures of any sizes resized to `image_size` (antialiased); for a
  raster `model`, their missing values filled with its band means first (blocks.py)."""
  fill = blocks.missing_filled(model) if model is not None else (lambda pixels: pixels)
  return np.stack([resize_lib.resize_pictures(fill(p[None]), image_size)[0].numpy()
                   for p in pictures])


class Picture(NamedTuple):
  name: str  # File name without its extension: what the picture's output files are named by.
  pixels: np.ndarray  # uint8 (H, W, 3) at the picture's own size; a raster's float32 bands.
  mask: np.ndarray | None  # Class ids (H, W), if known (the eval split, or Oxford's trimaps).
  label: np.ndarray | None = None  # Classification, from the eval split: the class.


def trimap_beside(path: str) -> str | None:
  """The official layout's trimap of `.../images/NAME.jpg`: `.../annotations/trimaps/NAME.png`."""
  folder, file_name = os.path.split(os.path.abspath(path))
  if os.path.basename(folder) != 'images':
    return None
  trimap = os.path.join(os.path.dirname(folder), 'annotations', 'trimaps',
                        os.path.splitext(file_name)[0] + '.png')
  return trimap if os.path.isfile(trimap) else None


def _read_trimap(path: str) -> np.ndarray | None:
  try:
    return decode.decode_trimap(tf.io.read_file(path)).numpy()[..., 0]
  except tf.errors.InvalidArgumentError:
    logging.warning('Trimap %s cannot be decoded: its picture is explained without scores.',
                    path)
    return None


def _unique(names: list[str]) -> list[str]:
  """Names made unique by a _2, _3... suffix, so that no output file overwrites another."""
  seen, result = {}, []
  for name in names:
    seen[name] = seen.get(name, 0) + 1
    result.append(name if seen[name] == 1 else f'{name}_{seen[name]}')
  return result


def named_pictures(data: data_spec.Data, workdir: str, images: str | None, count: int
                   ) -> list[Picture]:
  """`--images` with the trimaps the official layout keeps beside them, else the first
  `count` pictures of the eval split with theirs."""
  if images:
    named = picture_paths(images, data.bands)  # a/b.jpg in a sub-folder: a_b.
    names = _unique([name.replace(os.sep, '_') for _, name in named])
    trimaps = [trimap_beside(path) for path, _ in named]
    bands = rasters.band_spec(data)
    return [Picture(name, read_picture(path, bands), _read_trimap(trimap) if trimap else None)
            for name, (path, _), trimap in zip(names, named, trimaps)]
  return eval_pictures(data, workdir, count)


def eval_pictures(data: data_spec.Data, workdir: str, count: int) -> list[Picture]:
  """The first `count` pictures of the eval split with their masks and labels: the fixed
  pictures that training shows, explain explains and export is checked on."""
  builder = sources.prepared_builder(data, workdir)
  lookup = sources.mask_lookup(data)
  pictures = []
  for index, example in enumerate(sources.first_examples(
      builder, sources.resolve_splits(data).eval, count)):
    name = example['file_name'].numpy().decode() if 'file_name' in example else str(index)
    mask = example.get(tasks.MASK_FEATURE)
    label = None if tasks.of_data(data).per_pixel else example[data.label_feature].numpy()
    pictures.append(Picture(
        os.path.splitext(name.replace('/', '_'))[0],
        decode.decode_picture(example['image'], data.bands).numpy(),
        None if mask is None else decode.mask_labels(mask, lookup), label))
  return pictures


def write_png(path: str, picture: np.ndarray) -> None:
  picture = np.asarray(picture, np.uint8)
  try:
    tf.io.write_file(path, tf.io.encode_png(picture if picture.ndim == 3 else picture[..., None]))
  except tf.errors.OpError as e:
    raise write_failed(e, 'Free disk space or choose a writable folder; the pictures written '
                       'before it are intact.', path) from None


