"""Keras' Xception from keras.applications, the network of book section 9.4, as a registered model.

Its own preprocessing (`xception.preprocess_input`: x / 127.5 - 1) is the model's first layer,
so it takes 0-255 pictures like every model here; logits stay reachable for Grad-CAM and a
float32 softmax follows. `model.weights`: 'imagenet' (Keras downloads them), 'random', or the
path of a weights file (a .weights.h5 saved by Keras 3, or Keras' own ImageNet .h5 file).
"""

import os

from absl import logging
import keras
import numpy as np
from keras import layers

from errors import ConfigError
from modeling import registry

IMAGENET_CLASSES = 1000


def _weights_error(weights: str, problem: str) -> ConfigError:
  return ConfigError(
      f'model.weights={weights!r}: {problem}. Set --config.model.weights to the path of a '
      'weights file for this architecture (a .weights.h5 from model.save_weights, or '
      "Keras' xception_weights_tf_dim_ordering_tf_kernels.h5 copied from a machine with "
      "internet; Keras looks for it in ~/.keras/models/), or to 'random' for untrained weights.")


@registry.register('xception')
def xception(image_size: int, num_classes: int, model_config) -> keras.Model:
  weights = model_config.get('weights', 'random')
  if weights == 'imagenet' and num_classes != IMAGENET_CLASSES:
    raise ConfigError(f'model.weights=imagenet has {IMAGENET_CLASSES} classes; '
                      f'data.class_names has {num_classes}.')
  inputs = keras.Input(shape=(image_size, image_size, 3), name='image')
  x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name='preprocess')(inputs)
  try:
    base = keras.applications.Xception(
        include_top=True, weights='imagenet' if weights == 'imagenet' else None,
        input_tensor=x, classes=num_classes, classifier_activation=None)
  except Exception as e:  # Keras raises a bare Exception for a failed download.
    if weights != 'imagenet':
      raise
    raise _weights_error(weights, f'Keras could not get the ImageNet weights ({e})') from None
  outputs = layers.Activation('softmax', dtype='float32', name='probabilities')(base.output)
  model = keras.Model(inputs, outputs, name='xception')
  if weights not in ('imagenet', 'random'):
    if not os.path.isfile(weights):
      raise _weights_error(weights, 'no such file')
    try:
      model.load_weights(weights)
    except (ValueError, OSError, KeyError) as e:
      raise _weights_error(weights, f'it does not fit this model ({e})') from None
    logging.info('Loaded Xception weights from %s.', weights)
  return model


def imagenet_class_names() -> list[str] | None:
  """The 1,000 ImageNet class names from Keras' class index, or None when Keras cannot get it
  (it downloads the index once, into ~/.keras/models/)."""
  try:
    decoded = keras.applications.imagenet_utils.decode_predictions(
        np.eye(IMAGENET_CLASSES, dtype=np.float32), top=1)
  except Exception as e:  # pylint: disable=broad-except  Keras raises a bare Exception offline.
    logging.warning('No ImageNet class index (%s): classes stay numbered.', e)
    return None
  return [row[0][1] for row in decoded]
