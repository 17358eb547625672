"""Training augmentation as pure functions on batches: the same flip and crop for a picture and
its mask, and colour, grey, blur and noise changes of the picture alone, all from one seed.
A raster's bands are changed in their own units (brightness as a gain, contrast about the
picture's band mean, noise in the band's spread), and only the bands asked for."""

import math
from typing import NamedTuple

import tensorflow as tf


class Augmentation(NamedTuple):
  """What training changes in a picture (data.augment, but for scale_range: the crops'
  rescale, data/crops.py's CropSpec): geometry for image and mask alike, colour and texture for
  the image alone. The defaults change nothing."""
  flip: bool = False
  min_crop_fraction: float = 1.0  # <1: crops of at least this share of each side.
  max_aspect_ratio: float = 1.0  # >1: crops' height/width ratio drawn in [1/r, r] (log-uniform).
  color_jitter: float = 0.0  # Brightness shift and contrast/saturation factor range.
  hue: float = 0.0  # Largest hue rotation, in turns of the colour wheel (<= 0.5).
  grayscale: float = 0.0  # Probability of a grey picture.
  blur: float = 0.0  # Probability of a Gaussian blur (sigma 0.5-2 px).
  noise: float = 0.0  # Largest standard deviation of Gaussian pixel noise, in [0, 1] units.
  jitter_bands: tuple = ()  # Rasters: the bands (0-based) color_jitter changes.


def augment(batch: dict, seed: tf.Tensor, augmentation: Augmentation) -> dict:
  """A batch with each picture flipped and cropped-and-rescaled at random (the same draw for
  its mask label), then its colours and texture changed: what a pet looks like, not where it
  is. Every op runs once on the whole batch, with each picture's own draws.

  `seed` is a stateless seed (shape [2]) for the batch, so a picture's augmentation depends
  only on its position in the stream: a resumed run sees exactly what an uninterrupted one
  would.
  """
  image, label = batch['image'], batch['label']
  is_mask = label.shape.rank == 4
  # Static for whole batches: with an unknown count Grappler logs a warning that it cannot
  # cost CropAndResize.
  count = image.shape[0] or tf.shape(image)[0]
  flip_seed, crop_seed, looks_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
  if augmentation.flip:  # On uint8: a quarter of float32's bytes.
    flip = tf.random.stateless_uniform([count], flip_seed) < 0.5
    mirror = lambda pictures, _: tf.reverse(pictures, [2])
    image = apply_to(flip, image, mirror)
    if is_mask:
      label = apply_to(flip, label, mirror)
  crop = augmentation.min_crop_fraction < 1.0 or augmentation.max_aspect_ratio > 1.0
  looks = any((augmentation.color_jitter, augmentation.hue, augmentation.grayscale,
               augmentation.blur, augmentation.noise))
  if not (crop or looks):
    return {**batch, 'image': image, 'label': label}
  pixels = tf.cast(image, tf.float32)
  if crop:
    boxes = crop_boxes(count, crop_seed, augmentation.min_crop_fraction,
                       augmentation.max_aspect_ratio)
    size, indices = tf.shape(image)[1:3], tf.range(count)
    pixels = tf.image.crop_and_resize(pixels, boxes, indices, size, method='bilinear')
    if is_mask:
      label = tf.cast(tf.image.crop_and_resize(label, boxes, indices, size, method='nearest'),
                      tf.uint8)
  if looks and image.dtype == tf.uint8:
    pixels = change_looks(pixels / 255.0, looks_seed, augmentation) * 255.0
  elif looks:
    pixels = change_band_looks(pixels, looks_seed, augmentation)
  # Photos uint8 again: a quarter of float32's bytes to batch, send and copy to the device.
  # Rasters (float32, any values) stay float32.
  image = tf.cast(tf.round(tf.clip_by_value(pixels, 0.0, 255.0)), tf.uint8) \
      if image.dtype == tf.uint8 else pixels
  return {**batch, 'image': image, 'label': label}


def apply_to(chosen: tf.Tensor, pictures: tf.Tensor, change) -> tf.Tensor:
  """`pictures` with change(those, their indices) in place of those where `chosen` ([B]
  bool) holds. Only the chosen are changed (none: nothing runs) and each picture is copied
  once: a tf.where over the batch computes the change for all and broadcasts the choice
  (5x slower here)."""
  others, picked = tf.dynamic_partition(tf.range(tf.shape(pictures)[0]),
                                        tf.cast(chosen, tf.int32), 2)
  subset = tf.gather(pictures, picked)
  changed = tf.cond(tf.size(picked) > 0, lambda: change(subset, picked), lambda: subset)
  stitched = tf.dynamic_stitch([others, picked], [tf.gather(pictures, others), changed])
  return tf.ensure_shape(stitched, pictures.shape)  # The blur's reshapes lose it.


def crop_boxes(count: tf.Tensor, seed: tf.Tensor, min_fraction: float,
               max_aspect_ratio: float) -> tf.Tensor:
  """[count, 4] crop boxes (y1, x1, y2, x2 in tf.image.crop_and_resize's units, 0 and 1 the
  first and last pixel centres): sides of `min_fraction`-1 of the picture's, their ratio
  changed by up to `max_aspect_ratio`, at a random place inside the picture."""
  draws = tf.random.stateless_uniform([count, 4], seed)
  fraction = min_fraction + (1.0 - min_fraction) * draws[:, :1]
  log_ratio = math.log(max_aspect_ratio) * (2.0 * draws[:, 1:2] - 1.0)
  stretch = tf.exp(tf.concat([log_ratio, -log_ratio], 1) / 2.0)
  sides = tf.minimum(fraction * stretch, 1.0)
  start = (1.0 - sides) * draws[:, 2:]
  return tf.concat([start, start + sides], 1)


def change_looks(pixels: tf.Tensor, seed: tf.Tensor, augmentation: Augmentation) -> tf.Tensor:
  """[B, H, W, 3] pixels in [0, 1] with colours and texture changed, each picture by its own
  draws: brightness shifted by up to color_jitter of the range, contrast and saturation
  scaled in [1 - c, 1 + c], hue rotated, sometimes grey or blurred, with pixel noise. Fur
  colour and sharpness stop being cues."""
  count = tf.shape(pixels)[0]
  draws_seed, noise_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
  draws = tf.random.stateless_uniform([count, 8], draws_seed)
  per_picture = lambda column: draws[:, column, None, None, None]  # Broadcasts over pixels.
  strength = augmentation.color_jitter
  if strength:
    pixels += strength * (2.0 * per_picture(0) - 1.0)
    mean = tf.reduce_mean(pixels, axis=[1, 2], keepdims=True)
    pixels = mean + (pixels - mean) * (1.0 + strength * (2.0 * per_picture(1) - 1.0))
  if strength or augmentation.hue:
    hue, saturation, value = tf.unstack(
        tf.image.rgb_to_hsv(tf.clip_by_value(pixels, 0.0, 1.0)), axis=-1)
    saturation *= 1.0 + strength * (2.0 * per_picture(2)[..., 0] - 1.0)
    hue += augmentation.hue * (2.0 * per_picture(3)[..., 0] - 1.0)
    pixels = tf.image.hsv_to_rgb(tf.stack(
        [hue - tf.floor(hue), tf.clip_by_value(saturation, 0.0, 1.0), value], -1))
  if augmentation.grayscale:
    pixels = apply_to(draws[:, 4] < augmentation.grayscale, pixels, lambda chosen, _: (
        tf.image.grayscale_to_rgb(tf.image.rgb_to_grayscale(chosen))))
  if augmentation.blur:
    pixels = sometimes_blurred(pixels, draws, augmentation.blur)
  if augmentation.noise:
    pixels += tf.random.stateless_normal(tf.shape(pixels), noise_seed) * (
        augmentation.noise * per_picture(7))
  return tf.clip_by_value(pixels, 0.0, 1.0)


def change_band_looks(pixels: tf.Tensor, seed: tf.Tensor,
                      augmentation: Augmentation) -> tf.Tensor:
  """[B, H, W, bands] raster values in the file's own units, each picture changed by its own
  draws (the same draws `change_looks` makes of a photo): on `jitter_bands`, contrast scaled in
  [1 - c, 1 + c] about the picture's band mean and brightness as a gain in [1 - c, 1 + c] (the
  sun higher or lower), and with three such bands their saturation about their grey; every
  band sometimes blurred, with noise of up to `noise` times the band's spread in the picture.
  No hue and no grey: a band that is not red, green or blue has neither."""
  count, bands = tf.shape(pixels)[0], pixels.shape[-1]
  draws_seed, noise_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
  draws = tf.random.stateless_uniform([count, 8], draws_seed)
  per_picture = lambda column: draws[:, column, None, None, None]
  strength = augmentation.color_jitter
  if strength:
    chosen = tf.constant([[[[float(band in augmentation.jitter_bands)
                             for band in range(bands)]]]])
    mean = tf.reduce_mean(pixels, axis=[1, 2], keepdims=True)
    jittered = (mean + (pixels - mean) * (1.0 + strength * (2.0 * per_picture(1) - 1.0))) * (
        1.0 + strength * (2.0 * per_picture(0) - 1.0))
    if len(augmentation.jitter_bands) == 3:
      grey = tf.reduce_sum(jittered * chosen, axis=-1, keepdims=True) / 3.0
      jittered = grey + (jittered - grey) * (1.0 + strength * (2.0 * per_picture(2) - 1.0))
    pixels += chosen * (jittered - pixels)
  if augmentation.blur:
    pixels = sometimes_blurred(pixels, draws, augmentation.blur)
  if augmentation.noise:
    spread = tf.math.reduce_std(pixels, axis=[1, 2], keepdims=True)
    pixels += tf.random.stateless_normal(tf.shape(pixels), noise_seed) * (
        augmentation.noise * per_picture(7) * spread)
  return pixels


def sometimes_blurred(pixels: tf.Tensor, draws: tf.Tensor, probability: float) -> tf.Tensor:
  """Pictures blurred with `probability` (draws[:, 6]) by sigma 0.5-2 px (draws[:, 5])."""
  sigma = 0.5 + 1.5 * draws[:, 5]
  return apply_to(draws[:, 6] < probability, pixels, lambda chosen, indices: (
      gaussian_blur(chosen, tf.gather(sigma, indices))))


def gaussian_blur(pixels: tf.Tensor, sigma: tf.Tensor, radius: int = 3) -> tf.Tensor:
  """[B, H, W, C] float pixels, picture b blurred by a separable Gaussian of sigma[b] px
  (edges reflected): one depthwise convolution over the batch's pictures side by side."""
  shape = tf.shape(pixels)
  count, height, width, channels = shape[0], shape[1], shape[2], shape[3]
  offsets = tf.range(-radius, radius + 1, dtype=tf.float32)
  taps = tf.exp(-0.5 * (offsets[:, None] / sigma[None, :]) ** 2)  # [2r+1, B]
  taps = tf.repeat(taps / tf.reduce_sum(taps, 0, keepdims=True), channels, axis=1)
  side_by_side = tf.reshape(tf.transpose(pixels, [1, 2, 0, 3]), [1, height, width, -1])
  padded = tf.pad(side_by_side, [[0, 0], [radius, radius], [radius, radius], [0, 0]],
                  'REFLECT')
  out = tf.nn.depthwise_conv2d(padded, tf.reshape(taps, [-1, 1, count * channels, 1]),
                               [1, 1, 1, 1], 'VALID')
  out = tf.nn.depthwise_conv2d(out, tf.reshape(taps, [1, -1, count * channels, 1]),
                               [1, 1, 1, 1], 'VALID')
  return tf.transpose(tf.reshape(out, [height, width, count, channels]), [2, 0, 1, 3])
