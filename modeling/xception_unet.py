"""An Xception-style U-Net: separable, residual, batch-normalised, with encoder skips.

Encoder: a strided conv stem, then per width a residual block of two separable convs and a
strided 3x3 max pooling (1x1 strided projection as shortcut). Decoder: upsample, concatenate
the encoder's features of that resolution, two separable convs with a 1x1 projected shortcut.
Batch-norm momentum is configurable: 0.99 needs thousands of steps before its statistics fit
the data, so short runs want ~0.9.
"""

import keras
from keras import layers

from modeling import blocks
from modeling import registry


def _encoder_stage(x, filters: int, momentum: float, sync_bn: bool, name: str):
  residual = layers.Conv2D(filters, 1, strides=2, padding='same', use_bias=False,
                           name=f'{name}_project')(x)
  x = blocks.sep_bn_act(x, filters, momentum, sync_bn=sync_bn, name=f'{name}_a')
  x = blocks.sep_bn_act(x, filters, momentum, activation=False, sync_bn=sync_bn,
                        name=f'{name}_b')
  x = layers.MaxPooling2D(3, strides=2, padding='same', name=f'{name}_pool')(x)
  x = layers.add([x, residual], name=f'{name}_add')
  return layers.Activation('relu', name=f'{name}_out')(x)


def _decoder_stage(x, skip, filters: int, momentum: float, sync_bn: bool, upsampling: str,
                   name: str):
  if upsampling == 'transpose':
    x = layers.Conv2DTranspose(x.shape[-1], 3, strides=2, padding='same',
                               name=f'{name}_upconv')(x)
  else:
    x = layers.UpSampling2D(2, interpolation='bilinear', name=f'{name}_upsample')(x)
  if skip is not None:
    x = layers.Concatenate(name=f'{name}_concat')([x, skip])
  residual = layers.Conv2D(filters, 1, use_bias=False, name=f'{name}_project')(x)
  x = blocks.sep_bn_act(x, filters, momentum, sync_bn=sync_bn, name=f'{name}_a')
  x = blocks.sep_bn_act(x, filters, momentum, activation=False, sync_bn=sync_bn,
                        name=f'{name}_b')
  x = layers.add([x, residual], name=f'{name}_add')
  return layers.Activation('relu', name=f'{name}_out')(x)


@registry.register('xception_unet', size_multiple=16, test_scale=dict(widths=(16, 32)))
def xception_unet(image_size: int, num_classes: int, model_config) -> keras.Model:
  widths = tuple(model_config.widths)
  momentum = model_config.bn_momentum
  upsampling = model_config.upsampling
  sync_bn = model_config.sync_batch_norm
  inputs, x = blocks.pictures_input(image_size, model_config,
                                    layers.Rescaling(1.0 / 255, name='rescale'))
  x = blocks.conv_bn_act(x, widths[0], 3, strides=2, bn_momentum=momentum, sync_bn=sync_bn,
                         name='stem')
  skips = [x]
  for i, filters in enumerate(widths[1:]):
    x = _encoder_stage(x, filters, momentum, sync_bn, name=f'encoder{i + 1}')
    skips.append(x)
  skips.pop()  # The bottleneck is x itself.
  for i, filters in enumerate(reversed(widths[:-1])):
    x = _decoder_stage(x, skips.pop(), filters, momentum, sync_bn, upsampling,
                       name=f'decoder{i + 1}')
  x = _decoder_stage(x, None, widths[0] // 2, momentum, sync_bn, upsampling,
                     name='decoder_full')
  logits = layers.Conv2D(num_classes, 3, padding='same', name='logits')(x)
  outputs = layers.Activation('softmax', dtype='float32', name='probabilities')(logits)
  return keras.Model(inputs, outputs, name='xception_unet')
