"""Sliding-window inference: a model built for one window size answers a whole picture of any
size at its own resolution, window by window, and overlapping answers are averaged (MMSeg's
`mode='slide'`). Memory follows the window and the windows per call, not the picture."""

import tensorflow as tf


def window_and_stride(window, stride, model_input: tuple) -> tuple:
  """((height, width) of the window: `window`, or empty for the model's input; (down, across)
  of the stride: `stride`, or empty for two thirds of the window)."""
  window = tuple(window) if window else tuple(model_input)
  stride = tuple(stride) if stride else tuple(max(1, (2 * side) // 3) for side in window)
  return window, stride


def window_corners(size: tf.Tensor, window: int, stride: int) -> tf.Tensor:
  """int32 [n]: where windows of `window` pixels start along a side of `size` pixels (at least
  `window`): every `stride`, the last flush with the end, so the windows cover the side."""
  count = (size - window + stride - 1) // stride + 1
  return tf.minimum(tf.range(count) * stride, size - window)


def coverage(size: tf.Tensor, corners: tf.Tensor, window: int) -> tf.Tensor:
  """float32 [size]: how many windows cover each pixel of a side."""
  pixels = tf.reshape(tf.range(size), [-1, 1])
  starts = tf.reshape(corners, [1, -1])
  inside = (pixels >= starts) & (pixels < starts + window)
  return tf.reduce_sum(tf.cast(inside, tf.float32), axis=1)


def slide(answer, pictures: tf.Tensor, window: tuple, stride: tuple, num_classes: int,
          windows_per_call: int = 0) -> tf.Tensor:
  """float32 [N, H, W, num_classes]: `answer` (float [n, h, w, C] windows -> [n, h, w,
  num_classes] probabilities) of every window of `window` (h, w) over the float [N, H, W, C]
  `pictures` (C: 3, or a raster's bands), `stride` (down, across) apart, averaged where they
  overlap. A picture smaller than the window is padded with black at the bottom and right, as
  training crops are. `windows_per_call` > 0 answers that many windows (of every picture) at a
  time, in a loop that SavedModel, ONNX and LiteRT all take (0: all at once, one call)."""
  total, rows, cols = slide_sums(answer, pictures, window, stride, num_classes,
                                 windows_per_call)
  return total / (tf.reshape(rows, [1, -1, 1, 1]) * tf.reshape(cols, [1, 1, -1, 1]))


def slide_sums(answer, pictures: tf.Tensor, window: tuple, stride: tuple, num_classes: int,
               windows_per_call: int = 0) -> tuple:
  """`slide`'s parts: the windows' probabilities summed, float32 [N, H, W, num_classes], and
  how many windows cover each row [H] and each column [W]. A strip of a picture's rows that
  starts at one of its window corners sums what the whole picture's windows give there."""
  (window_h, window_w), (stride_h, stride_w) = window, stride
  count, height, width = tf.shape(pictures)[0], tf.shape(pictures)[1], tf.shape(pictures)[2]
  padded_h, padded_w = tf.maximum(height, window_h), tf.maximum(width, window_w)
  bands = pictures.shape[-1]
  # [H, W, N, C]: a window's pixels of every picture are gathered at once.
  padded = tf.transpose(tf.pad(tf.cast(pictures, tf.float32),
                               [[0, 0], [0, padded_h - height], [0, padded_w - width], [0, 0]]),
                        [1, 2, 0, 3])
  rows = window_corners(padded_h, window_h, stride_h)
  cols = window_corners(padded_w, window_w, stride_w)
  corners = tf.reshape(tf.stack(tf.meshgrid(rows, cols, indexing='ij'), -1), [-1, 2])
  canvas = tf.stack([padded_h, padded_w, count, num_classes])

  def pixels_of(chunk):  # [c, h, w, 2]: each window's pixel coordinates in the picture.
    # Reshapes, not new-axis slices: LiteRT's StridedSlice takes one new axis at most.
    y = tf.reshape(chunk[:, 0], [-1, 1, 1]) + tf.reshape(tf.range(window_h), [1, -1, 1])
    x = tf.reshape(chunk[:, 1], [-1, 1, 1]) + tf.reshape(tf.range(window_w), [1, 1, -1])
    shape = tf.stack([tf.shape(chunk)[0], window_h, window_w])
    return tf.stack([tf.broadcast_to(y, shape), tf.broadcast_to(x, shape)], -1)

  def answered(chunk):  # (where, [c, h, w, N, classes]).
    where = pixels_of(chunk)
    windows = tf.reshape(tf.transpose(tf.gather_nd(padded, where), [3, 0, 1, 2, 4]),
                         [-1, window_h, window_w, bands])  # [N * c, h, w, C]
    probabilities = tf.reshape(tf.cast(answer(windows), tf.float32),
                               [count, -1, window_h, window_w, num_classes])
    return where, tf.transpose(probabilities, [1, 2, 3, 0, 4])

  if windows_per_call <= 0:  # Overlaps summed: tf.scatter_nd's ONNX form (ScatterND with no
    # reduction) keeps one window's answer where they overlap; this one's adds them.
    total = tf.tensor_scatter_nd_add(tf.zeros(canvas), *answered(corners))
  else:
    def add_chunk(start, total):
      where, probabilities = answered(corners[start:start + windows_per_call])
      return start + windows_per_call, tf.tensor_scatter_nd_add(total, where, probabilities)
    _, total = tf.while_loop(lambda start, _: start < tf.shape(corners)[0], add_chunk,
                             (tf.constant(0), tf.zeros(canvas)))
  return (tf.transpose(total, [2, 0, 1, 3])[:, :height, :width],
          coverage(padded_h, rows, window_h)[:height], coverage(padded_w, cols, window_w)[:width])
