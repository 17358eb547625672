"""Decoding by content: the official set holds a PNG and a GIF named .jpg."""

import tensorflow as tf


def decode_image(encoded: tf.Tensor) -> tf.Tensor:
  """RGB uint8 from JPEG, PNG (RGBA too), GIF or BMP bytes, by content rather than extension."""
  image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
  image.set_shape([None, None, 3])
  return image


def decode_trimap(encoded: tf.Tensor) -> tf.Tensor:
  """Trimap PNG (1 pet, 2 background, 3 outline) to labels 0/1/2, shape HxWx1 uint8."""
  trimap = tf.io.decode_image(encoded, channels=1, expand_animations=False)
  trimap.set_shape([None, None, 1])
  return trimap - 1
