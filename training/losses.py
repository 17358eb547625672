"""The training losses, per example in float32 (whatever the layers compute in): pixel
cross-entropy over the pixels that count (not IGNORE), optionally weighted per class, plus a
soft-Jaccard term; binary cross-entropy for a single sigmoid unit."""

import keras
import tensorflow as tf

from tasks import IGNORE


def per_example_loss(labels: tf.Tensor, probabilities: tf.Tensor,
                     jaccard_weight: float = 0.0, class_weights=None) -> tf.Tensor:
  """Each example's cross-entropy in float32: for masks the mean over its pixels that are not
  IGNORE, each weighted by `class_weights` of its class (None: 1), plus `jaccard_weight` x
  its soft-Jaccard loss; binary for a single sigmoid unit."""
  probabilities = tf.cast(probabilities, tf.float32)
  if probabilities.shape.rank == 4:
    labels = tf.squeeze(tf.cast(labels, tf.int32), axis=-1)
    valid = tf.not_equal(labels, IGNORE)
    labels = tf.where(valid, labels, 0)
    pixel_weights = tf.cast(valid, tf.float32)
    if class_weights is not None:
      pixel_weights *= tf.gather(tf.constant(class_weights, tf.float32), labels)
    pixel_loss = keras.losses.sparse_categorical_crossentropy(labels, probabilities)
    loss = tf.reduce_sum(pixel_loss * pixel_weights, axis=[1, 2]) / tf.maximum(
        tf.reduce_sum(tf.cast(valid, tf.float32), axis=[1, 2]), 1.0)
    if jaccard_weight:
      loss += jaccard_weight * soft_jaccard_loss(labels, probabilities, valid)
    return loss
  if probabilities.shape[-1] == 1:
    return keras.losses.binary_crossentropy(
        tf.cast(tf.reshape(labels, [-1, 1]), tf.float32), probabilities)
  return keras.losses.sparse_categorical_crossentropy(tf.cast(labels, tf.int32), probabilities)


def soft_jaccard_loss(labels: tf.Tensor, probabilities: tf.Tensor, valid=None,
                      smooth: float = 1.0) -> tf.Tensor:
  """Per example, 1 - the mean over classes of a differentiable IoU (probabilities as soft
  predictions) over the `valid` pixels (None: all): pulls thin, rare classes such as the
  trimap outline up with the mean IoU that is reported, where pixel cross-entropy weighs them
  by their few pixels."""
  truth = tf.one_hot(labels, probabilities.shape[-1], dtype=tf.float32)
  if valid is not None:
    keep = tf.cast(valid, tf.float32)[..., None]
    truth, probabilities = truth * keep, probabilities * keep
  intersection = tf.reduce_sum(truth * probabilities, axis=[1, 2])
  union = tf.reduce_sum(truth + probabilities, axis=[1, 2]) - intersection
  return 1.0 - tf.reduce_mean((intersection + smooth) / (union + smooth), axis=-1)
