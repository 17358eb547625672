"""The segmentation model of "Deep Learning with Python", chapter 9.2 (2,880,643 parameters).

As in the book, but the last layer's softmax is its own float32 layer: the logits stay
reachable for Seg-Grad-CAM, and the softmax and the loss run in float32 under mixed precision.
"""

import keras
from keras import layers

from modeling import blocks
from modeling import registry


@registry.register('book_segmentation', size_multiple=8)
def book_segmentation(image_size: int, num_classes: int, model_config) -> keras.Model:
  inputs, x = blocks.pictures_input(image_size, model_config,
                                    layers.Rescaling(1.0 / 255, name='rescale'))
  for i, (filters, strides) in enumerate([(64, 2), (64, 1), (128, 2), (128, 1), (256, 2),
                                          (256, 1)]):
    x = layers.Conv2D(filters, 3, strides=strides, activation='relu', padding='same',
                      name=f'encoder_conv{i + 1}')(x)
  for i, (filters, strides) in enumerate([(256, 1), (256, 2), (128, 1), (128, 2), (64, 1),
                                          (64, 2)]):
    x = layers.Conv2DTranspose(filters, 3, strides=strides, activation='relu', padding='same',
                               name=f'decoder_deconv{i + 1}')(x)
  logits = layers.Conv2D(num_classes, 3, padding='same', name='logits')(x)
  outputs = layers.Activation('softmax', dtype='float32', name='probabilities')(logits)
  return keras.Model(inputs, outputs, name='book_segmentation')
