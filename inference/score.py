"""--mode=score: the workdir's masks, made as predict makes them, scored against the test
split's trimaps at each picture's own resolution, over all pictures and per breed."""

import json
import os
import time

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from data import decode
from data import sources
from errors import UserError
from inference import loading
from inference.predictor import Predictor
import tasks
from training import checkpoints
from training import metrics


def native_resolution_metrics(model: keras.Model, builder, config) -> dict:
  """Pixel accuracy and IoU of the test split scored at each picture's own resolution, over
  every picture and per breed (`per_group`, from the file names), worst breed first.

  Masks are made as --mode=predict makes them (resized back with nearest neighbour) and
  compared with the original trimaps, as a user of the predicted masks would see them.
  """
  predictor = Predictor(model, config)
  class_names = tuple(config.data.class_names)
  confusions, counts = {}, {}
  for example in sources.read_encoded(builder, sources.resolve_splits(config.data).test):
    picture = decode.decode_image(example['image']).numpy()
    truth = decode.decode_trimap(example[tasks.MASK_FEATURE]).numpy()[..., 0]
    predicted = predictor.masks([picture])[0]
    group = sources.breed(example['file_name'].numpy().decode())
    confusions[group] = confusions.get(group, 0) + tf.math.confusion_matrix(
        truth.ravel(), predicted.ravel(), num_classes=len(class_names)).numpy()
    counts[group] = counts.get(group, 0) + 1
  results = _pixel_metrics(sum(confusions.values()), class_names)
  per_group = {group: {'num_pictures': counts[group],
                       **_pixel_metrics(confusion, class_names)}
               for group, confusion in confusions.items()}
  results['per_group'] = dict(sorted(per_group.items(), key=lambda kv: kv[1]['mean_iou']))
  return results


def _pixel_metrics(confusion: np.ndarray, class_names: tuple) -> dict:
  results = metrics.summarize(0.0, 1.0, confusion, class_names)
  del results['loss'], results['num_examples']
  return {k: round(float(v), 4) for k, v in results.items()}


def run(config, workdir: str) -> dict:
  """Segmentation: the workdir's model scored on the test split at the pictures' own
  resolution, with predict's masks; logged and written to DIR/score.json."""
  if not tasks.is_segmentation(config):
    raise UserError('--mode=score scores segmentation masks at native resolution; for '
                    f'task={config.task} use --mode=eval.')
  model, source = loading.load_model(config, workdir)
  start = time.perf_counter()
  results = native_resolution_metrics(model, sources.prepared_builder(config.data, workdir),
                                      config)
  results = {'model': source, 'test_split': sources.resolve_splits(config.data).test,
             'predict_sizes': list(config.predict.sizes) or [config.data.image_size],
             'predict_flip': config.predict.flip, 'seconds': round(time.perf_counter() - start, 1),
             **results}
  checkpoints.write_text_atomically(os.path.join(workdir, 'score.json'),
                                    json.dumps(results, indent=1) + '\n')
  groups = results['per_group']
  logging.info('Score at native resolution on %s: mean IoU %.4f; per breed, worst first: %s',
               results['test_split'], results['mean_iou'],
               ', '.join(f'{g} {m["mean_iou"]:.4f}' for g, m in groups.items()))
  return results
