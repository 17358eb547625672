"""Filter patterns (book 9.4.2): gradient ascent on the input to excite each filter of a layer.

All filters of a layer are optimised together, one image per filter in a batch, inside one
compiled function: a 64-filter layer costs one graph, not 64 Python loops.
"""

import contextlib

import keras
import numpy as np
import tensorflow as tf

from interpretability import activations

BOOK_STEPS = 30
BOOK_STEP_SIZE = 10.0
BOOK_BORDER = 2  # Pixels of the activation map left out of the loss.
BOOK_CROP = 25  # Pixels cropped from each side of a 200-pixel picture.


def _input_transform(model: keras.Model) -> tuple:
  """(scale, offset) taking the optimised image to the model's input: the image lives where
  the model's own Rescaling puts its pictures ([0, 1] for x / 255, [-1, 1]-centred for
  Xception's x / 127.5 - 1, per channel for an ImageNet mean/std; a raster model's
  BandNormalization puts each band at its mean 0 and std 1), so the ascent starts from the
  book's noise in that space."""
  bands = next((l for l in model.layers if type(l).__name__ == 'BandNormalization'), None)
  if bands is not None:
    return bands.std.numpy(), bands.mean.numpy()
  rescale = next((l for l in model.layers if isinstance(l, keras.layers.Rescaling)), None)
  if rescale is None or not np.all(np.asarray(rescale.scale) < 1):
    return 1.0, 0.0
  scale = np.asarray(rescale.scale, np.float32)
  return 1.0 / scale, -np.asarray(rescale.offset, np.float32) / scale


@contextlib.contextmanager
def _pre_activation(layer: keras.layers.Layer):
  """Reads a layer before its fused activation, as the book reads Xception's conv outputs.

  A ReLU inside the layer would give filters that are off on the starting noise no gradient
  at all; the pre-activation output always has one.
  """
  activation = getattr(layer, 'activation', None)
  if activation is not None:
    layer.activation = keras.activations.linear
  try:
    yield
  finally:
    if activation is not None:
      layer.activation = activation


def _feature_extractor(model: keras.Model, layer_name: str):
  """A function images -> the layer's pre-activation output, float32."""
  layer = model.get_layer(layer_name)
  extractor = keras.Model(model.input, activations.layer_output(model, layer_name))
  scale, offset = _input_transform(model)

  def extract(images):
    with _pre_activation(layer):
      return tf.cast(extractor(images * scale + offset, training=False), tf.float32)
  return extract


def scored_region(feature_map):
  """The activation maps (N, H, W, C) without their BOOK_BORDER-cell border (less on maps too
  small for it): the part whose mean the ascent raises, away from padding's edge effects."""
  border = min(BOOK_BORDER, (feature_map.shape[1] - 1) // 2)
  return feature_map[:, border:feature_map.shape[1] - border,
                     border:feature_map.shape[2] - border, :]


def filter_patterns(model: keras.Model, layer_name: str, filter_indices=None,
                    steps: int = BOOK_STEPS, step_size: float = BOOK_STEP_SIZE,
                    seed: int = 0) -> np.ndarray:
  """Images in [0, 1] that maximise each filter's mean activation, shape (F, H, W, 3) float32.

  Starts from uniform noise in [0.4, 0.6]; each step adds `step_size` times the L2-normalised
  gradient (per image) of the filter's mean activation without a 2-pixel border.
  """
  activations.check_layers(model, [layer_name])
  channels = model.get_layer(layer_name).output.shape[-1]
  extract = _feature_extractor(model, layer_name)
  indices = np.arange(min(channels, 64)) if filter_indices is None else np.asarray(
      filter_indices)
  height, width = model.input.shape[1:3]
  one_hot = tf.one_hot(indices, channels, dtype=tf.float32)  # (F, C): each image's filter.

  @tf.function
  def ascend(images):
    for _ in tf.range(steps):
      with tf.GradientTape() as tape:
        tape.watch(images)
        inner = scored_region(extract(images))
        per_image = tf.reduce_sum(tf.reduce_mean(inner, axis=[1, 2]) * one_hot, axis=-1)
        loss = tf.reduce_sum(per_image)  # Images are independent: one gradient call for all.
      gradients = tape.gradient(loss, images)
      gradients = tf.math.l2_normalize(gradients, axis=[1, 2, 3])
      images = images + step_size * gradients
    return images

  start = tf.random.stateless_uniform((len(indices), height, width, model.input.shape[-1]),
                                      [seed, 0],
                                      minval=0.4, maxval=0.6)
  return ascend(start).numpy()


def deprocess(image: np.ndarray) -> np.ndarray:
  """The book's deprocess: centre, scale to std 64 around 128, crop the border, uint8."""
  image = np.asarray(image, np.float32)
  image = (image - image.mean()) / (image.std() + 1e-5) * 64.0 + 128.0
  crop = min(BOOK_CROP, image.shape[0] * BOOK_CROP // 200)
  if crop:
    image = image[crop:-crop, crop:-crop]
  return np.clip(image, 0, 255).astype(np.uint8)


def pattern_grid(patterns: np.ndarray, rgb_bands: tuple = (), per_row: int = 8,
                 margin: int = 5) -> np.ndarray:
  """Deprocessed patterns stitched into the book's grid (8 a row, 5-pixel margins); patterns
  of a raster model show `rgb_bands` (1-based; () the first three; one band: grey)."""
  shown = ([band - 1 for band in rgb_bands] if rgb_bands else
           [0, 1, 2] if patterns.shape[-1] >= 3 else [0, 0, 0])
  tiles = [deprocess(p)[..., shown] for p in patterns]
  size_h, size_w = tiles[0].shape[:2]
  per_row = min(per_row, len(tiles))
  rows = -(-len(tiles) // per_row)
  grid = np.zeros((rows * size_h + (rows - 1) * margin,
                   per_row * size_w + (per_row - 1) * margin, 3), np.uint8)
  for i, tile in enumerate(tiles):
    r, c = divmod(i, per_row)
    top, left = r * (size_h + margin), c * (size_w + margin)
    grid[top:top + size_h, left:left + size_w] = tile
  return grid
