"""Native-resolution training: random crops of a picture at its own resolution, after a random
rescale (MMSegmentation's RandomResize + RandomCrop, Model Garden's aug_scale_min/max and
crop_size), decoding only the window a JPEG crop uses. Pure functions on one example."""

from typing import NamedTuple

import tensorflow as tf

from data import resize as resize_lib
from data.decode import MASK_STRIPS_FEATURE, decode_mask, decode_mask_rows, decode_picture
from tasks import IGNORE, MASK_FEATURE


class CropSpec(NamedTuple):
  """What a training crop is: its (height, width), the range of the random rescale, and where
  it lies (data.crop_sampling)."""
  size: tuple  # (height, width) of every crop: the model's input.
  scale_range: tuple = (1.0, 1.0)  # (lo, hi): the picture is scaled by U(lo, hi) first.
  # class_balanced: the probability of each class to centre a crop on (): uniform crops.
  class_probabilities: tuple = ()
  centred_fraction: float = 1.0  # The share of crops centred on a drawn class's pixel.


def class_probabilities(class_pixels, temperature: float) -> tuple:
  """Each class's chance to centre a crop on: its share of the training pixels to the power
  `temperature` (0: every class present alike, 1: as often as its pixels), normalised; 0 for
  a class with no pixel."""
  counts = [float(n) for n in class_pixels]
  total = sum(counts) or 1.0
  weights = [(n / total) ** temperature if n > 0 else 0.0 for n in counts]
  return tuple(w / (sum(weights) or 1.0) for w in weights)


def class_centre(mask: tf.Tensor, seed: tf.Tensor, spec: CropSpec) -> tf.Tensor:
  """int32 [y, x] of a pixel of a class drawn by spec.class_probabilities (a class-id mask
  [H, W, 1], or 0/1 labels per class), for spec.centred_fraction of the crops; [-1, -1] (a
  uniform crop) for the rest, and where the picture has no pixel of the class drawn."""
  use_seed, class_seed, pixel_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
  centred = tf.random.stateless_uniform([], use_seed) < spec.centred_fraction
  logits = tf.math.log(tf.constant([spec.class_probabilities], tf.float32))
  drawn = tf.random.stateless_categorical(logits, 1, class_seed, dtype=tf.int32)[0, 0]
  if mask.shape[-1] == 1:
    hits = tf.where(tf.equal(mask[..., 0], tf.cast(drawn, mask.dtype)))
  else:
    hits = tf.where(tf.equal(tf.gather(mask, drawn, axis=-1), 1))
  count = tf.shape(hits)[0]
  pick = tf.random.stateless_uniform([], pixel_seed, 0, tf.maximum(count, 1), tf.int32)
  return tf.cond(centred & (count > 0), lambda: tf.cast(hits[pick], tf.int32),
                 lambda: tf.constant([-1, -1], tf.int32))


def crop_window(picture_size: tf.Tensor, seed: tf.Tensor, spec: CropSpec, centre=None):
  """(window [y, x, height, width] in the picture's pixels, the scale it is drawn at, its
  (height, width) after scaling): a window that becomes at most one crop when scaled, at a
  uniform place in the picture, or centred on `centre` ([y, x]; [-1, -1]: uniform) as far as
  the picture allows."""
  scale_seed, y_seed, x_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
  low, high = spec.scale_range
  scale = tf.random.stateless_uniform([], scale_seed, low, high)
  crop = tf.constant(spec.size, tf.float32)
  window = tf.minimum(picture_size, tf.cast(tf.math.ceil(crop / scale), tf.int32))
  y = tf.random.stateless_uniform([], y_seed, 0, picture_size[0] - window[0] + 1, tf.int32)
  x = tf.random.stateless_uniform([], x_seed, 0, picture_size[1] - window[1] + 1, tf.int32)
  if centre is not None:
    around = tf.clip_by_value(centre - window // 2, 0, picture_size - window)
    y, x = (tf.where(centre[0] >= 0, around[0], y), tf.where(centre[0] >= 0, around[1], x))
  scaled = tf.cast(tf.round(tf.cast(window, tf.float32) * scale), tf.int32)
  scaled = tf.clip_by_value(scaled, 1, tf.constant(spec.size, tf.int32))
  return tf.stack([y, x, window[0], window[1]]), scaled


def decode_window(encoded: tf.Tensor, seed: tf.Tensor, spec: CropSpec, bands: int = 0,
                  centre=None):
  """(the window's pixels, uint8 [h, w, 3] or a raster's float32 [h, w, bands], the window,
  its scaled size). A JPEG decodes only the window (its header gives the size); other formats
  decode whole and are sliced."""
  def from_other():
    picture = decode_picture(encoded, bands)
    window, scaled = crop_window(tf.shape(picture)[:2], seed, spec, centre)
    return in_window(picture, window), window, scaled
  if bands:
    return from_other()

  def from_jpeg():
    window, scaled = crop_window(tf.io.extract_jpeg_shape(encoded)[:2], seed, spec, centre)
    return tf.io.decode_and_crop_jpeg(encoded, window, channels=3), window, scaled
  pixels, window, scaled = tf.cond(tf.io.is_jpeg(encoded), from_jpeg, from_other)
  pixels.set_shape([None, None, 3])
  return pixels, window, scaled


def random_crop(example: dict, seed: tf.Tensor, spec: CropSpec, mask_lookup=None,
                bands: int = 0) -> dict:
  """One training example as a crop of spec.size: a window of the picture scaled by a random
  factor (antialiased when it shrinks; its mask by nearest neighbour, the same geometry), padded
  at the bottom and right where it is smaller than the crop: the picture with black, the mask
  with the ignore label, so padding counts in no loss and no metric. Class-balanced crops
  (spec.class_probabilities) are centred on a pixel of a drawn class (`class_centre`), found in
  the whole mask; other crops decode only the mask's strips their window covers, when the
  prepared set stores them (MASK_STRIPS_FEATURE)."""
  if MASK_STRIPS_FEATURE in example and not spec.class_probabilities:
    pixels, window, scaled = decode_window(example['image'], seed, spec, bands)
    mask = decode_mask_rows(example[MASK_STRIPS_FEATURE], window[0], window[2], mask_lookup)
    window = tf.stack([0, window[1], window[2], window[3]])  # The window within those rows.
  else:
    mask = decode_mask(example[MASK_FEATURE], mask_lookup)
    centre = None
    if spec.class_probabilities:
      centre = class_centre(mask, tf.random.experimental.stateless_fold_in(seed, 1), spec)
    pixels, window, scaled = decode_window(example['image'], seed, spec, bands, centre)
  image = resize_lib.resize_pictures(pixels[None], (scaled[0], scaled[1]))[0]
  return _padded(resize_lib.as_stored(image, bands), mask, window, scaled, spec.size)


def center_crop(example: dict, size: tuple, mask_lookup=None, bands: int = 0) -> dict:
  """The picture's central window of `size` at its own resolution, padded as random_crop pads:
  the fixed previews of a run that trains on crops."""
  picture = decode_picture(example['image'], bands)
  shape = tf.shape(picture)[:2]
  extent = tf.minimum(shape, tf.constant(size, tf.int32))
  corner = (shape - extent) // 2
  window = tf.concat([corner, extent], 0)
  return _padded(in_window(picture, window), decode_mask(example[MASK_FEATURE], mask_lookup),
                 window, extent, size)


def _padded(image, mask, window, scaled, size) -> dict:
  """The example of a crop: `image` padded to `size`, and its label: the decoded mask's same
  `window`, resized to `scaled` by nearest neighbour and padded with the ignore label (crops
  are of segmentation sets: the config checks refuse them for a classifier)."""
  image = pad_to(image, size, 0)
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
