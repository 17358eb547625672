"""The hand-written way, as a yardstick for `data.source=files`: a plain Keras U-Net trained with
numpy arrays and model.fit (flips, Adam, 128 px) for a fixed time, scored like --mode=score
(probabilities resized to each test picture, argmax, ignored pixels left out). Rasters
(data.bands) go in with all their bands, normalised by a Keras Normalization layer.

    python -m benchmarks.plain_unet --config=configs/own_binary.py \
        --config.data.files.train_images=... --config.data.files.train_masks=... \
        --config.data.files.test_images=... --config.data.files.test_masks=... --seconds=240

It reads the set the framework prepared for that config (preparing it if needed) and prints
one JSON line: the test mean IoU and per-class IoU, beside `score.json` of a framework run.
"""

import json
import time

from absl import app
from absl import flags
import keras
import numpy as np
from ml_collections import config_flags
import tensorflow as tf

from data import decode
from data import sources
from inference.predictor import label_masks
import specs
from tasks import IGNORE
from tasks import metrics

config_flags.DEFINE_config_file('config', None, 'The own-data config the set comes from.')
flags.DEFINE_integer('seconds', 240, 'Training time.')
flags.DEFINE_integer('size', 128, 'Input side.')
flags.DEFINE_string('workdir', '/tmp/plain_unet', 'Where the set is prepared.')
FLAGS = flags.FLAGS


def _arrays(builder, split: str, size: int, bands: int):
  pictures, masks = [], []
  for example in sources.read_encoded(builder, split):
    picture = decode.decode_picture(example['image'], bands)
    pictures.append(tf.image.resize(picture, (size, size)).numpy())
    masks.append(tf.image.resize(decode.decode_mask(example['segmentation_mask']), (size, size),
                                 method='nearest').numpy())
  return np.stack(pictures), np.stack(masks)


def plain_unet(size: int, num_classes: int, pictures: np.ndarray, bands: int) -> keras.Model:
  """The U-Net of the Keras image segmentation tutorial, shrunk: 3 levels down, 3 up. Photos
  scaled by 1/255; rasters (data.bands) by a Normalization layer adapted to the training
  pictures, as a hand-written model would."""
  inputs = keras.Input((size, size, bands or 3))
  if bands:
    normalization = keras.layers.Normalization()
    normalization.adapt(pictures)
    x = normalization(inputs)
  else:
    x = keras.layers.Rescaling(1 / 255)(inputs)
  skips = []
  for width in (32, 64, 128):
    x = keras.layers.Conv2D(width, 3, padding='same', activation='relu')(x)
    x = keras.layers.Conv2D(width, 3, padding='same', activation='relu')(x)
    skips.append(x)
    x = keras.layers.MaxPooling2D()(x)
  x = keras.layers.Conv2D(256, 3, padding='same', activation='relu')(x)
  for width, skip in zip((128, 64, 32), reversed(skips)):
    x = keras.layers.Conv2DTranspose(width, 3, strides=2, padding='same')(x)
    x = keras.layers.Concatenate()([x, skip])
    x = keras.layers.Conv2D(width, 3, padding='same', activation='relu')(x)
  return keras.Model(inputs, keras.layers.Conv2D(num_classes, 1, activation='softmax')(x))


class _StopAfter(keras.callbacks.Callback):
  def __init__(self, seconds: float):
    super().__init__()
    self.deadline = time.monotonic() + seconds

  def on_train_batch_end(self, batch, logs=None):
    if time.monotonic() > self.deadline:
      self.model.stop_training = True


def main(argv):
  del argv
  config = FLAGS.config
  builder = sources.prepared_builder(specs.describe(config).data, FLAGS.workdir)
  splits = sources.resolve_splits(specs.describe(config).data)
  bands = config.data.bands
  x, y = _arrays(builder, splits.train, FLAGS.size, bands)
  y = np.where(y == IGNORE, 0, y)  # The plain way has no ignore label.
  num_classes = len(config.data.class_names)
  model = plain_unet(FLAGS.size, num_classes, x, bands)
  model.compile(keras.optimizers.Adam(1e-3), 'sparse_categorical_crossentropy')
  flips = np.concatenate([x, x[:, :, ::-1]]), np.concatenate([y, y[:, :, ::-1]])
  start = time.monotonic()
  model.fit(*flips, batch_size=16, epochs=10_000, verbose=0, shuffle=True,
            callbacks=[_StopAfter(FLAGS.seconds)])
  trained_s = time.monotonic() - start
  confusion = np.zeros((num_classes, num_classes))
  for example in sources.read_encoded(builder, splits.test):
    picture = decode.decode_picture(example['image'], bands)
    truth = decode.decode_mask(example['segmentation_mask']).numpy()[..., 0]
    probabilities = model(tf.image.resize(picture, (FLAGS.size, FLAGS.size))[None])
    predicted = label_masks(probabilities, truth.shape)[0].numpy()
    counted = truth != IGNORE
    confusion += tf.math.confusion_matrix(truth[counted], predicted[counted],
                                          num_classes).numpy()
  results = metrics.summarize(0.0, 1.0, confusion, tuple(config.data.class_names))
  print(json.dumps({'train_seconds': round(trained_s, 1), 'train_pictures': len(x),
                    **{k: round(float(v), 4) for k, v in results.items()
                       if k.startswith(('mean_iou', 'iou/', 'pixel'))}}), flush=True)


if __name__ == '__main__':
  flags.mark_flags_as_required(['config'])
  app.run(main)
