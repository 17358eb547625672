"""The modes that use a trained workdir: explain, predict and export.

Each loads the best model of the workdir (or, before any evaluation, the latest checkpoint)
and turns pictures from disk into files: PNGs, a CSV-free mask folder, a SavedModel.
"""

import glob
import os

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from data import decode
from data import input_pipeline
from data import sources
from errors import UserError
from interpretability import colormaps
from interpretability import explain as explain_lib
from modeling import models
from training import checkpoints
from training import metrics
from training import summaries as summaries_lib

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.gif', '.bmp')


def load_model(config, workdir: str) -> tuple[keras.Model, str]:
  """The workdir's best model, else its latest checkpoint; a UserError when it has neither."""
  best = os.path.join(workdir, checkpoints.BEST_MODEL)
  if os.path.isfile(best):
    return keras.models.load_model(best), best
  checkpoint_dir = os.path.join(workdir, checkpoints.CHECKPOINT_DIR)
  latest = tf.train.latest_checkpoint(checkpoint_dir) if os.path.isdir(checkpoint_dir) else None
  if not latest:
    raise UserError(f'No model in --workdir={workdir}: it has neither {checkpoints.BEST_MODEL} '
                    'nor a checkpoint. Train first (--mode=train_and_eval) or point --workdir '
                    'at a trained run.')
  model = models.build_model(config.model, config.data.image_size, len(config.data.class_names))
  tf.train.Checkpoint(model=checkpoints.tracked_model(model)).restore(
      latest).expect_partial()
  return model, latest


def picture_paths(spec: str) -> list[str]:
  """Comma-separated files, folders (their pictures) and globs, in order, each checked."""
  paths = []
  for item in filter(None, (part.strip() for part in spec.split(','))):
    if os.path.isdir(item):
      found = sorted(p for p in glob.glob(os.path.join(item, '*'))
                     if p.lower().endswith(IMAGE_SUFFIXES))
    elif any(ch in item for ch in '*?['):
      found = sorted(glob.glob(item))
    else:
      found = [item]
    if not found:
      raise UserError(f'--images: {item!r} matches no picture.')
    paths += found
  for path in paths:
    if not os.path.isfile(path):
      raise UserError(f'--images: {path!r} does not exist.')
  return paths


def read_picture(path: str) -> np.ndarray:
  try:
    return decode.decode_image(tf.io.read_file(path)).numpy()
  except tf.errors.InvalidArgumentError as e:
    raise UserError(f'--images: {path!r} is not a picture TensorFlow can decode '
                    '(JPEG, PNG, GIF or BMP).') from e


def _model_input(pictures: list[np.ndarray], image_size: int) -> np.ndarray:
  return np.stack([tf.image.resize(p, (image_size, image_size)).numpy() for p in pictures])


def _validation_pictures(config, workdir: str) -> np.ndarray:
  builder = sources.prepared_builder(config.data, workdir)
  batch = next(iter(input_pipeline.eval_dataset(builder, config.data,
                                                max(config.summaries.num_images, 1))))
  return batch['image'].numpy()


def _write_png(path: str, picture: np.ndarray) -> None:
  picture = np.asarray(picture, np.uint8)
  tf.io.write_file(path, tf.io.encode_png(picture if picture.ndim == 3 else picture[..., None]))


def explain(config, workdir: str, images: str | None) -> dict:
  """Activation grids, filter grids and per-class Grad-CAM as PNGs in DIR/explain/ and in
  TensorBoard (run folder explain/)."""
  model, source = load_model(config, workdir)
  if images:
    pictures = _model_input([read_picture(p) for p in picture_paths(images)],
                            config.data.image_size)
  else:
    pictures = _validation_pictures(config, workdir)
  result = explain_lib.explain(model, pictures, config.summaries.explain,
                               tuple(config.data.class_names),
                               segmentation=config.task == 'segmentation')
  out_dir = os.path.join(workdir, 'explain')
  os.makedirs(out_dir, exist_ok=True)
  writer = summaries_lib.Summaries(workdir, enabled=True, runs=('explain',))
  for tag, value in result.items():
    if tag.startswith('seconds/'):
      continue
    for i, picture in enumerate(value):
      _write_png(os.path.join(out_dir, f'{tag.replace("/", "_")}_{i}.png'), picture)
    writer.images('explain', 0, tag, value)
  writer.flush()
  logging.info('Explained %s on %d pictures into %s (%s).', source, len(pictures), out_dir,
               ', '.join(f'{k} {v:.1f}s' for k, v in result.items() if k.startswith('seconds/')))
  return result


def predict(config, workdir: str, images: str, output: str | None) -> list[str]:
  """Segmentation: a 0/1/2 label mask PNG at each picture's own size and a coloured overlay
  beside it. Classification: predictions.csv with one line per picture."""
  if not images:
    raise UserError('--mode=predict needs --images=a.jpg,b.png (files, folders or globs).')
  model, source = load_model(config, workdir)
  paths = picture_paths(images)
  out_dir = output or os.path.join(workdir, 'predict')
  os.makedirs(out_dir, exist_ok=True)
  written, rows = [], ['picture,class,probability\n']
  batch_size = config.eval.global_batch_size
  for start in range(0, len(paths), batch_size):
    chunk = paths[start:start + batch_size]
    pictures = [read_picture(p) for p in chunk]
    probabilities = model.predict(_model_input(pictures, config.data.image_size), verbose=0)
    if config.task == 'classification':
      for path, probs in zip(chunk, probabilities):
        probs = np.concatenate([1 - probs, probs]) if len(probs) == 1 else probs
        best = int(np.argmax(probs))
        rows.append(f'{path},{config.data.class_names[best]},{probs[best]:.6f}\n')
      continue
    for path, picture, probs in zip(chunk, pictures, probabilities):
      mask = np.argmax(probs, axis=-1).astype(np.uint8)[..., None]
      mask = tf.image.resize(mask, picture.shape[:2], method='nearest').numpy()[..., 0]
      stem = os.path.join(out_dir, os.path.splitext(os.path.basename(path))[0])
      _write_png(stem + '_mask.png', mask)
      _write_png(stem + '_overlay.png', colormaps.mask_overlay(picture, mask))
      written.append(stem + '_mask.png')
  if config.task == 'classification':
    csv_path = os.path.join(out_dir, 'predictions.csv')
    checkpoints.write_text_atomically(csv_path, ''.join(rows))
    written.append(csv_path)
  logging.info('Predicted %d pictures with %s into %s.', len(paths), source, out_dir)
  return written


def export(config, workdir: str, output: str | None) -> str:
  """A SavedModel that takes uint8 pictures of any size and returns label masks of that size
  (classification: class probabilities).

  Served by TF Serving or loaded with tf.saved_model.load, without this repository.
  """
  model, source = load_model(config, workdir)
  image_size = config.data.image_size

  def serve(pictures):
    height, width = tf.shape(pictures)[1], tf.shape(pictures)[2]
    resized = tf.image.resize(tf.cast(pictures, tf.float32), (image_size, image_size))
    if config.task == 'classification':
      return {'probabilities': model(resized, training=False)}
    labels = tf.argmax(model(resized, training=False), axis=-1, output_type=tf.int32)
    masks = tf.image.resize(tf.cast(labels, tf.uint8)[..., None], (height, width),
                            method='nearest')
    return {'masks': masks[..., 0]}

  archive = keras.export.ExportArchive()
  archive.track(model)
  archive.add_endpoint('serve', serve, input_signature=[
      tf.TensorSpec([None, None, None, 3], tf.uint8, name='pictures')])
  out_dir = output or os.path.join(workdir, 'export')
  archive.write_out(out_dir, verbose=False)
  logging.info('Exported %s as a SavedModel (endpoint serve: uint8 pictures -> masks) to %s.',
               source, out_dir)
  return out_dir


def native_resolution_metrics(model: keras.Model, builder, data_config, class_names) -> dict:
  """Pixel accuracy and IoU of the eval split scored at each picture's own resolution.

  Predicted masks (at the model's size) are resized back with nearest neighbour and compared
  with the original trimaps, as a user of the predicted masks would see them.
  """
  split = sources.resolve_splits(data_config)[1]
  confusion = np.zeros((len(class_names),) * 2)
  for example in sources.read_encoded(builder, split):
    picture = decode.decode_image(example['image']).numpy()
    truth = decode.decode_trimap(example['segmentation_mask']).numpy()[..., 0]
    probabilities = model(_model_input([picture], data_config.image_size), training=False)
    predicted = np.argmax(probabilities[0], axis=-1).astype(np.uint8)[..., None]
    predicted = tf.image.resize(predicted, truth.shape, method='nearest').numpy()[..., 0]
    confusion += tf.math.confusion_matrix(truth.ravel(), predicted.ravel(),
                                          num_classes=len(class_names)).numpy()
  results = metrics.summarize(0.0, 1.0, confusion, tuple(class_names))
  del results['loss'], results['num_examples']
  return results
