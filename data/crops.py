"""Native-resolution training: random crops of a picture at its own resolution, after a random
rescale (MMSegmentation's RandomResize + RandomCrop, Model Garden's aug_scale_min/max and
crop_size), decoding only the window a JPEG crop uses. Pure functions on one example."""

from typing import NamedTuple

import tensorflow as tf

from data import resize as resize_lib
from data.decode import decode_mask, decode_picture
from tasks import IGNORE, MASK_FEATURE


class CropSpec(NamedTuple):
  """What a training crop is: its (height, width) and the range of the random rescale."""
  size: tuple  # (height, width) of every crop: the model's input.
  scale_range: tuple = (1.0, 1.0)  # (lo, hi): the picture is scaled by U(lo, hi) first.


def crop_window(picture_size: tf.Tensor, seed: tf.Tensor, spec: CropSpec):
  """(window [y, x, height, width] in the picture's pixels, the scale it is drawn at, its
  (height, width) after scaling): a window that becomes at most one crop when scaled, at a
  uniform place in the picture."""
  scale_seed, y_seed, x_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
  low, high = spec.scale_range
  scale = tf.random.stateless_uniform([], scale_seed, low, high)
  crop = tf.constant(spec.size, tf.float32)
  window = tf.minimum(picture_size, tf.cast(tf.math.ceil(crop / scale), tf.int32))
  y = tf.random.stateless_uniform([], y_seed, 0, picture_size[0] - window[0] + 1, tf.int32)
  x = tf.random.stateless_uniform([], x_seed, 0, picture_size[1] - window[1] + 1, tf.int32)
  scaled = tf.cast(tf.round(tf.cast(window, tf.float32) * scale), tf.int32)
  scaled = tf.clip_by_value(scaled, 1, tf.constant(spec.size, tf.int32))
  return tf.stack([y, x, window[0], window[1]]), scaled


def decode_window(encoded: tf.Tensor, seed: tf.Tensor, spec: CropSpec, bands: int = 0):
  """(the window's pixels, uint8 [h, w, 3] or a raster's float32 [h, w, bands], the window,
  its scaled size). A JPEG decodes only the window (its header gives the size); other formats
  decode whole and are sliced."""
  def from_other():
    picture = decode_picture(encoded, bands)
    window, scaled = crop_window(tf.shape(picture)[:2], seed, spec)
    return in_window(picture, window), window, scaled
  if bands:
    return from_other()

  def from_jpeg():
    window, scaled = crop_window(tf.io.extract_jpeg_shape(encoded)[:2], seed, spec)
    return tf.io.decode_and_crop_jpeg(encoded, window, channels=3), window, scaled
  pixels, window, scaled = tf.cond(tf.io.is_jpeg(encoded), from_jpeg, from_other)
  pixels.set_shape([None, None, 3])
  return pixels, window, scaled


def random_crop(example: dict, seed: tf.Tensor, spec: CropSpec, mask_lookup=None,
                bands: int = 0) -> dict:
  """One training example as a crop of spec.size: a window of the picture scaled by a random
  factor (antialiased when it shrinks; its mask by nearest neighbour, the same geometry), padded
  at the bottom and right where it is smaller than the crop: the picture with black, the mask
  with the ignore label, so padding counts in no loss and no metric."""
  pixels, window, scaled = decode_window(example['image'], seed, spec, bands)
  image = resize_lib.resize_pictures(pixels[None], (scaled[0], scaled[1]))[0]
  return _padded(resize_lib.as_stored(image, bands), example, window, scaled, spec.size,
                 mask_lookup)


def center_crop(example: dict, size: tuple, mask_lookup=None, bands: int = 0) -> dict:
  """The picture's central window of `size` at its own resolution, padded as random_crop pads:
  the fixed previews of a run that trains on crops."""
  picture = decode_picture(example['image'], bands)
  shape = tf.shape(picture)[:2]
  extent = tf.minimum(shape, tf.constant(size, tf.int32))
  corner = (shape - extent) // 2
  window = tf.concat([corner, extent], 0)
  return _padded(in_window(picture, window), example, window, extent, size, mask_lookup)


def _padded(image, example, window, scaled, size, mask_lookup) -> dict:
  """The example of a crop: `image` padded to `size`, and its label: the mask's same `window`,
  resized to `scaled` by nearest neighbour and padded with the ignore label (crops are of
  segmentation sets: the config checks refuse them for a classifier)."""
  image = pad_to(image, size, 0)
  mask = decode_mask(example[MASK_FEATURE], mask_lookup)
  mask = tf.image.resize(in_window(mask, window), scaled, method='nearest')
  return {'image': image, 'label': pad_to(tf.cast(mask, tf.uint8), size, IGNORE)}


def in_window(pixels: tf.Tensor, window: tf.Tensor) -> tf.Tensor:
  """The [h, w, C] part of `pixels` inside `window` ([y, x, height, width])."""
  return pixels[window[0]:window[0] + window[2], window[1]:window[1] + window[3]]


def pad_to(pictures: tf.Tensor, size: tuple, value: int) -> tf.Tensor:
  """[h, w, C] padded at the bottom and right to `size` with `value`, its shape then static."""
  shape = tf.shape(pictures)
  padded = tf.pad(pictures, [[0, size[0] - shape[0]], [0, size[1] - shape[1]], [0, 0]],
                  constant_values=tf.cast(value, pictures.dtype))
  return tf.ensure_shape(padded, [size[0], size[1], pictures.shape[-1]])
