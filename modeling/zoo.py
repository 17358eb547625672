"""The model zoo on keras-hub encoders (`model.backbone`, modeling/backbones.py).

- `deeplabv3plus`: keras-hub's DeepLabV3+ (ASPP at 1/32, dilations 6/12/18, decoder joined at
  1/4), the architecture of its `deeplab_v3_plus_resnet50_pascalvoc` preset.
- `segformer`: keras-hub's SegFormer (an MiT encoder, all-MLP decoder at 1/4).
- `unet`: a U-Net decoder on any backbone's feature pyramid (bilinear upsampling, the level's
  features concatenated, two 3x3 conv + batch norm + ReLU per level, `model.decoder_widths`).

Every one takes 0-255 pictures: its first layer (`preprocess`) is the encoder's own input
normalisation, so training, evaluation, predict, explain and export all feed it the same way.
The head is `segmentation_output` (keras-hub's name for it, so a preset's head of another class
count is recognised as the one layer that is new), then a float32 softmax.
"""

import keras
import keras_hub
from keras import layers

from errors import ConfigError
from modeling import backbones
from modeling import blocks
from modeling import registry
from modeling import weights as weights_lib
from sizes import describe, sides

HEAD = weights_lib.HEAD


def _pictures(model_config, image_size: int):
  """The input and its preprocessing layer (the backbone's own scale and offset)."""
  scale, offset, _ = backbones.preprocessing(
      model_config.backbone, weights_lib.local_preset_folder(model_config.weights))
  return blocks.pictures_input(image_size, model_config,
                               layers.Rescaling(scale, offset=offset, name='preprocess'))


def _channels(model_config) -> int:
  return model_config.input_bands or 3


def _probabilities(inputs, logits, name: str, model_config) -> keras.Model:
  """The float32 softmax on the logits; with model.sync_batch_norm, every batch norm (keras-hub's
  too, which its builders make unsynchronized) takes its statistics over the global batch:
  otherwise each worker's moving statistics are its own replicas'."""
  outputs = layers.Activation('softmax', dtype='float32', name='probabilities')(logits)
  model = keras.Model(inputs, outputs, name=name)
  if model_config.sync_batch_norm:
    for layer in model._flatten_layers():  # pylint: disable=protected-access
      if isinstance(layer, layers.BatchNormalization):
        layer.synchronized = True  # registry.build_model then reduces it in one all-reduce.
  return model


def check(model_config, image_size: int, field: str) -> None:
  """One line for a family and backbone that cannot go together, or a side too small."""
  name, backbone = model_config.name, model_config.backbone
  entry = backbones.spec(backbone)
  if min(sides(image_size)) < entry.min_size:
    raise ConfigError(f'model.backbone={backbone} takes {field} of at least {entry.min_size} '
                      f'(keras-hub\'s MiT does not build below it): {describe(image_size)} is '
                      f'too small; use {entry.min_size}.')
  height, width = sides(image_size)
  if entry.keras_hub_class == 'MiTBackbone' and height != width:
    raise ConfigError(f'model.backbone={backbone} takes square {field} (keras-hub\'s MiT '
                      f'attention fails on others): {describe(image_size)} is not; use '
                      f'({min(height, width)}, {min(height, width)}) or another backbone.')
  if name == 'segformer' and entry.keras_hub_class != 'MiTBackbone':
    raise ConfigError(f'model.name=segformer takes an MiT encoder (model.backbone=mit_b0 ... '
                      f'mit_b5), not {backbone!r}; for {backbone!r} use model.name=unet or '
                      'deeplabv3plus.')
  if name == 'deeplabv3plus' and entry.keras_hub_class == 'MiTBackbone':
    raise ConfigError(f'model.name=deeplabv3plus reads pyramid levels P2 (1/4) and P5 (1/32), '
                      f'which {backbone!r} does not number that way; use model.name=segformer '
                      'or unet with it, or a ResNet, EfficientNet or DenseNet backbone.')


def encoder_layers(model: keras.Model) -> list:
  """The keras-hub encoder inside the model: what model.freeze_encoder_epochs freezes and
  train.encoder_lr_multiplier slows down."""
  for layer in model.layers:
    if layer.name == 'encoder':
      return [layer]
    if hasattr(layer, 'image_encoder'):
      return [layer.image_encoder]
  return []


@keras.saving.register_keras_serializable(package='segstream')
class FeaturePyramid(keras.Model):
  """A keras-hub backbone's `pyramid_outputs` as a model of their own, saved as the backbone's
  config (as keras-hub's DeepLabV3 and SegFormer hold theirs): a plain Functional of MiT's
  layers cannot be loaded back."""

  def __init__(self, backbone: keras.Model, **kwargs):
    super().__init__(backbone.inputs, backbone.pyramid_outputs, **kwargs)
    self.backbone = backbone

  def get_config(self):
    return {'backbone': keras.saving.serialize_keras_object(self.backbone), 'name': self.name,
            'trainable': self.trainable}

  @classmethod
  def from_config(cls, config):
    return cls(**{**config, 'backbone': keras.saving.deserialize_keras_object(
        config['backbone'])})


def _register(name, test_backbone: str, **test_scale):
  """A zoo family; at test scale on `test_backbone` (backbones.py's tiny entries)."""
  return registry.register(name, size_multiple=backbones.MAX_STRIDE,
                           encoder_layers=encoder_layers, check=check,
                           test_scale=dict(backbone=test_backbone, **test_scale))


@_register('deeplabv3plus', 'resnet_tiny')
def deeplabv3plus(image_size: int, num_classes: int, model_config) -> keras.Model:
  inputs, x = _pictures(model_config, image_size)
  body = keras_hub.models.DeepLabV3Backbone(
      image_encoder=backbones.build(model_config.backbone, image_size, _channels(model_config)),
      spatial_pyramid_pooling_key='P5', low_level_feature_key='P2', upsampling_size=8,
      dilation_rates=[6, 12, 18], projection_filters=48,
      image_shape=(*sides(image_size), _channels(model_config)), name='deeplab')
  logits = layers.Conv2D(num_classes, 1, use_bias=False, name=HEAD)(body(x))
  return _probabilities(inputs, logits, 'deeplabv3plus', model_config)


@_register('segformer', 'mit_tiny')
def segformer(image_size: int, num_classes: int, model_config) -> keras.Model:
  inputs, x = _pictures(model_config, image_size)
  encoder = backbones.build(model_config.backbone, image_size, _channels(model_config))
  body = keras_hub.models.SegFormerBackbone(
      image_encoder=encoder, projection_filters=backbones.spec(model_config.backbone)
      .projection_filters, name='segformer')
  x = layers.Dropout(0.1, name='head_dropout')(body(x))
  x = layers.Conv2D(num_classes, 1, name=HEAD)(x)
  logits = layers.Resizing(*sides(image_size), interpolation='bilinear', name='logits')(x)
  return _probabilities(inputs, logits, 'segformer', model_config)


@_register('unet', 'resnet_tiny', decoder_widths=(32, 16))
def unet(image_size: int, num_classes: int, model_config) -> keras.Model:
  inputs, x = _pictures(model_config, image_size)
  features = FeaturePyramid(backbones.build(model_config.backbone, image_size,
                                            _channels(model_config)),
                            name='encoder')(x)
  by_side = {}  # The deepest feature map of each side (EfficientNet's P5 is its top conv).
  for key in sorted(features):
    by_side[features[key].shape[1]] = features[key]
  side = min(by_side)
  x = by_side.pop(side)
  widths = tuple(model_config.decoder_widths)
  stage = 0
  while side < sides(image_size)[0]:
    side *= 2
    x = layers.UpSampling2D(2, interpolation='bilinear', name=f'decoder{stage + 1}_upsample')(x)
    if side in by_side:
      x = layers.Concatenate(name=f'decoder{stage + 1}_concat')([x, by_side.pop(side)])
    width = widths[min(stage, len(widths) - 1)]
    for part in ('a', 'b'):
      x = blocks.conv_bn_act(x, width, bn_momentum=model_config.bn_momentum,
                             sync_bn=model_config.sync_batch_norm,
                             name=f'decoder{stage + 1}{part}')
    stage += 1
  logits = layers.Conv2D(num_classes, 1, name=HEAD)(x)
  return _probabilities(inputs, logits, 'unet', model_config)
