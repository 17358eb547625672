"""Keras' Xception from keras.applications, the network of book section 9.4, as a registered model.

Its own preprocessing (`xception.preprocess_input`: x / 127.5 - 1) is the model's first layer,
so it takes 0-255 pictures like every model here; logits stay reachable for Grad-CAM and a
float32 softmax follows. `model.weights`: 'imagenet' (Keras downloads them), 'random', Keras'
own ImageNet .h5 file, or any source of modeling/weights.py (a .weights.h5, a .keras file, a
run, a preset folder): the whole network, head included, so it explains without training.
"""

from absl import logging
import keras
import numpy as np
from keras import layers

from errors import ConfigError
from modeling import blocks
from modeling import pretrained
from modeling import registry
from sizes import sides

IMAGENET_CLASSES = 1000
KERAS_FILE = 'xception_weights_tf_dim_ordering_tf_kernels.h5'


def network(model_config, image_size, num_classes: int, weights: str = 'random',
            input_tensor=None) -> keras.Model:
  """Keras' Xception with logits on top: alone with `weights` loaded (the source of
  model.weights 'imagenet' and Keras' .h5 file), or random on `input_tensor` inside the model."""
  del model_config  # Xception has no fields of its own.
  if weights == 'imagenet' and num_classes != IMAGENET_CLASSES:
    raise ConfigError(f'model.weights=imagenet has {IMAGENET_CLASSES} classes; '
                      f'data.class_names has {num_classes}.')
  if input_tensor is None:  # Three bands (ImageNet's); not input_shape, which Keras refuses
    # with ImageNet's top at any size but 299.
    input_tensor = keras.Input(shape=(*sides(image_size), 3), name='image')
  return pretrained.application(keras.applications.Xception, weights, 'model.weights',
                                KERAS_FILE, include_top=True, classes=num_classes,
                                classifier_activation=None, input_tensor=input_tensor)


@registry.register('xception', application=network, runs_without_checkpoint=True)
def xception(image_size: int, num_classes: int, model_config) -> keras.Model:
  inputs, x = blocks.pictures_input(image_size, model_config,
                                    layers.Rescaling(1.0 / 127.5, offset=-1.0, name='preprocess'))
  base = network(model_config, image_size, num_classes, input_tensor=x)
  outputs = layers.Activation('softmax', dtype='float32', name='probabilities')(base.output)
  return keras.Model(inputs, outputs, name='xception')


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
