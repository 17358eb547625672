"""--mode=score: the workdir's masks, made as predict makes them, scored against the eval
split's trimaps at each picture's own resolution."""

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
    truth = decode.decode_trimap(example[tasks.MASK_FEATURE]).numpy()[..., 0]
    predicted = predictor.masks([picture])[0]
    confusion += tf.math.confusion_matrix(truth.ravel(), predicted.ravel(),
                                          num_classes=len(class_names)).numpy()
  results = metrics.summarize(0.0, 1.0, confusion, class_names)
  del results['loss'], results['num_examples']
  return results


def run(config, workdir: str) -> dict:
  """Segmentation: the workdir's model scored on the eval split at the pictures' own
  resolution, with predict's masks; logged and written to DIR/score.json."""
  if not tasks.is_segmentation(config):
    raise UserError('--mode=score scores segmentation masks at native resolution; for '
                    f'task={config.task} use --mode=eval.')
  model, source = loading.load_model(config, workdir)
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
