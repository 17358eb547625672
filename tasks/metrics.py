"""Metrics from a confusion matrix (segmentation and classification): pure functions, summed
across replicas first; the losses are in tasks/losses.py.

Accumulating one confusion matrix and deriving IoU and accuracy at the end is what Keras
MeanIoU does; keeping the sums explicit makes cross-replica and cross-worker reduction exact.
"""

import numpy as np
import tensorflow as tf

from tasks.base import IGNORE, as_two_classes


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
  `labels`): what training's evaluation and --mode=score's native-resolution masks share.

  One segment sum over the cells (label * num_classes + prediction): tf.math.confusion_matrix
  adds four checks over every pixel, each traced as a conditional of its own (about 30 s of
  the suite's CPU, docs/results.md). A label past the classes falls outside the cells and
  fails on CPU, as the loss's gather of that label does."""
  predictions = tf.reshape(tf.cast(predictions, tf.int32), [-1])
  labels = tf.reshape(tf.cast(labels, tf.int32), [-1])
  valid = tf.not_equal(labels, IGNORE)
  pixel_weights = tf.cast(valid, tf.float32)
  if weights is not None:  # One per example, over its pixels.
    per_example = tf.reshape(pixel_weights, [tf.maximum(tf.size(weights), 1), -1])
    pixel_weights = tf.reshape(per_example * tf.reshape(tf.cast(weights, tf.float32), [-1, 1]),
                               [-1])
  cells = tf.where(valid, labels, 0) * num_classes + predictions
  return tf.reshape(tf.math.unsorted_segment_sum(pixel_weights, cells, num_classes * num_classes),
                    [num_classes, num_classes])


# What the epoch line (and the sidecar's) shows of the summarize() keys, when present.
LINE_KEYS = ('loss', 'pixel_accuracy', 'mean_iou', 'mean_dice', 'accuracy')


def summarize(loss_sum: float, num_examples: float, confusion: np.ndarray,
              class_names: tuple, per_pixel: bool = True) -> dict:
  """Loss, (pixel) accuracy, and for masks per class and as means over the classes present
  IoU, Dice (F1), precision and recall, all from summed counts (rows: truth, columns: predicted).
  A class neither present nor predicted scores 0 and is left out of the means."""
  confusion = np.asarray(confusion, np.float64)
  true_positive = np.diag(confusion)
  truth, predicted = confusion.sum(1), confusion.sum(0)
  accuracy = true_positive.sum() / max(confusion.sum(), 1.0)
  results = {'loss': loss_sum / max(num_examples, 1.0), 'num_examples': num_examples}
  if not per_pixel:
    return {**results, 'accuracy': accuracy}
  results['pixel_accuracy'] = accuracy
  present = truth + predicted > 0
  for name, denominator, scale in (('iou', truth + predicted - true_positive, 1.0),
                                   ('dice', truth + predicted, 2.0),
                                   ('precision', predicted, 1.0), ('recall', truth, 1.0)):
    per_class = np.divide(scale * true_positive, denominator,
                          out=np.zeros_like(true_positive), where=denominator > 0)
    results[f'mean_{name}'] = per_class[present].mean() if present.any() else 0.0
    results.update({f'{name}/{c}': per_class[i] for i, c in enumerate(class_names)})
  return results


def line(results: dict, prefix: str = '') -> str:
  """`[prefix ]loss 0.1234 pixel_accuracy ...`: the headline metrics of one evaluation."""
  return ' '.join(([prefix] if prefix else [])
                  + [f'{k} {results[k]:.4f}' for k in LINE_KEYS if k in results])
