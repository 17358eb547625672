"""Decoding by content: the official set holds a PNG and a GIF named .jpg."""

import numpy as np
import tensorflow as tf

from data import exif
from data import masks
from data import rasters


def decode_image(encoded: tf.Tensor) -> tf.Tensor:
  """RGB uint8 from JPEG, PNG (RGBA too), GIF or BMP bytes, by content rather than extension."""
  image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
  image.set_shape([None, None, 3])
  return image


def decode_picture(encoded: tf.Tensor, bands: int = 0) -> tf.Tensor:
  """A prepared picture: a photo (bands 0) as RGB uint8 by content, a raster as the float32
  [H, W, bands] it was stored as."""
  return rasters.decode(encoded, bands) if bands else decode_image(encoded)


def decode_upright(encoded: bytes) -> np.ndarray:
  """RGB uint8 of a picture file's bytes, turned upright as its EXIF orientation says (as
  viewers and annotation tools show it)."""
  return exif.upright(decode_image(encoded).numpy(), exif.orientation(encoded))


def upright_bytes(encoded: bytes) -> bytes:
  """The file's bytes when it is stored upright, else the upright picture as a JPEG (quality
  95), so that everything reading the prepared set sees what the user saw."""
  tag = exif.orientation(encoded)
  if tag == 1:
    return encoded
  picture = exif.upright(decode_image(encoded).numpy(), tag)
  return tf.io.encode_jpeg(picture, quality=95, chroma_downsampling=False).numpy()


def decode_mask(encoded: tf.Tensor, lookup: np.ndarray | None = None) -> tf.Tensor:
  """A grey mask PNG as class ids, HxWx1 uint8: its values through `lookup` (uint8 [256]:
  class id or masks.IGNORE per value), or as they are (a prepared class-id mask); or what a
  stored-mask reader (`lookup.decode`: a multi-label bitmask) makes of it."""
  if hasattr(lookup, 'decode'):
    return lookup.decode(encoded)
  mask = tf.io.decode_image(encoded, channels=1, expand_animations=False)
  mask.set_shape([None, None, 1])
  if lookup is None:
    return mask
  return tf.gather(tf.constant(lookup, tf.uint8), tf.cast(mask, tf.int32))


# A prepared mask is also stored as bands of this many rows, each a PNG of the same encoding
# (files_source), so that a training crop decodes only the rows its window covers.
MASK_STRIPS_FEATURE = 'mask_strips'
MASK_STRIP_ROWS = 128


def encode_mask_strips(stored: np.ndarray) -> list[bytes]:
  """A prepared mask [H, W, 1] (class ids, or a multi-label bitmask) as PNGs of
  MASK_STRIP_ROWS rows each, top to bottom; the last holds what is left."""
  return [tf.io.encode_png(stored[top:top + MASK_STRIP_ROWS]).numpy()
          for top in range(0, stored.shape[0], MASK_STRIP_ROWS)]


def decode_mask_rows(strips: tf.Tensor, top: tf.Tensor, rows: tf.Tensor,
                     lookup=None) -> tf.Tensor:
  """Rows [top, top + rows) of a mask stored as `encode_mask_strips` (a string tensor [n]),
  as `decode_mask` gives the whole mask: only the strips those rows lie in are decoded."""
  first, last = top // MASK_STRIP_ROWS, (top + rows - 1) // MASK_STRIP_ROWS
  channels = []  # decode_mask's static channel count, seen when the loop's body is traced.

  def decode_next(i, decoded):
    strip = decode_mask(strips[first + i], lookup)
    channels.append(strip.shape[-1])
    return i + 1, decoded.write(i, tf.cast(strip, tf.uint8))
  _, decoded = tf.while_loop(
      lambda i, _: i <= last - first, decode_next,
      (tf.constant(0), tf.TensorArray(tf.uint8, size=last - first + 1, infer_shape=False)))
  start = top - first * MASK_STRIP_ROWS
  mask = decoded.concat()[start:start + rows]
  mask.set_shape([None, None, channels[0]])
  return mask


def mask_labels(encoded: tf.Tensor, lookup=None) -> np.ndarray:
  """`decode_mask` as numpy labels (`label_array`)."""
  return label_array(decode_mask(encoded, lookup).numpy())


def label_array(mask: np.ndarray) -> np.ndarray:
  """A decoded mask's labels: [H, W] class ids of a one-channel mask, or [H, W, classes] 0/1
  labels as they are."""
  return mask[..., 0] if mask.shape[-1] == 1 else mask


TRIMAP_LOOKUP = masks.lookup_table(masks.MaskEncoding(3, masks.TRIMAP_LABEL_MAP))


def decode_trimap(encoded: tf.Tensor) -> tf.Tensor:
  """Trimap PNG (1 pet, 2 background, 3 outline) to labels 0/1/2, shape HxWx1 uint8."""
  return decode_mask(encoded, TRIMAP_LOOKUP)
