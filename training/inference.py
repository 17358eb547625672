"""The modes that use a trained workdir: explain, predict, score and export.

Each loads the best model of the workdir (or, before any evaluation, the latest checkpoint)
and turns pictures from disk into files: PNGs, masks, a score, a SavedModel. Predict, score and
export make masks the same way (`Predictor`), with the test-time averaging of `predict.*`.
"""

import glob
import json
import os
import time
from typing import NamedTuple

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
from interpretability import gradcam
from interpretability import pointing
from modeling import models
from modeling import xception_imagenet
from training import checkpoints
from training import config_checks
from training import metrics
from training import summaries as summaries_lib

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.gif', '.bmp')


def load_model(config, workdir: str) -> tuple[keras.Model, str]:
  """The workdir's best model, else its latest checkpoint, else (for a model that brings its
  own weights, `model.weights`) the model as configured; a UserError when there is none."""
  config_checks.check_config(config)
  best = os.path.join(workdir, checkpoints.BEST_MODEL)
  if os.path.isfile(best):
    return keras.models.load_model(best), best
  checkpoint_dir = os.path.join(workdir, checkpoints.CHECKPOINT_DIR)
  latest = tf.train.latest_checkpoint(checkpoint_dir) if os.path.isdir(checkpoint_dir) else None
  if not latest and 'weights' in config.model:
    model = models.build_model(config.model, config.data.image_size,
                               len(config.data.class_names))
    return model, f'{config.model.name} with model.weights={config.model.weights}'
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


def model_input(pictures: list[np.ndarray], image_size: int) -> np.ndarray:
  return np.stack([tf.image.resize(p, (image_size, image_size)).numpy() for p in pictures])


class Predictor:
  """Class probabilities averaged over test-time input sides and mirror images.

  A model trained on random crops has seen objects larger than a whole picture shows them;
  larger input sides give it that scale back, and a mirrored copy is a second opinion (both
  as configured in `predict.sizes` and `predict.flip`). The model is rebuilt at each extra
  side with the same weights; segmentation probabilities come back at the largest side.
  """

  def __init__(self, model: keras.Model, config):
    self.sizes = tuple(config.predict.sizes) or (config.data.image_size,)
    self.flip = config.predict.flip
    self.segmentation = config.task == 'segmentation'
    self.models = {}
    for size in self.sizes:
      if size == model.input_shape[1]:
        self.models[size] = model
      else:
        self.models[size] = models.build_model(config.model, size, len(config.data.class_names))
        self.models[size].set_weights(model.get_weights())

  def probabilities(self, pictures_at) -> tf.Tensor:
    """`pictures_at(side)`: the float32 [N, side, side, 3] batch; returns averaged probabilities
    (segmentation: [N, S, S, classes] at the largest side S)."""
    out_size = (max(self.sizes),) * 2
    views = []
    for size, model in self.models.items():
      pictures = pictures_at(size)
      for mirrored in ((False, True) if self.flip else (False,)):
        seen = tf.image.flip_left_right(pictures) if mirrored else pictures
        probabilities = tf.cast(model(seen, training=False), tf.float32)
        if self.segmentation:
          if mirrored:
            probabilities = tf.image.flip_left_right(probabilities)
          if size != out_size[0]:
            probabilities = tf.image.resize(probabilities, out_size)
        views.append(probabilities)
    return tf.add_n(views) / len(views)

  def masks(self, pictures: list[np.ndarray]) -> list[np.ndarray]:
    """Label masks (uint8 0..classes-1) at each picture's own size."""
    probabilities = self.probabilities(lambda size: model_input(pictures, size))
    return [label_masks(probabilities[i:i + 1], picture.shape[:2])[0].numpy()
            for i, picture in enumerate(pictures)]


def label_masks(probabilities: tf.Tensor, size) -> tf.Tensor:
  """[N, H, W] uint8 argmax labels, resized to `size` with nearest neighbour (no invented
  labels)."""
  labels = tf.cast(tf.argmax(probabilities, axis=-1, output_type=tf.int32), tf.uint8)
  return tf.image.resize(labels[..., None], size, method='nearest')[..., 0]


class Picture(NamedTuple):
  name: str  # File name without its extension: what the picture's output files are named by.
  pixels: np.ndarray  # uint8 (H, W, 3) at the picture's own size.
  trimap: np.ndarray | None  # Labels (H, W) 0 pet, 1 background, 2 outline, if known.


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


def named_pictures(config, workdir: str, images: str | None) -> list[Picture]:
  """`--images` with the trimaps the official layout keeps beside them, else the first
  summaries.num_images pictures of the eval split with theirs."""
  if images:
    paths = picture_paths(images)
    names = _unique([os.path.splitext(os.path.basename(p))[0] for p in paths])
    trimaps = [trimap_beside(p) for p in paths]
    return [Picture(name, read_picture(path), _read_trimap(trimap) if trimap else None)
            for name, path, trimap in zip(names, paths, trimaps)]
  builder = sources.prepared_builder(config.data, workdir)
  split = sources.resolve_splits(config.data)[1]
  pictures = []
  for example in sources.read_encoded(builder, split).take(max(config.summaries.num_images, 1)):
    pictures.append(Picture(
        os.path.splitext(example['file_name'].numpy().decode())[0],
        decode.decode_image(example['image']).numpy(),
        decode.decode_trimap(example['segmentation_mask']).numpy()[..., 0]))
  return pictures


def _write_png(path: str, picture: np.ndarray) -> None:
  picture = np.asarray(picture, np.uint8)
  tf.io.write_file(path, tf.io.encode_png(picture if picture.ndim == 3 else picture[..., None]))


def explained_class_names(config) -> list[str]:
  """data.class_names, or the ImageNet names when summaries.explain.class_index=imagenet and
  Keras can get them."""
  names = list(config.data.class_names)
  if config.summaries.explain.class_index == 'imagenet':
    names = xception_imagenet.imagenet_class_names() or names
  return names


def explain(config, workdir: str, images: str | None) -> dict:
  """Activation grids, filter grids and Grad-CAM overlays as PNGs in DIR/explain/, named after
  the pictures and at their own size; gradcam.json with each heatmap's pointing scores where a
  trimap is known; the same pictures in TensorBoard (run folder explain/)."""
  model, source = load_model(config, workdir)
  pictures = named_pictures(config, workdir, images)
  segmentation = config.task == 'segmentation'
  inputs = model_input([p.pixels for p in pictures], config.data.image_size)
  explanation = explain_lib.explain(model, inputs, config.summaries.explain,
                                    tuple(config.data.class_names), segmentation,
                                    activation_pictures=len(pictures),
                                    batch_size=config.eval.global_batch_size)
  out_dir = os.path.join(workdir, 'explain')
  os.makedirs(out_dir, exist_ok=True)
  for layer, grids in explanation.activation_grids.items():
    for picture, grid in zip(pictures, grids):
      _write_png(os.path.join(out_dir, f'activations_{layer}_{picture.name}.png'), grid)
  for layer, grid in explanation.filter_grids.items():
    _write_png(os.path.join(out_dir, f'filters_{layer}.png'), grid)
  for maps in explanation.class_maps:
    for picture, heatmap in zip(pictures, maps.heatmaps.maps):
      _write_png(os.path.join(out_dir, f'gradcam_{maps.label}_{picture.name}.png'),
                 gradcam.overlay(picture.pixels, heatmap))
  scores = explain_lib.score(explanation, [
      None if p.trimap is None else explain_lib.trimap_regions(p.trimap, explanation,
                                                               segmentation)
      for p in pictures])
  report = gradcam_report(explanation, pictures, scores, explained_class_names(config), source)
  checkpoints.write_text_atomically(os.path.join(out_dir, 'gradcam.json'),
                                    json.dumps(report, indent=1) + '\n')
  writer = summaries_lib.Summaries(workdir, enabled=True, runs=('explain',))
  summaries_lib.write_explanation(writer, 'explain', 0, inputs, explanation, report['summary'])
  writer.flush()
  logging.info('Explained %s on %d pictures into %s (%s); Grad-CAM layer %s; %s.', source,
               len(pictures), out_dir,
               ', '.join(f'{k} {v:.1f}s' for k, v in explanation.seconds.items()),
               explanation.gradcam_layer, ', '.join(
                   f'{label} energy lift {v["energy_lift"]:.2f} (non-blank {v["non_blank"]:.0%})'
                   for label, v in report['summary'].items()) or 'no trimaps to score against')
  return report


def gradcam_report(explanation, pictures: list[Picture], scores: list, class_names: list[str],
                   source: str) -> dict:
  """gradcam.json: the layer, per picture and explained label the heatmap's peak (`max`) and,
  with a trimap, `energy_in_region` and `region_share`; a summary over scored pictures."""
  rows = []
  for i, picture in enumerate(pictures):
    classes = {}
    for maps in explanation.class_maps:
      entry = {'class': class_names[maps.classes[i]]} if maps.label.startswith('top') else {}
      entry.update(scores[i][maps.label] if scores[i] else
                   {'max': float(maps.heatmaps.peaks[i])})
      classes[maps.label] = {k: float(f'{v:.6g}') if isinstance(v, float) else v
                             for k, v in entry.items()}
    rows.append({'name': picture.name, 'classes': classes})
  scored = [s for s in scores if s]
  summary = {label: {k: round(v, 4) for k, v in values.items()}
             for label, values in pointing.summarize(scored).items()}
  return {'model': source, 'layer': explanation.gradcam_layer, 'num_scored': len(scored),
          'summary': summary, 'pictures': rows}


def predict(config, workdir: str, images: str, output: str | None) -> list[str]:
  """Segmentation: a 0/1/2 label mask PNG at each picture's own size and a coloured overlay
  beside it. Classification: predictions.csv with one line per picture."""
  if not images:
    raise UserError('--mode=predict needs --images=a.jpg,b.png (files, folders or globs).')
  model, source = load_model(config, workdir)
  predictor = Predictor(model, config)
  paths = picture_paths(images)
  out_dir = output or os.path.join(workdir, 'predict')
  os.makedirs(out_dir, exist_ok=True)
  written, rows = [], ['picture,class,probability\n']
  batch_size = config.eval.global_batch_size
  for start in range(0, len(paths), batch_size):
    chunk = paths[start:start + batch_size]
    pictures = [read_picture(p) for p in chunk]
    if config.task == 'classification':
      probabilities = predictor.probabilities(lambda size: model_input(pictures, size))
      for path, probs in zip(chunk, probabilities.numpy()):
        probs = np.concatenate([1 - probs, probs]) if len(probs) == 1 else probs
        best = int(np.argmax(probs))
        rows.append(f'{path},{config.data.class_names[best]},{probs[best]:.6f}\n')
      continue
    for path, picture, mask in zip(chunk, pictures, predictor.masks(pictures)):
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
  predictor = Predictor(model, config)

  def serve(pictures):
    height, width = tf.shape(pictures)[1], tf.shape(pictures)[2]
    probabilities = predictor.probabilities(
        lambda size: tf.image.resize(tf.cast(pictures, tf.float32), (size, size)))
    if config.task == 'classification':
      return {'probabilities': probabilities}
    return {'masks': label_masks(probabilities, (height, width))}

  archive = keras.export.ExportArchive()
  for sized_model in predictor.models.values():
    archive.track(sized_model)
  archive.add_endpoint('serve', serve, input_signature=[
      tf.TensorSpec([None, None, None, 3], tf.uint8, name='pictures')])
  out_dir = output or os.path.join(workdir, 'export')
  archive.write_out(out_dir, verbose=False)
  logging.info('Exported %s as a SavedModel (endpoint serve: uint8 pictures -> masks) to %s.',
               source, out_dir)
  return out_dir


def native_resolution_metrics(model: keras.Model, builder, config) -> dict:
  """Pixel accuracy and IoU of the eval split scored at each picture's own resolution.

  Masks are made as --mode=predict makes them (resized back with nearest neighbour) and
  compared with the original trimaps, as a user of the predicted masks would see them.
  """
  predictor = Predictor(model, config)
  class_names = tuple(config.data.class_names)
  split = sources.resolve_splits(config.data)[1]
  confusion = np.zeros((len(class_names),) * 2)
  for example in sources.read_encoded(builder, split):
    picture = decode.decode_image(example['image']).numpy()
    truth = decode.decode_trimap(example['segmentation_mask']).numpy()[..., 0]
    predicted = predictor.masks([picture])[0]
    confusion += tf.math.confusion_matrix(truth.ravel(), predicted.ravel(),
                                          num_classes=len(class_names)).numpy()
  results = metrics.summarize(0.0, 1.0, confusion, class_names)
  del results['loss'], results['num_examples']
  return results


def score(config, workdir: str) -> dict:
  """Segmentation: the workdir's model scored on the eval split at the pictures' own
  resolution, with predict's masks; logged and written to DIR/score.json."""
  if config.task != 'segmentation':
    raise UserError('--mode=score scores segmentation masks at native resolution; for '
                    f'task={config.task} use --mode=eval.')
  model, source = load_model(config, workdir)
  start = time.perf_counter()
  results = native_resolution_metrics(model, sources.prepared_builder(config.data, workdir),
                                      config)
  results = {'model': source, 'eval_split': sources.resolve_splits(config.data)[1],
             'predict_sizes': list(config.predict.sizes) or [config.data.image_size],
             'predict_flip': config.predict.flip, 'seconds': round(time.perf_counter() - start, 1),
             **{k: round(float(v), 4) for k, v in results.items()}}
  checkpoints.write_text_atomically(os.path.join(workdir, 'score.json'),
                                    json.dumps(results, indent=1) + '\n')
  logging.info('Score at native resolution: %s', json.dumps(results))
  return results
