"""A U-Net on a MobileNetV2 encoder: the design of TensorFlow's segmentation tutorial.

Encoder: keras.applications MobileNetV2 behind its own preprocessing (x / 127.5 - 1), read at
1/2, 1/4, 1/8, 1/16 and 1/32 of the side. Decoder: per skip a strided 3x3 transposed conv,
batch norm and ReLU, then the encoder's features of that resolution concatenated; a last
transposed conv gives the logits at full size. `model.weights`: imagenet | random | the
encoder's weights file (modeling/pretrained.py), or any source of modeling/weights.py. The
encoder's layers are what `model.freeze_encoder_epochs` freezes; a pretrained encoder keeps its batch norm in inference
mode for good, as Keras recommends for fine-tuning (its ImageNet statistics stay).
"""

import keras
from keras import layers

from modeling import blocks
from modeling import pretrained
from modeling import registry
from sizes import sides

SKIPS = ('block_1_expand_relu', 'block_3_expand_relu', 'block_6_expand_relu',
         'block_13_expand_relu', 'block_16_project')  # 1/2 ... 1/32 of the side.
KERAS_FILE = 'mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5'


def encoder_layers(model: keras.Model) -> list:
  """The encoder's layers that train (a pretrained encoder's batch norm never does): what
  model.freeze_encoder_epochs freezes. Everything but the input, preprocessing and decoder."""
  own = ('image', 'preprocess', 'logits', 'probabilities')
  return [layer for layer in model.layers if layer.trainable and layer.weights
          and layer.name not in own and not layer.name.startswith('decoder')]


def encoder_network(model_config, image_size, num_classes: int = 0, weights: str = 'random',
                    input_tensor=None) -> keras.Model:
  """Keras' MobileNetV2 without its top: alone with `weights` loaded (the source of
  model.weights 'imagenet' and Keras' .h5 file), or random on `input_tensor` inside the model."""
  del num_classes  # The decoder's, not the encoder's.
  if input_tensor is None:  # The ImageNet file's three bands.
    input_tensor = keras.Input(shape=(*sides(image_size), 3), name='image')
  return pretrained.application(keras.applications.MobileNetV2, weights, 'model.weights',
                                KERAS_FILE, include_top=False, alpha=model_config.alpha,
                                input_tensor=input_tensor)


@registry.register('mobilenet_v2_unet', size_multiple=32, encoder_layers=encoder_layers,
                   application=encoder_network,
                   test_scale=dict(decoder_widths=(64, 32, 32, 16)))
def mobilenet_v2_unet(image_size: int, num_classes: int, model_config) -> keras.Model:
  momentum = model_config.bn_momentum
  sync_bn = model_config.sync_batch_norm
  inputs, x = blocks.pictures_input(image_size, model_config,
                                    layers.Rescaling(1.0 / 127.5, offset=-1.0, name='preprocess'))
  encoder = encoder_network(model_config, image_size, input_tensor=x)
  if model_config.weights != 'random':
    for layer in encoder.layers:
      if isinstance(layer, layers.BatchNormalization):
        layer.trainable = False
  skips = [encoder.get_layer(name).output for name in SKIPS]
  x = skips.pop()
  for i, filters in enumerate(model_config.decoder_widths):
    x = layers.Conv2DTranspose(filters, 3, strides=2, padding='same', use_bias=False,
                               name=f'decoder{i + 1}_upconv')(x)
    x = blocks.batch_norm(x, momentum, sync_bn, f'decoder{i + 1}_bn')
    x = layers.Activation('relu', name=f'decoder{i + 1}_relu')(x)
    x = layers.Concatenate(name=f'decoder{i + 1}_concat')([x, skips.pop()])
  logits = layers.Conv2DTranspose(num_classes, 3, strides=2, padding='same', name='logits')(x)
  outputs = layers.Activation('softmax', dtype='float32', name='probabilities')(logits)
  return keras.Model(inputs, outputs, name='mobilenet_v2_unet')
