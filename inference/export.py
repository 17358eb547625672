"""--mode=export: a SavedModel that serves predict's masks without this repository."""

import os

from absl import logging
import keras
import tensorflow as tf

from errors import write_failed
from inference import loading
from inference.predictor import Predictor, label_masks
import tasks
from training import workdir as workdir_lib


def run(config, workdir: str, output: str | None) -> str:
  """A SavedModel that takes uint8 pictures of any size and returns label masks of that size
  (classification: class probabilities).

  Served by TF Serving or loaded with tf.saved_model.load, without this repository.
  """
  model, source = loading.load_model(config, workdir)
  predictor = Predictor(model, config)

  def serve(pictures):
    height, width = tf.shape(pictures)[1], tf.shape(pictures)[2]
    probabilities = predictor.probabilities(
        lambda size: tf.image.resize(tf.cast(pictures, tf.float32), (size, size)))
    if not tasks.is_segmentation(config):
      return {'probabilities': probabilities}
    return {'masks': label_masks(probabilities, (height, width))}

  archive = keras.export.ExportArchive()
  for sized_model in predictor.models.values():
    archive.track(sized_model)
  archive.add_endpoint('serve', serve, input_signature=[
      tf.TensorSpec([None, None, None, 3], tf.uint8, name='pictures')])
  out_dir = output or os.path.join(workdir, 'export')
  workdir_lib.ensure_writable_dir(out_dir, '--output' if output else '--workdir')
  try:
    archive.write_out(out_dir, verbose=False)
  except (OSError, tf.errors.OpError) as e:
    raise write_failed(e, 'Free disk space or choose another --output.',
                       f'the SavedModel to {out_dir}') from None
  logging.info('Exported %s as a SavedModel (endpoint serve: uint8 pictures -> masks) to %s.',
               source, out_dir)
  return out_dir
