"""Intermediate activations (book 9.4.1): every channel of chosen layers as one grid picture."""

import keras
import numpy as np

from errors import ConfigError

# Layers whose outputs are feature maps worth looking at.
FEATURE_LAYER_TYPES = (keras.layers.Conv2D, keras.layers.SeparableConv2D,
                       keras.layers.Conv2DTranspose, keras.layers.MaxPooling2D,
                       keras.layers.AveragePooling2D, keras.layers.DepthwiseConv2D)


def feature_layer_names(model: keras.Model) -> list[str]:
  """Names of the model's convolution, transposed convolution and pooling layers, and of the
  nested models (a keras-hub DeepLabV3+ or SegFormer body) with one feature map, in order."""
  return [layer.name for layer in model.layers
          if isinstance(layer, FEATURE_LAYER_TYPES + (keras.Model,))
          and len(getattr(layer.output, 'shape', ())) == 4]


def layer_output(model: keras.Model, name: str):
  """The named layer's output in `model`'s graph. A nested model's own `output` belongs to its
  inner graph; its call inside `model` is its last node."""
  layer = model.get_layer(name)
  if isinstance(layer, keras.Model):
    return layer._inbound_nodes[-1].output_tensors[0]  # pylint: disable=protected-access
  return layer.output


def spread_layer_names(model: keras.Model, count: int) -> list[str]:
  """`count` feature layers spread evenly across the depth of the model (first and last in)."""
  names = feature_layer_names(model)
  if count >= len(names):
    return names
  picks = np.linspace(0, len(names) - 1, count).round().astype(int)
  return [names[i] for i in sorted(set(picks))]


def check_layers(model: keras.Model, layer_names: list[str]) -> None:
  known = {layer.name for layer in model.layers}
  unknown = [n for n in layer_names if n not in known]
  if unknown:
    raise ConfigError(f'Unknown layer name(s) {", ".join(unknown)} in model {model.name}; '
                     f'feature layers: {", ".join(feature_layer_names(model))}.')


def layer_outputs(model: keras.Model, images: np.ndarray, layer_names: list[str]) -> dict:
  """All chosen layers' outputs for a batch of images, in one forward pass."""
  check_layers(model, layer_names)
  extractor = keras.Model(model.input, [layer_output(model, n) for n in layer_names])
  outputs = extractor(np.asarray(images, np.float32), training=False)
  if len(layer_names) == 1:
    outputs = [outputs]
  return {n: np.asarray(keras.ops.convert_to_numpy(o), np.float32)
          for n, o in zip(layer_names, outputs)}


def normalize_channels(activation: np.ndarray) -> np.ndarray:
  """Per channel (x - mean) / std * 64 + 128, clipped to uint8; all-zero channels stay zero."""
  activation = np.asarray(activation, np.float32)  # (H, W, C)
  mean = activation.mean(axis=(0, 1), keepdims=True)
  std = activation.std(axis=(0, 1), keepdims=True)
  normalized = (activation - mean) / np.where(std > 0, std, 1.0) * 64.0 + 128.0
  normalized = np.where(np.any(activation != 0, axis=(0, 1), keepdims=True), normalized, 0.0)
  return np.clip(normalized, 0, 255).astype(np.uint8)


def activation_grid(activation: np.ndarray, per_row: int = 16) -> np.ndarray:
  """One (H, W, C) activation as a grid of its C channels, `per_row` a row, 1-pixel gaps.

  Returns uint8 of shape (rows * (H + 1) - 1, per_row * (W + 1) - 1).
  """
  channels = normalize_channels(activation)
  height, width, count = channels.shape
  per_row = min(per_row, count)
  rows = -(-count // per_row)
  grid = np.zeros((rows * (height + 1) - 1, per_row * (width + 1) - 1), np.uint8)
  for c in range(count):
    r, k = divmod(c, per_row)
    grid[r * (height + 1):r * (height + 1) + height,
         k * (width + 1):k * (width + 1) + width] = channels[..., c]
  return grid


def activation_grids(model: keras.Model, image: np.ndarray, layer_names: list[str] | None = None,
                     per_row: int = 16) -> dict:
  """{layer name: uint8 grid} for one image (H, W, 3), all layers from one forward pass."""
  layer_names = layer_names or feature_layer_names(model)
  outputs = layer_outputs(model, np.asarray(image)[None], layer_names)
  return {name: activation_grid(out[0], per_row) for name, out in outputs.items()}
