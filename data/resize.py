"""Resizing pictures. Wherever a picture is made smaller (training, evaluation, predict,
explain, export) it is averaged, not sampled: bilinear with antialiasing, so a thin structure
in a picture 4x or 10x the model's side is thinned, not broken into dots."""

import tensorflow as tf

from sizes import sides


def resize_pictures(pictures: tf.Tensor, size, exportable: bool = False) -> tf.Tensor:
  """float32 [N, H, W, C] pictures at `size` (a side or (height, width)), bilinear with
  antialiasing. `exportable`: the same filter as two matrix products, which every converter
  takes (TensorFlow's own is ScaleAndTranslate, which LiteRT and ONNX have no op for); the two
  agree to a hundredth of a grey level."""
  height, width = sides(size)
  pictures = tf.cast(pictures, tf.float32)
  if not exportable:
    return tf.image.resize(pictures, (height, width), method='bilinear', antialias=True)
  shape = tf.shape(pictures)
  rows = triangle_weights(shape[1], height)  # [height, H]
  cols = triangle_weights(shape[2], width)  # [width, W]
  # Rank-4 products (ONNX MatMul, not a Gemm whose operands int8 calibration would fix).
  channels_first = tf.transpose(pictures, [0, 3, 1, 2])  # [N, C, H, W]
  resized = tf.linalg.matmul(tf.linalg.matmul(rows[None, None], channels_first),
                             cols[None, None], transpose_b=True)  # [N, C, height, width]
  return tf.transpose(resized, [0, 2, 3, 1])


def triangle_weights(size_in: tf.Tensor, size_out) -> tf.Tensor:
  """float32 [size_out, size_in]: each output pixel's weights over the input's pixels, a
  triangle around its centre as wide as the scale (at least one pixel: plain bilinear when
  enlarging), normalised over the pixels inside the picture, as tf.image.resize(antialias=True)
  weighs them."""
  size_in, size_out = tf.cast(size_in, tf.float32), tf.cast(size_out, tf.float32)
  scale = size_in / size_out
  centres = (tf.range(size_out) + 0.5) * scale - 0.5
  distance = tf.abs(tf.range(size_in)[None, :] - centres[:, None])
  weights = tf.maximum(0.0, 1.0 - distance / tf.maximum(scale, 1.0))
  return weights / tf.reduce_sum(weights, axis=1, keepdims=True)


def picture_to_uint8(pictures: tf.Tensor) -> tf.Tensor:
  """Resized float pictures back to uint8, rounded and clipped."""
  return tf.cast(tf.clip_by_value(tf.round(pictures), 0, 255), tf.uint8)


def as_stored(pictures: tf.Tensor, bands: int) -> tf.Tensor:
  """Resized pictures in the type the pipeline carries: photos (bands 0) uint8, rasters the
  float32 they are (their values are not 0-255)."""
  return pictures if bands else picture_to_uint8(pictures)
