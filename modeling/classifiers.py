"""The book's classifiers: the residual toy convnet (9.3.2) and the mini-Xception (9.3.5)."""

import keras
from keras import layers

from modeling import blocks
from modeling import registry


def classification_head(x, num_classes: int):
  """Logits then a float32 sigmoid (2 classes: one unit) or softmax."""
  units = 1 if num_classes == 2 else num_classes
  logits = layers.Dense(units, name='logits')(x)
  return layers.Activation('sigmoid' if units == 1 else 'softmax', dtype='float32',
                           name='probabilities')(logits)


@registry.register('residual_convnet')
def residual_convnet(image_size: int, num_classes: int, model_config) -> keras.Model:
  """Book listing 9-3: 297,697 parameters at 32x32 with a sigmoid head."""
  inputs, x = blocks.pictures_input(image_size, model_config,
                                    layers.Rescaling(1.0 / 255, name='rescale'))
  x = blocks.residual_block(x, 32, pooling=True, name='block1')
  x = blocks.residual_block(x, 64, pooling=True, name='block2')
  x = blocks.residual_block(x, 128, pooling=False, name='block3')
  x = layers.GlobalAveragePooling2D(name='pool')(x)
  return keras.Model(inputs, classification_head(x, num_classes), name='residual_convnet')


@registry.register('mini_xception')
def mini_xception(image_size: int, num_classes: int, model_config) -> keras.Model:
  """Book 9.3.5, with its augmentation stage (flip, rotation 0.1, zoom 0.2; training only).

  `model.bn_momentum` (the book: Keras' default 0.99) can be lowered for short runs.
  """
  momentum = model_config.bn_momentum
  inputs = blocks.picture_input(image_size, model_config)
  x = layers.RandomFlip('horizontal', name='augment_flip')(inputs)
  x = layers.RandomRotation(0.1, name='augment_rotation')(x)
  x = layers.RandomZoom(0.2, name='augment_zoom')(x)
  x = blocks.normalised(x, model_config, layers.Rescaling(1.0 / 255, name='rescale'))
  x = layers.Conv2D(32, 5, use_bias=False, padding='same', name='stem_conv')(x)
  for i, filters in enumerate([32, 64, 128, 256, 512]):
    x = blocks.xception_block(x, filters, momentum, model_config.sync_batch_norm,
                              name=f'block{i + 1}')
  x = layers.GlobalAveragePooling2D(name='pool')(x)
  x = layers.Dropout(0.5, name='dropout')(x)
  return keras.Model(inputs, classification_head(x, num_classes), name='mini_xception')
