"""The keras-hub encoders `model.backbone` names, as architectures the product keeps.

keras-hub ships no architecture config offline, only preset handles that download one, so each
entry here is the constructor arguments of the architecture its ImageNet (or ADE20K /
Cityscapes) presets were converted with (keras-hub's own timm and SegFormer converters), and
builds with random weights on a machine without network. Every entry exposes a feature pyramid
(`pyramid_outputs`: P1..P5, each level half the side of the one before).
"""

import dataclasses
import difflib
import json
import os

import keras
import keras_hub

from errors import ConfigError
from sizes import sides

# keras-hub's converters normalise every ImageNet-trained picture this way (timm's
# pretrained_cfg and SegFormer's IMAGENET_DEFAULT_MEAN/STD): x / 255, minus mean, over std.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True)
class Backbone:
  keras_hub_class: str  # A keras_hub.models FeaturePyramidBackbone.
  arguments: dict
  presets: tuple[str, ...]  # keras-hub presets of this architecture (model.weights may name).
  fixed_shape: bool = False  # Built for one input size (MiT bakes its token grid in).
  min_size: int = 32  # The smallest input side it builds for.
  mean: tuple = IMAGENET_MEAN
  std: tuple = IMAGENET_STD
  projection_filters: int = 0  # MiT: the SegFormer decoder's channels its presets use.


def _resnet(blocks, block_type, presets, filters=(64, 128, 256, 512)):
  return Backbone('ResNetBackbone', dict(
      input_conv_filters=[64], input_conv_kernel_sizes=[7],
      stackwise_num_filters=list(filters), stackwise_num_blocks=blocks,
      stackwise_num_strides=[1, 2, 2, 2], block_type=block_type), presets)


def _mit(variant, depths, hidden_dims, heads=(1, 2, 5, 8), projection_filters=768):
  return Backbone('MiTBackbone', dict(
      layerwise_depths=depths, num_layers=4, hidden_dims=hidden_dims,
      layerwise_num_heads=list(heads), layerwise_sr_ratios=[8, 4, 2, 1],
      max_drop_path_rate=0.1, layerwise_patch_sizes=[7, 3, 3, 3],
      layerwise_strides=[4, 2, 2, 2]),
      tuple(f'{kind}_{variant}_{data}' for kind in ('mit', 'segformer')
            for data in (('ade20k_640' if variant == 'b5' else 'ade20k_512'), 'cityscapes_1024'))
      if variant else (), fixed_shape=True, min_size=64, projection_filters=projection_filters)


BACKBONES = {
    'resnet18': _resnet([2, 2, 2, 2], 'basic_block', ('resnet_18_imagenet',)),
    'resnet34': _resnet([3, 4, 6, 3], 'basic_block', ()),
    'resnet50': _resnet([3, 4, 6, 3], 'bottleneck_block',
                        ('resnet_50_imagenet', 'deeplab_v3_plus_resnet50_pascalvoc')),
    'resnet101': _resnet([3, 4, 23, 3], 'bottleneck_block', ('resnet_101_imagenet',)),
    'efficientnet_b0': Backbone('EfficientNetBackbone', dict(
        stackwise_width_coefficients=[1.0] * 7, stackwise_depth_coefficients=[1.0] * 7,
        stackwise_squeeze_and_excite_ratios=[0.25] * 7,
        stackwise_kernel_sizes=[3, 3, 5, 3, 5, 5, 3], stackwise_num_repeats=[1, 2, 2, 3, 3, 4, 1],
        stackwise_input_filters=[32, 16, 24, 40, 80, 112, 192],
        stackwise_output_filters=[16, 24, 40, 80, 112, 192, 320],
        stackwise_expansion_ratios=[1, 6, 6, 6, 6, 6, 6], stackwise_strides=[1, 2, 2, 2, 1, 2, 1],
        stackwise_block_types=['v1'] * 7, min_depth=None, include_stem_padding=True,
        use_depth_divisor_as_min_depth=True, cap_round_filter_decrease=True,
        stem_conv_padding='valid', batch_norm_momentum=0.9, batch_norm_epsilon=1e-5, dropout=0,
        projection_activation=None), ('efficientnet_b0_ra_imagenet',)),
    'densenet121': Backbone('DenseNetBackbone', dict(
        stackwise_num_repeats=[6, 12, 24, 16], compression_ratio=0.5, growth_rate=32),
        ('densenet_121_imagenet',)),
    # keras-hub's presets: 256 decoder channels for B0 and B1, 768 from B2 on.
    'mit_b0': _mit('b0', [2, 2, 2, 2], [32, 64, 160, 256], projection_filters=256),
    'mit_b1': _mit('b1', [2, 2, 2, 2], [64, 128, 320, 512], projection_filters=256),
    'mit_b2': _mit('b2', [3, 4, 6, 3], [64, 128, 320, 512]),
    'mit_b3': _mit('b3', [3, 4, 18, 3], [64, 128, 320, 512]),
    'mit_b4': _mit('b4', [3, 8, 27, 3], [64, 128, 320, 512]),
    'mit_b5': _mit('b5', [3, 6, 40, 3], [64, 128, 320, 512]),
    # Test scale (one block a stage, filters up to 64; keras-hub's ResNet takes 64 filters in
    # its stem and first stage only): the same code as the entries above at a fraction of
    # their weights and layers, for tests and smoke runs; no presets.
    'resnet_tiny': _resnet([1, 1, 1, 1], 'basic_block', (), filters=(64, 16, 32, 64)),
    'mit_tiny': _mit('', [1, 1, 1, 1], [8, 16, 32, 64], heads=(1, 2, 2, 4),
                     projection_filters=16),
}
MAX_STRIDE = 32  # Every entry's deepest pyramid level is 1/32 of the side.


def spec(name: str) -> Backbone:
  """The entry called `name`, or a ConfigError naming the nearest."""
  if name not in BACKBONES:
    nearest = difflib.get_close_matches(name, BACKBONES, n=1, cutoff=0)
    raise ConfigError(f'Unknown model.backbone={name!r}; did you mean {nearest[0]!r}? '
                      f'Backbones: {", ".join(BACKBONES)}.')
  return BACKBONES[name]


def build(name: str, image_size: int, channels: int = 3) -> keras.Model:
  """The named encoder with random weights, for pictures of `image_size` (a side or (height,
  width)) with `channels` bands."""
  entry = spec(name)
  shape = (*sides(image_size), channels) if entry.fixed_shape else (None, None, channels)
  return getattr(keras_hub.models, entry.keras_hub_class)(image_shape=shape, **entry.arguments)


def preprocessing(name: str, preset_folder: str | None) -> tuple[list, list, str]:
  """(scale, offset, where from) turning 0-255 pictures into what the encoder was trained on:
  the image converter of the keras-hub preset folder the weights come from when it has one,
  else the ImageNet mean/std normalisation every entry's presets were converted with."""
  converter = _preset_image_converter(preset_folder) if preset_folder else None
  if converter and converter.get('scale') is not None:
    scale, offset = converter['scale'], converter.get('offset') or 0.0
    per_channel = [(s if isinstance(s, list) else [s] * 3) for s in (scale, offset)]
    return per_channel[0], per_channel[1], f'the image converter of {preset_folder}'
  entry = spec(name)
  return ([1.0 / 255.0 / s for s in entry.std], [-m / s for m, s in zip(entry.mean, entry.std)],
          'ImageNet mean/std (keras-hub converters)')


def _preset_image_converter(folder: str) -> dict | None:
  """The image converter's config in a keras-hub preset folder's preprocessor.json, if any."""
  path = os.path.join(folder, 'preprocessor.json')
  if not os.path.isfile(path):
    return None
  try:
    with open(path) as f:
      preprocessor = json.load(f)
  except (OSError, ValueError):
    return None
  converter = preprocessor.get('config', {}).get('image_converter') or {}
  return converter.get('config') if isinstance(converter, dict) else None
