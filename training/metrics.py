"""Segmentation metrics from a confusion matrix: pure functions, summed across replicas first.

Accumulating one confusion matrix and deriving IoU and accuracy at the end is what Keras
MeanIoU does; keeping the sums explicit makes cross-replica and cross-worker reduction exact.
"""

import keras
import numpy as np
import tensorflow as tf

from tasks import CLASSIFICATION, IGNORE, SEGMENTATION, as_two_classes


def predicted_classes(probabilities: tf.Tensor) -> tf.Tensor:
  """Argmax over classes; a single sigmoid unit predicts class 1 above 0.5."""
  return tf.argmax(as_two_classes(probabilities), axis=-1)


def confusion_matrix(labels: tf.Tensor, probabilities: tf.Tensor, num_classes: int,
                     weights: tf.Tensor | None = None) -> tf.Tensor:
  """Float32 [num_classes, num_classes] counts: rows are true labels, columns predictions.

  Labels are per pixel (masks) or per picture. `weights` (one per example) scale each
  example's counts; weight-0 padding counts nothing, and neither do IGNORE pixels.
  """
  return label_confusion_matrix(labels, predicted_classes(probabilities), num_classes, weights)


def label_confusion_matrix(labels, predictions, num_classes: int, weights=None) -> tf.Tensor:
  """`confusion_matrix` of predicted class ids (masks or labels of the same shape as
  `labels`): what training's evaluation and --mode=score's native-resolution masks share."""
  predictions = tf.reshape(tf.cast(predictions, tf.int64), [-1])
  labels = tf.reshape(tf.cast(labels, tf.int64), [-1])
  pixel_weights = tf.ones_like(labels, tf.float32)
  if weights is not None:
    per_example = tf.size(labels) // tf.maximum(tf.size(weights), 1)
    pixel_weights = tf.repeat(tf.cast(tf.reshape(weights, [-1]), tf.float32), per_example)
  valid = tf.not_equal(labels, IGNORE)
  return tf.math.confusion_matrix(tf.where(valid, labels, 0), predictions,
                                  num_classes=num_classes,
                                  weights=pixel_weights * tf.cast(valid, tf.float32),
                                  dtype=tf.float32)


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


# What best_model.keras can be best at, per task: loss (lowest) or a summarize() key (highest).
BEST_METRICS = {SEGMENTATION: ('loss', 'mean_iou', 'pixel_accuracy'),
                CLASSIFICATION: ('loss', 'accuracy')}


def summarize(loss_sum: float, num_examples: float, confusion: np.ndarray,
              class_names: tuple, per_pixel: bool = True) -> dict:
  """Loss, (pixel) accuracy, and for masks mean IoU and per-class IoU, from summed counts."""
  confusion = np.asarray(confusion, np.float64)
  true_positive = np.diag(confusion)
  union = confusion.sum(0) + confusion.sum(1) - true_positive
  per_class = np.divide(true_positive, union, out=np.zeros_like(true_positive),
                        where=union > 0)
  present = union > 0
  accuracy = true_positive.sum() / max(confusion.sum(), 1.0)
  results = {'loss': loss_sum / max(num_examples, 1.0), 'num_examples': num_examples}
  if not per_pixel:
    return {**results, 'accuracy': accuracy}
  results.update({'pixel_accuracy': accuracy,
                  'mean_iou': per_class[present].mean() if present.any() else 0.0})
  results.update({f'iou/{name}': per_class[c] for c, name in enumerate(class_names)})
  return results
