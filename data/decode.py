"""Decoding by content: the official set holds a PNG and a GIF named .jpg."""

import numpy as np
import tensorflow as tf

from data import masks


def decode_image(encoded: tf.Tensor) -> tf.Tensor:
  """RGB uint8 from JPEG, PNG (RGBA too), GIF or BMP bytes, by content rather than extension."""
  image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
  image.set_shape([None, None, 3])
  return image


def decode_mask(encoded: tf.Tensor, lookup: np.ndarray | None = None) -> tf.Tensor:
  """A grey mask PNG as class ids, HxWx1 uint8: its values through `lookup` (uint8 [256]:
  class id or masks.IGNORE per value), or as they are (a prepared class-id mask)."""
  mask = tf.io.decode_image(encoded, channels=1, expand_animations=False)
  mask.set_shape([None, None, 1])
  if lookup is None:
    return mask
  return tf.gather(tf.constant(lookup, tf.uint8), tf.cast(mask, tf.int32))


TRIMAP_LOOKUP = masks.lookup_table(masks.MaskEncoding(3, masks.TRIMAP_LABEL_MAP))


def decode_trimap(encoded: tf.Tensor) -> tf.Tensor:
  """Trimap PNG (1 pet, 2 background, 3 outline) to labels 0/1/2, shape HxWx1 uint8."""
  return decode_mask(encoded, TRIMAP_LOOKUP)
